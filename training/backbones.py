"""The classifier's architecture: preprocessing, a flat ImageNet backbone, a softmax head.

Built flat (`input_tensor=`) so every backbone layer sits in the model's own graph and
CAM methods can reach its activations; the head keeps `logits` and `probs` apart so
temperature scaling and Grad-CAM can use the logits.
"""

from pathlib import Path

import keras

from explain.layers import PREPROCESSING, ParentLogits
from training.mobilenet_npy import load_npy_weights

BACKBONES = {
    "mobilenet_v2": keras.applications.MobileNetV2,
    "resnet50": keras.applications.ResNet50,
}
FEATURES_LAYER = "features"  # the pooled backbone features, standardised: what the head reads
HEAD_LAYERS = (FEATURES_LAYER, "dropout", "fine_logits", "logits", "probs")
CAM_LAYERS = {"mobilenet_v2": "out_relu", "resnet50": "conv5_block3_out"}


def build_classifier(
    backbone: str,
    num_classes: int,
    image_size: int,
    *,
    augmentation: keras.layers.Layer | None = None,
    dropout: float = 0.2,
    alpha: float = 1.0,
    feature_layers: list[str] | None = None,
    parent_of: list[int] | None = None,
    feature_mean=None,
    feature_variance=None,
) -> keras.Model:
    """pixels [0, 255] -> (augmentation) -> preprocess -> backbone -> pool -> features -> dropout -> logits -> probs.

    `pool` concatenates the average of each of `feature_layers` (default: the last backbone layer);
    `features` standardises them (mean and variance of the training photos' features, once known).
    With `parent_of`, the head scores fine-grained conditions (`fine_logits`) and `logits` sums them
    to `num_classes` classes (explain.layers.ParentLogits)."""
    if backbone not in BACKBONES:
        raise ValueError(f"Unknown backbone {backbone!r}; choose one of {sorted(BACKBONES)}.")
    inputs = keras.Input((image_size, image_size, 3), name="pixels")
    x = augmentation(inputs) if augmentation is not None else inputs
    x = PREPROCESSING[backbone](name="preprocess")(x)
    kwargs = {"alpha": alpha} if backbone == "mobilenet_v2" else {}
    base = BACKBONES[backbone](include_top=False, weights=None, input_tensor=x, **kwargs)
    names = feature_layers or [base.layers[-1].name]
    pooled = [keras.layers.GlobalAveragePooling2D(name="pool" if len(names) == 1 else f"pool_{name}")(
        base.get_layer(name).output) for name in names]
    x = pooled[0] if len(pooled) == 1 else keras.layers.Concatenate(name="pool")(pooled)
    width = x.shape[-1]
    mean = [0.0] * width if feature_mean is None else [float(v) for v in feature_mean]
    variance = [1.0] * width if feature_variance is None else [float(v) for v in feature_variance]
    x = keras.layers.Normalization(mean=mean, variance=variance, name=FEATURES_LAYER)(x)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    if parent_of is None:
        x = keras.layers.Dense(num_classes, name="logits")(x)
    else:
        x = ParentLogits(parent_of, name="logits")(keras.layers.Dense(len(parent_of), name="fine_logits")(x))
    outputs = keras.layers.Activation("softmax", name="probs")(x)
    return keras.Model(inputs, outputs, name=f"skin_{backbone}")


def classifier_for(config, num_classes: int, *, augmentation: keras.layers.Layer | None = None,
                   **head) -> keras.Model:
    """build_classifier with the experiment's backbone, input size, dropout, width and feature layers;
    `head` sets the features' standardisation and the fine classes (as `head_settings` reads them)."""
    return build_classifier(config.backbone, num_classes, config.image_size, augmentation=augmentation,
                            dropout=config.dropout, alpha=config.alpha, feature_layers=config.feature_layers, **head)


def head_settings(model: keras.Model) -> dict:
    """The keyword arguments of build_classifier that rebuild `model`'s head (standardisation, fine classes)."""
    norm = model.get_layer(FEATURES_LAYER).get_config()
    logits = model.get_layer("logits")
    return {"feature_mean": norm["mean"], "feature_variance": norm["variance"],
            "parent_of": logits.parent_of if isinstance(logits, ParentLogits) else None}


def backbone_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """The backbone's layers, in order: everything after `preprocess` but the head."""
    names = [layer.name for layer in model.layers]
    return [layer for layer in model.layers[names.index("preprocess") + 1:]
            if not layer.name.startswith("pool") and layer.name not in HEAD_LAYERS]


def set_trainable(model: keras.Model, unfrozen_backbone_layers: int) -> None:
    """Freeze the backbone except its last N layers; the head always trains.

    BatchNormalization layers stay frozen: with small batches their statistics would
    drift away from ImageNet's (the standard fine-tuning advice).
    """
    backbone = backbone_layers(model)
    for i, layer in enumerate(backbone):
        in_tail = i >= len(backbone) - unfrozen_backbone_layers
        layer.trainable = in_tail and not isinstance(layer, keras.layers.BatchNormalization)


def recalibrate_batchnorm(model: keras.Model, pixels) -> None:
    """Set every BatchNorm's statistics from one batch of photos (momentum 0, one pass).

    A randomly initialised backbone run in inference mode lets activations vanish
    layer by layer; with statistics from real data they stay informative, so a model
    trained without ImageNet weights (the tests' tiny model) still learns.
    """
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    saved = [(layer.momentum, layer.trainable) for layer in norms]
    for layer in norms:
        layer.momentum, layer.trainable = 0.0, True
    model(pixels, training=True)
    for layer, (momentum, trainable) in zip(norms, saved):
        layer.momentum, layer.trainable = momentum, trainable


def copy_weights_by_name(source: keras.Model, target: keras.Model, layers: list | None = None) -> None:
    """Copy the weights (BatchNorm statistics included) of `layers` of `target` (default: all of them)
    from the same-named layers of `source`."""
    by_name = {layer.name: layer for layer in source.layers}
    for layer in target.layers if layers is None else layers:
        if layer.weights:
            layer.set_weights(by_name[layer.name].get_weights())


def load_imagenet_weights(model: keras.Model, backbone: str, weights: str | None) -> None:
    """ImageNet weights into the backbone: Keras's own when reachable, else a local file.

    `weights` is "keras" (download through keras.applications), a `.npy` folder
    (MobileNetV2, see `training.mobilenet_npy`), a `.h5`/`.weights.h5` file of the
    include_top=False backbone, or None (random initialisation).
    """
    if weights is None:
        return
    if weights == "keras":
        reference = BACKBONES[backbone](include_top=False, weights="imagenet")
        copy_backbone(reference, model)
        return
    path = Path(weights)
    if path.is_dir():
        if backbone != "mobilenet_v2":
            raise ValueError(f"A .npy weights folder holds MobileNetV2 weights, not {backbone}.")
        load_npy_weights(backbone_layers(model), path)
        return
    reference = BACKBONES[backbone](include_top=False, weights=str(path))
    copy_backbone(reference, model)


def copy_backbone(reference: keras.Model, model: keras.Model) -> None:
    """Copy the backbone's weights from `reference`, layer by layer name."""
    copy_weights_by_name(reference, model, backbone_layers(model))

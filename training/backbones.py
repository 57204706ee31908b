"""The classifier's architecture: preprocessing, a flat ImageNet backbone, a softmax head.

Built flat (`input_tensor=`) so every backbone layer sits in the model's own graph and
CAM methods can reach its activations; the head keeps `logits` and `probs` apart so
temperature scaling and Grad-CAM can use the logits.
"""

from pathlib import Path

import keras

from explain.layers import PREPROCESSING
from training.mobilenet_npy import load_npy_weights

BACKBONES = {
    "mobilenet_v2": keras.applications.MobileNetV2,
    "resnet50": keras.applications.ResNet50,
}
CAM_LAYERS = {"mobilenet_v2": "out_relu", "resnet50": "conv5_block3_out"}


def build_classifier(
    backbone: str,
    num_classes: int,
    image_size: int,
    *,
    augmentation: keras.layers.Layer | None = None,
    dropout: float = 0.2,
    alpha: float = 1.0,
) -> keras.Model:
    """pixels [0, 255] -> (augmentation) -> preprocess -> backbone -> pool -> dropout -> logits -> probs."""
    if backbone not in BACKBONES:
        raise ValueError(f"Unknown backbone {backbone!r}; choose one of {sorted(BACKBONES)}.")
    inputs = keras.Input((image_size, image_size, 3), name="pixels")
    x = augmentation(inputs) if augmentation is not None else inputs
    x = PREPROCESSING[backbone](name="preprocess")(x)
    kwargs = {"alpha": alpha} if backbone == "mobilenet_v2" else {}
    base = BACKBONES[backbone](include_top=False, weights=None, input_tensor=x, **kwargs)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(base.output)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    x = keras.layers.Dense(num_classes, name="logits")(x)
    outputs = keras.layers.Activation("softmax", name="probs")(x)
    return keras.Model(inputs, outputs, name=f"skin_{backbone}")


def backbone_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """The backbone's layers, in order: everything between `preprocess` and the head."""
    names = [layer.name for layer in model.layers]
    return model.layers[names.index("preprocess") + 1 : names.index("pool")]


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


def copy_weights_by_name(source: keras.Model, target: keras.Model) -> None:
    """Copy every weight of `target`'s layers from the same-named layer of `source`."""
    by_name = {layer.name: layer for layer in source.layers}
    for layer in target.layers:
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
        _copy_backbone(reference, model)
        return
    path = Path(weights)
    if path.is_dir():
        if backbone != "mobilenet_v2":
            raise ValueError(f"A .npy weights folder holds MobileNetV2 weights, not {backbone}.")
        load_npy_weights(backbone_layers(model), path)
        return
    reference = BACKBONES[backbone](include_top=False, weights=str(path))
    _copy_backbone(reference, model)


def _copy_backbone(reference: keras.Model, model: keras.Model) -> None:
    by_name = {layer.name: layer for layer in reference.layers}
    for layer in backbone_layers(model):
        if layer.weights:
            layer.set_weights(by_name[layer.name].get_weights())

"""The classifier's architecture: preprocessing, one or two flat ImageNet backbones, a softmax head.

Each backbone is one entry of BACKBONES: how to build it, where its ImageNet weights come from, its
preprocessing, its CAM layer and the layers fine-tuning trains by default. A model may join two
("mobilenet_v2+resnet50v2_stage3"): both read the same photo and their pooled features are concatenated
before one head. Built flat (`input_tensor=`) so every backbone layer sits in the model's own graph and
CAM methods can reach its activations; the head keeps `logits` and `probs` apart so temperature scaling
and Grad-CAM can use the logits.
"""

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras

from explain.layers import PREPROCESSING, ParentLogits
from training.config import ModelSettings, expand
from training.model import mobilenet_npy, resnet_v2_npy

FEATURES_LAYER = "features"  # the pooled backbone features, standardised: what the head reads
HEAD_LAYERS = (FEATURES_LAYER, "dropout", "fine_logits", "logits", "probs")
JOIN = "+"  # "a+b": two backbones side by side on the same photo


@dataclass(frozen=True)
class Backbone:
    """One ImageNet backbone, everything the pipeline needs to know about it."""

    name: str
    application: Callable[..., keras.Model]  # the keras.applications builder
    preprocessing: str  # key of explain.layers.PREPROCESSING: what pixels it wants
    end: str  # its last layer the model uses (a trunk stops early)
    cam_layer: str  # the activation CAMs explain by default
    trainable_layers: int  # fine-tuning's default: its last N layers train (BatchNorm never)
    weights: str | None = None  # default ImageNet weights: a `.npy` folder, "keras", or None (none to be had)
    load_npy: Callable | None = None  # (layers, folder) -> files left unused: reads a `.npy` folder
    has_width: bool = False  # takes `alpha`, a width multiplier
    weights_origin: str = ""  # where the ImageNet weights come from, for the model card
    licence: str = ""  # the weights' licence: a model that contains them is a derived work

    def build(self, x, alpha: float = 1.0, weights: str | None = None) -> keras.Model:
        """The application on tensor `x` (flat in the caller's graph), or on its own with `x` None."""
        if alpha != 1.0 and not self.has_width:
            raise ValueError(f"alpha (width) {alpha} applies to MobileNetV2 only; leave it at 1.0 for {self.name}.")
        width = {"alpha": alpha} if self.has_width else {}
        return self.application(include_top=False, weights=weights, input_tensor=x, **width)


BACKBONES = {b.name: b for b in [
    Backbone("mobilenet_v2", keras.applications.MobileNetV2, "mobilenet_v2", end="out_relu", cam_layer="out_relu",
             trainable_layers=30, weights="${SHARED}/weights/mobilenet_v2_1.0_224_imagenet",
             load_npy=mobilenet_npy.load_npy_weights, has_width=True,
             weights_origin="TF-slim mobilenet_v2_1.0_224 (Google), as arrays from an MIT-licensed repository",
             licence="Apache 2.0 (the checkpoint), MIT (the arrays)"),
    Backbone("resnet50", keras.applications.ResNet50, "resnet50", end="conv5_block3_out",
             cam_layer="conv5_block3_out", trainable_layers=50, weights="keras",
             weights_origin="keras.applications (downloaded)", licence="MIT (Keras)"),
    # ResNet-50 v2's stem and stages 1-3 (stage 4's weights are not to be had here), read out through stage
    # 4's first pre-activation batch norm and ReLU, as the whole network would normalise it
    Backbone("resnet50v2_stage3", keras.applications.ResNet50V2, "mobilenet_v2", end="conv5_block1_preact_relu",
             cam_layer="conv5_block1_preact_relu", trainable_layers=69,  # stage 3
             weights="${SHARED}/weights/resnet_v2_50_imagenet_stages1-3", load_npy=resnet_v2_npy.load_npy_weights,
             weights_origin="TF-slim resnet_v2_50 (Google), stem and stages 1-3", licence="Apache 2.0"),
]}


def parts(backbone: str) -> list[Backbone]:
    """The registry entries of a backbone name ("a" or "a+b"); an unknown name lists the known ones."""
    names = backbone.split(JOIN)
    unknown = [n for n in names if n not in BACKBONES]
    if unknown or len(set(names)) != len(names):
        raise ValueError(f"Unknown or repeated backbone {backbone!r}; choose one of {sorted(BACKBONES)}, or two "
                         f"joined with {JOIN!r}.")
    return [BACKBONES[n] for n in names]


def preprocessing_of(backbone: str) -> str:
    """The one preprocessing all parts share (a joined model feeds both the same pixels)."""
    kinds = {part.preprocessing for part in parts(backbone)}
    if len(kinds) != 1:
        raise ValueError(f"{backbone!r} joins backbones that want different preprocessing ({sorted(kinds)}).")
    return kinds.pop()


def cam_layer_of(backbone: str) -> str:
    """The CAM layer of a model: its first backbone's."""
    return parts(backbone)[0].cam_layer


def imagenet_sources(settings: ModelSettings) -> dict[str, str | None]:
    """Each backbone's weights source from the config's `imagenet_weights`: None (random weights), one source
    (a single backbone's), or backbone name -> source ("default": the registry's)."""
    names, setting = [part.name for part in parts(settings.backbone)], settings.imagenet_weights
    if setting is None or isinstance(setting, str):
        if len(names) > 1 and setting is not None:
            raise ValueError(f"imagenet_weights of the joined {settings.backbone!r} must map each backbone to its "
                             f"weights source ('default': the registry's), e.g. {dict.fromkeys(names, 'default')}.")
        setting = dict.fromkeys(names, setting)
    sources = {n: BACKBONES[n].weights if setting.get(n) == "default" else setting.get(n) for n in names}
    return {n: expand(v) if v != "keras" else v for n, v in sources.items()}


def unfrozen_layers(backbone: str, setting: int | dict | None) -> dict[str, int]:
    """How many of each backbone's last layers fine-tuning trains, from the config's `unfreeze_layers`:
    None (each backbone's default), one number (for each), or backbone name -> number (0 where absent)."""
    names = [part.name for part in parts(backbone)]
    if setting is None:
        return {n: BACKBONES[n].trainable_layers for n in names}
    if isinstance(setting, int):
        return dict.fromkeys(names, setting)
    return {n: int(setting.get(n, 0)) for n in names}


@functools.cache
def layer_names(name: str) -> frozenset[str]:
    """The names of one backbone's layers up to its end (built once, without weights)."""
    part = BACKBONES[name]
    base = part.build(keras.Input((64, 64, 3)))
    names = [layer.name for layer in base.layers]
    return frozenset(names[: names.index(part.end) + 1])


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
    """pixels [0, 255] -> (augmentation) -> preprocess -> backbone(s) -> pool -> features -> dropout -> logits -> probs.

    `pool` concatenates the average of each of `feature_layers` (default: each backbone's end);
    `features` standardises them (mean and variance of the training photos' features, once known).
    With `parent_of`, the head scores fine-grained conditions (`fine_logits`) and `logits` sums them
    to `num_classes` classes (explain.layers.ParentLogits)."""
    entries = parts(backbone)
    inputs = keras.Input((image_size, image_size, 3), name="pixels")
    x = augmentation(inputs) if augmentation is not None else inputs
    x = PREPROCESSING[preprocessing_of(backbone)](name="preprocess")(x)
    bases = [part.build(x, alpha) for part in entries]
    names = feature_layers or [part.end for part in entries]
    layer = {lay.name: lay for base in bases for lay in base.layers}
    missing = [n for n in names if n not in layer]
    if missing:
        raise ValueError(f"feature_layers {missing} are not layers of {backbone!r}.")
    pooled = [keras.layers.GlobalAveragePooling2D(name="pool" if len(names) == 1 else f"pool_{n}")(layer[n].output)
              for n in names]
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
    return keras.Model(inputs, outputs, name=f"skin_{backbone.replace(JOIN, '_and_')}")


def classifier_for(settings: ModelSettings, num_classes: int, *, augmentation: keras.layers.Layer | None = None,
                   **head) -> keras.Model:
    """build_classifier with the experiment's backbone, input size, dropout, width and feature layers;
    `head` sets the features' standardisation and the fine classes (as `head_settings` reads them)."""
    return build_classifier(settings.backbone, num_classes, settings.image_size, augmentation=augmentation,
                            dropout=settings.dropout, alpha=settings.alpha, feature_layers=settings.feature_layers,
                            **head)


def head_settings(model: keras.Model) -> dict:
    """The keyword arguments of build_classifier that rebuild `model`'s head (standardisation, fine classes)."""
    norm = model.get_layer(FEATURES_LAYER).get_config()
    logits = model.get_layer("logits")
    return {"feature_mean": norm["mean"], "feature_variance": norm["variance"],
            "parent_of": logits.parent_of if isinstance(logits, ParentLogits) else None}


def backbone_layers(model: keras.Model, part: str | None = None) -> list[keras.layers.Layer]:
    """The layers of one backbone of the model (default: of all of them), in order."""
    names = [layer.name for layer in model.layers]
    every = [layer for layer in model.layers[names.index("preprocess") + 1:]
             if not layer.name.startswith("pool") and layer.name not in HEAD_LAYERS]
    return every if part is None else [layer for layer in every if layer.name in layer_names(part)]


def set_trainable(model: keras.Model, unfrozen: dict[str, int]) -> None:
    """Freeze each backbone except its last N layers (`unfrozen`: backbone name -> N); the head always trains.

    BatchNormalization layers stay frozen: with small batches their statistics would
    drift away from ImageNet's (the standard fine-tuning advice).
    """
    for layer in backbone_layers(model):
        layer.trainable = False
    for part, count in unfrozen.items():
        layers = backbone_layers(model, part)
        for layer in layers[max(0, len(layers) - count):]:
            layer.trainable = not isinstance(layer, keras.layers.BatchNormalization)


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


def load_imagenet_weights(model: keras.Model, settings: ModelSettings) -> None:
    """ImageNet weights into each backbone, from the config's `imagenet_weights` (`imagenet_sources`).

    A source is "keras" (downloaded through keras.applications), a `.npy` folder (read by the
    backbone's converter), a `.h5`/`.weights.h5` file of the include_top=False application, or None
    (random initialisation).
    """
    for part, source in zip(parts(settings.backbone), imagenet_sources(settings).values()):
        if source is None:
            continue
        layers = backbone_layers(model, part.name)
        if Path(source).is_dir():
            if part.load_npy is None:
                raise ValueError(f"{part.name} has no .npy converter; give a Keras weights file or \"keras\".")
            part.load_npy(layers, Path(source))
            continue
        copy_weights_by_name(part.build(None, weights="imagenet" if source == "keras" else source), model, layers)


def copy_backbone(reference: keras.Model, model: keras.Model) -> None:
    """Copy the backbones' weights from `reference`, layer by layer name."""
    copy_weights_by_name(reference, model, backbone_layers(model))

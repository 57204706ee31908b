"""ImageNet ResNet-50 v2, stem and stages 1-3, from TF-slim `.npy` arrays (../shared/weights/).

The arrays come from a TFLite export that folded batch normalisation into the convolutions
(see that folder's README): kernels are stored output channel first, `conv1`/`conv2` of each unit
carry the folded batch norm as a bias, and each unit's pre-activation batch norm is a multiply-add
pair. In Keras's ResNet50V2 those become the kernels transposed, identity batch norms whose beta
is the bias, and pre-activation batch norms with gamma = mul, beta = add.
"""

import re
from pathlib import Path

import keras
import numpy as np

PREFIX = "resnet_v2_50"
CONV_PART = {"0": "shortcut", "1": "conv1", "2": "conv2", "3": "conv3"}  # Keras convS_blockU_{N}_conv -> slim


def slim_unit(keras_name: str) -> tuple[str, str] | None:
    """Keras `conv{S+1}_block{U}_{rest}` -> (`resnet_v2_50_block{S}_unit_{U}_bottleneck_v2`, rest)."""
    match = re.fullmatch(r"conv(\d)_block(\d+)_(.+)", keras_name)
    if not match:
        return None
    stage, unit, rest = match.groups()
    return f"{PREFIX}_block{int(stage) - 1}_unit_{unit}_bottleneck_v2", rest


def arrays_for(layer: keras.layers.Layer, folder: Path, used: set[str]) -> list[np.ndarray] | None:
    """`layer`'s variables, in Keras's order, from the arrays (their file names added to `used`); None for a
    layer with no weights."""
    if not layer.weights:
        return None
    epsilon = getattr(layer, "epsilon", 0.0)

    def load(name: str) -> np.ndarray:
        path = folder / f"{name}.npy"
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: needed for layer {layer.name}.")
        used.add(path.name)
        return np.load(path)

    def batch_norm(gamma: np.ndarray, beta: np.ndarray) -> list[np.ndarray]:
        # mean 0 and variance 1 - eps: the layer computes exactly x * gamma + beta
        return [gamma, beta, np.zeros_like(beta), np.full_like(beta, 1.0 - epsilon)]

    if layer.name == "conv1_conv":
        return [load(f"{PREFIX}_conv1_weights").transpose(1, 2, 3, 0), load(f"{PREFIX}_conv1_Conv2D_bias")]
    unit = slim_unit(layer.name)
    if unit is None:
        raise ValueError(f"No TF-slim mapping for layer {layer.name} ({type(layer).__name__}).")
    scope, rest = unit
    if rest == "preact_bn":
        return batch_norm(load(f"{scope}_preact_FusedBatchNorm_mul_0_param"),
                          load(f"{scope}_preact_FusedBatchNorm_add_param"))
    conv = re.fullmatch(r"([0-3])_(conv|bn)", rest)
    if conv is None:
        raise ValueError(f"No TF-slim mapping for layer {layer.name} ({type(layer).__name__}).")
    part, kind = CONV_PART[conv.group(1)], conv.group(2)
    if kind == "bn":  # the batch norm folded into the convolution before it: its bias
        bias = load(f"{scope}_{part}_Conv2D_bias")
        return batch_norm(np.ones_like(bias), bias)
    kernel = load(f"{scope}_{part}_weights").transpose(1, 2, 3, 0)
    return [kernel] if len(layer.weights) == 1 else [kernel, load(f"{scope}_{part}_Conv2D_bias")]


def load_npy_weights(layers: list[keras.layers.Layer], folder: Path) -> set[str]:
    """Set every variable of a ResNet50V2 trunk's `layers` from `folder`; returns the files left unused.

    Raises if a variable has no array or an array's shape differs: a half-loaded backbone must
    never train silently.
    """
    folder = Path(folder)
    available = {p.name for p in folder.glob("*.npy")}
    used = set()
    for layer in layers:
        arrays = arrays_for(layer, folder, used)
        if arrays is None:
            continue
        for array, variable in zip(arrays, layer.weights, strict=True):
            if tuple(array.shape) != tuple(variable.shape):
                raise ValueError(f"{layer.name}: an array of shape {array.shape} for {variable.path}, which needs "
                                 f"{tuple(variable.shape)}.")
        layer.set_weights(arrays)
    return available - used


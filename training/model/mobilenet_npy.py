"""ImageNet MobileNetV2 from per-variable TF-slim `.npy` arrays (../shared/weights/).

Keras downloads its ImageNet weights from the internet, which these machines cannot
reach; the arrays carry the same checkpoint. TF-slim names map to Keras layer names:
`Conv` -> `Conv1`, `Conv_1` -> `Conv_1`, `expanded_conv_{part}` (block 0) and
`expanded_conv_N_{part}` -> `block_N_{part}`.
"""

import re
from pathlib import Path

import keras
import numpy as np

BN_VARIABLES = ("gamma", "beta", "moving_mean", "moving_variance")


def slim_prefix(keras_conv_name: str) -> str:
    """Keras conv layer name -> TF-slim scope of the same variable."""
    if keras_conv_name == "Conv1":
        return "Conv"
    if keras_conv_name == "Conv_1":
        return "Conv_1"
    block = re.fullmatch(r"block_(\d+)_(expand|depthwise|project)", keras_conv_name)
    if block:
        return f"expanded_conv_{block.group(1)}_{block.group(2)}"
    return keras_conv_name  # expanded_conv_depthwise, expanded_conv_project (block 0)


def _bn_conv_name(keras_bn_name: str) -> str:
    """The conv layer a BatchNormalization layer normalises."""
    if keras_bn_name == "bn_Conv1":
        return "Conv1"
    return re.sub(r"_(BN|bn)$", "", keras_bn_name)


def slim_files(layer: keras.layers.Layer) -> list[str]:
    """The .npy file names that hold `layer`'s variables, in Keras's weight order."""
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return [f"{slim_prefix(layer.name)}_depthwise_weights.npy"]
    if isinstance(layer, keras.layers.Conv2D):
        return [f"{slim_prefix(layer.name)}_weights.npy"]
    if isinstance(layer, keras.layers.BatchNormalization):
        prefix = slim_prefix(_bn_conv_name(layer.name))
        return [f"{prefix}_BatchNorm_{v}.npy" for v in BN_VARIABLES]
    return []


def load_npy_weights(layers: list[keras.layers.Layer], folder: Path) -> set[str]:
    """Set every variable of a MobileNetV2 backbone's `layers` from `folder`; returns the files left unused.

    Raises if a variable has no array or an array's shape differs: a half-loaded
    backbone must never train silently.
    """
    folder = Path(folder)
    available = {p.name for p in folder.glob("*.npy")}
    used = set()
    for layer in layers:
        if not layer.weights:
            continue
        files = slim_files(layer)
        if len(files) != len(layer.weights):
            raise ValueError(f"No TF-slim mapping for layer {layer.name} ({type(layer).__name__}).")
        arrays = []
        for name, variable in zip(files, layer.weights):
            if name not in available:
                raise FileNotFoundError(f"{folder / name} is missing: needed for {variable.path}.")
            array = np.load(folder / name)
            if tuple(array.shape) != tuple(variable.shape):
                raise ValueError(f"{name} has shape {array.shape}, {variable.path} needs {tuple(variable.shape)}.")
            arrays.append(array)
            used.add(name)
        layer.set_weights(arrays)
    return available - used

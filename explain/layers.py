"""Preprocessing that lives inside the model, so a saved model carries it.

`keras.layers.Lambda` does not reload under `safe_mode=True`; these small registered
layers do. This module must be imported before `keras.saving.load_model`
(`explain.model` does that).
"""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="skin")
class MobileNetV2Preprocess(keras.layers.Layer):
    """RGB in [0, 255] -> [-1, 1], as MobileNetV2's ImageNet weights expect."""

    def call(self, inputs):
        return inputs / 127.5 - 1.0


@keras.saving.register_keras_serializable(package="skin")
class ResNet50Preprocess(keras.layers.Layer):
    """RGB in [0, 255] -> BGR minus the ImageNet channel means ("caffe" mode)."""

    def call(self, inputs):
        bgr = ops.flip(inputs, axis=-1)
        return bgr - ops.convert_to_tensor([103.939, 116.779, 123.68], dtype=inputs.dtype)


PREPROCESSING = {"mobilenet_v2": MobileNetV2Preprocess, "resnet50": ResNet50Preprocess}

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


@keras.saving.register_keras_serializable(package="skin")
class ParentLogits(keras.layers.Layer):
    """Logits of fine-grained conditions -> logits of the classes they belong to.

    Each class's logit is the log-sum-exp of its conditions' logits, so its softmax
    probability is exactly the sum of theirs: a model trained on fine targets (the
    partitioning of Esteva et al., Nature 2017) answers in the app's classes.
    `parent_of[i]` is the class index of fine output i.
    """

    def __init__(self, parent_of: list[int], **kwargs):
        super().__init__(**kwargs)
        self.parent_of = [int(p) for p in parent_of]
        classes = max(self.parent_of) + 1
        membership = [[1.0 if p == c else 0.0 for c in range(classes)] for p in self.parent_of]
        self._log_membership = ops.log(ops.convert_to_tensor(membership) + 1e-30)  # (fine, classes)

    def call(self, fine_logits):
        return ops.logsumexp(fine_logits[:, :, None] + ops.cast(self._log_membership, fine_logits.dtype), axis=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], max(self.parent_of) + 1)

    def get_config(self):
        return {**super().get_config(), "parent_of": self.parent_of}

"""Class activation maps: which pixels drove a class's score.

Each method is a small subclass of `CamMethod` that overrides one function. The gradient
methods (`GradientCam`) override `combine`: the map from the explained layer's activations
and the gradients of the class's logit. Score-CAM, gradient-free, overrides `run` and scores
its masked copies of the photo as one batch. The classifier traces each method's `run` fused
with its prediction, so a map costs one pass (Score-CAM: one pass and one small batch).
tf-keras-vis computes the same maps; the tests hold these to it.
"""

import keras
import numpy as np
import tensorflow as tf


def normalize(cam: np.ndarray) -> np.ndarray:
    """Scale a map to [0, 1]; an all-equal map becomes all zeros."""
    cam = np.asarray(cam, dtype=np.float32)
    low, high = float(cam.min()), float(cam.max())
    return (cam - low) / (high - low) if high > low else np.zeros_like(cam)


def activations_and_logits(model: keras.Model, *layers: str) -> keras.Model:
    """The layers' activations and the logits (the input of the final softmax), in one model."""
    return keras.Model(model.inputs, [*(model.get_layer(name).output for name in layers), model.layers[-1].input])


def explained_class(logits: tf.Tensor, class_index: tf.Tensor) -> tf.Tensor:
    """The class a map explains: `class_index`, or the top class when it is negative (traced)."""
    return tf.where(class_index < 0, tf.argmax(logits[0], output_type=tf.int32), class_index)


def forward_and_backward(activations_and_logits: keras.Model, pixels, class_index, read_out=None):
    """One pass (traced inside tf.function) of a model from `activations_and_logits`: the first layer's
    activations, `read_out(every layer's activations, logits)` and the gradients of the explained
    logit with respect to the first layer; `class_index` < 0 explains the top class."""
    with tf.GradientTape() as tape:
        *activations, logits = activations_and_logits(pixels, training=False)
        outputs = read_out(activations, logits) if read_out else ()
        explained = logits[0, explained_class(logits, class_index)]
    return outputs, activations[0], tape.gradient(explained, activations[0])


class CamMethod:
    """Base: a [0, 1] map of one class's evidence in one image, at the explained layer's resolution.

    A method is one traced function, `run`, over a model from `activations_and_logits`; the
    classifier traces it fused with its own read-out of the probabilities. Gradient methods
    override `GradientCam.combine` instead."""

    name = ""

    @classmethod
    def run(cls, outputs: keras.Model, pixels, class_index, read_out=None) -> tuple:
        """(read_out(the layers' activations, logits), the map) in one traced pass; `class_index` < 0
        explains the top class. `outputs` is a model from `activations_and_logits`."""
        raise NotImplementedError


class GradientCam(CamMethod):
    """Base of the gradient methods: one forward and backward pass; subclasses override `combine`."""

    @classmethod
    def run(cls, outputs, pixels, class_index, read_out=None):
        read, activations, gradients = forward_and_backward(outputs, pixels, class_index, read_out)
        return read, cls.combine(activations, gradients)[0]

    @staticmethod
    def combine(activations: tf.Tensor, gradients: tf.Tensor) -> tf.Tensor:
        """The maps (batch, height, width) from activations and gradients (batch, height, width, channels)."""
        raise NotImplementedError


class GradCam(GradientCam):
    """Grad-CAM (Selvaraju et al. 2017): each channel weighted by its mean gradient."""

    name = "Grad-CAM"

    @staticmethod
    def combine(activations, gradients):
        weights = tf.reduce_mean(gradients, axis=(1, 2), keepdims=True)
        return tf.nn.relu(tf.reduce_sum(activations * weights, axis=-1))


class GradCamPlusPlus(GradientCam):
    """Grad-CAM++ (Chattopadhay et al. 2018): channel weights from positive gradients, each
    location weighted by higher-order terms, so several instances of a class all show.
    (The paper's exp(score) factor scales every weight alike and cancels in the normalised map.)"""

    name = "Grad-CAM++"

    @staticmethod
    def combine(activations, gradients):
        squared, cubed = gradients ** 2, gradients ** 3
        denominator = 2.0 * squared + cubed * tf.reduce_sum(activations, axis=(1, 2), keepdims=True)
        alphas = squared / (denominator + tf.cast(squared == 0.0, squared.dtype))
        total = tf.reduce_sum(alphas, axis=(1, 2), keepdims=True)
        alphas /= total + tf.cast(total == 0.0, total.dtype)
        weights = tf.reduce_sum(tf.nn.relu(gradients) * alphas, axis=(1, 2), keepdims=True)
        return tf.nn.relu(tf.reduce_sum(activations * weights, axis=-1))


class LayerCam(GradientCam):
    """LayerCAM (Jiang et al. 2021): positive gradients weight each location separately,
    which keeps detail at earlier, finer layers."""

    name = "LayerCAM"

    @staticmethod
    def combine(activations, gradients):
        return tf.nn.relu(tf.reduce_sum(activations * tf.nn.relu(gradients), axis=-1))


class ScoreCam(CamMethod):
    """Faster Score-CAM (Wang et al. 2020; Faster: only the channels of largest variance): the photo
    masked by each of the 5 most varied channels, upsampled and scaled to [0, 1], goes through the
    model as one batch; each channel is weighted by the class's probability on its masked copy.
    (This app once ran tf-keras-vis's Scorecam on the softmax output, which it softmaxes again: the
    weights then hardly differ between classes. Five channels, not ten: each masked copy costs most
    of a forward pass on a CPU.)"""

    name = "Score-CAM"
    channels = 5

    @classmethod
    def run(cls, outputs, pixels, class_index, read_out=None):
        *activations, logits = outputs(pixels, training=False)
        read = read_out(activations, logits) if read_out else ()
        target = explained_class(logits, class_index)
        spread = tf.math.reduce_std(activations[0][0], axis=(0, 1))
        k = min(cls.channels, activations[0].shape[-1])
        chosen = tf.gather(activations[0][0], tf.math.top_k(spread, k).indices, axis=-1)  # (h, w, k)
        # stretched with the corners aligned, as tf-keras-vis (scipy's zoom) stretches them
        masks = tf.raw_ops.ResizeBilinear(images=chosen[None], size=tf.shape(pixels)[1:3], align_corners=True)[0]
        low = tf.reduce_min(masks, axis=(0, 1), keepdims=True)
        high = tf.reduce_max(masks, axis=(0, 1), keepdims=True)
        masks = (masks - low) / (high - low + keras.config.epsilon())
        masked = tf.transpose(masks, (2, 0, 1))[..., None] * pixels  # (k, H, W, 3)
        weights = tf.nn.softmax(outputs(masked, training=False)[-1])[:, target]
        return read, tf.nn.relu(tf.reduce_sum(chosen * weights, axis=-1))


METHODS = {method.name: method for method in (GradCam, GradCamPlusPlus, ScoreCam, LayerCam)}
DEFAULT_METHOD = GradCam.name

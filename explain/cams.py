"""Class activation maps: which pixels drove a class's score.

Each method is a small subclass of `CamMethod` that overrides `cam`: given the model's
input and a class, return a map at the CAM layer's resolution. The base class takes the
Keras model and the layer to explain, and normalises the result. Grad-CAM, the default,
is one compiled forward+backward pass; the classifier fuses the same arithmetic
(`gradcam_map`) into its prediction pass, so the default answer costs one pass. The other
methods come from tf-keras-vis, whose objects are built once per model, never per request.
"""

import keras
import numpy as np
import tensorflow as tf
from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus
from tf_keras_vis.layercam import Layercam
from tf_keras_vis.scorecam import Scorecam
from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
from tf_keras_vis.utils.scores import CategoricalScore


def normalize(cam: np.ndarray) -> np.ndarray:
    """Scale a map to [0, 1]; an all-equal map becomes all zeros."""
    cam = np.asarray(cam, dtype=np.float32)
    low, high = float(cam.min()), float(cam.max())
    return (cam - low) / (high - low) if high > low else np.zeros_like(cam)


def activations_and_logits(model: keras.Model, cam_layer: str) -> keras.Model:
    """The CAM layer's activations and the logits (the input of the final softmax), in one model."""
    return keras.Model(model.inputs, [model.get_layer(cam_layer).output, model.layers[-1].input])


def gradcam_map(activations: tf.Tensor, gradients: tf.Tensor) -> tf.Tensor:
    """Grad-CAM of one image: activations weighted by their mean gradient, negative evidence cut."""
    weights = tf.reduce_mean(gradients, axis=(1, 2), keepdims=True)
    return tf.nn.relu(tf.reduce_sum(activations * weights, axis=-1))[0]


class CamMethod:
    """Base: a [0, 1] map of one class's evidence, at the CAM layer's resolution, for one image.
    Subclasses override `cam`."""

    name = ""

    def __init__(self, model: keras.Model, cam_layer: str):
        self.model = model
        self.cam_layer = cam_layer

    def __call__(self, pixels: np.ndarray, class_index: int) -> np.ndarray:
        return normalize(self.cam(pixels, class_index))

    def cam(self, pixels: np.ndarray, class_index: int) -> np.ndarray:
        raise NotImplementedError


class GradCam(CamMethod):
    """Grad-CAM (Selvaraju et al. 2017): activations weighted by their mean gradient."""

    name = "Grad-CAM"

    def __init__(self, model, cam_layer):
        super().__init__(model, cam_layer)
        self._activations_and_logits = activations_and_logits(model, cam_layer)
        spec = tf.TensorSpec((1, *model.input_shape[1:]), tf.float32)
        self._pass = tf.function(self._gradcam, input_signature=[spec, tf.TensorSpec([], tf.int32)])

    def cam(self, pixels, class_index):
        return self._pass(pixels, tf.constant(class_index, tf.int32)).numpy()

    def _gradcam(self, pixels, class_index):
        with tf.GradientTape() as tape:
            activations, logits = self._activations_and_logits(pixels, training=False)
            score = logits[0, class_index]
        return gradcam_map(activations, tape.gradient(score, activations))


class TfKerasVisCam(CamMethod):
    """A tf-keras-vis visualiser, built once; subclasses name the class and its options."""

    visualizer = None
    replace_softmax = True  # gradient methods explain the logit, not the softmax output
    options: dict = {}

    def __init__(self, model, cam_layer):
        super().__init__(model, cam_layer)
        modifier = ReplaceToLinear() if self.replace_softmax else None
        self._visualizer = self.visualizer(model, model_modifier=modifier, clone=True)

    def cam(self, pixels, class_index):
        maps = self._visualizer(
            CategoricalScore([class_index]),
            pixels,
            penultimate_layer=self.cam_layer,
            seek_penultimate_conv_layer=False,  # explain the named layer itself, not the conv before it
            expand_cam=False,
            normalize_cam=False,
            **self.options,
        )
        return np.asarray(maps[0])


class GradCamPlusPlus(TfKerasVisCam):
    """Grad-CAM++ (Chattopadhay et al. 2018): better for several instances of a class."""

    name = "Grad-CAM++"
    visualizer = GradcamPlusPlus


class LayerCam(TfKerasVisCam):
    """LayerCAM (Jiang et al. 2021): positive gradients weight each location separately."""

    name = "LayerCAM"
    visualizer = Layercam


class FasterScoreCam(TfKerasVisCam):
    """Faster Score-CAM: gradient-free, masks the image with the 10 strongest channels."""

    name = "Score-CAM"
    visualizer = Scorecam
    replace_softmax = False  # Score-CAM weighs channels by the softmax score itself
    options = {"max_N": 10}


METHODS = {method.name: method for method in (GradCam, GradCamPlusPlus, FasterScoreCam, LayerCam)}
DEFAULT_METHOD = GradCam.name

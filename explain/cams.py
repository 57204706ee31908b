"""Class activation maps: which pixels drove a class's score.

`CamMethod` does the plumbing (the prediction, the target class, normalisation); each
method is a small subclass that overrides `cam`. Grad-CAM, the default, overrides the
whole call instead: one compiled forward+backward pass yields the prediction and the
map together. The other methods come from tf-keras-vis, whose objects are built
once per classifier, never per request.
"""

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


class CamMethod:
    """Base: the prediction and a [0, 1] map at the CAM layer's resolution for one image."""

    name = ""

    def __init__(self, classifier):
        self.classifier = classifier

    def __call__(self, pixels: np.ndarray, class_index: int | None) -> tuple:
        prediction = self.classifier.predict_pixels(pixels)
        target = prediction.top_index if class_index is None else class_index
        return prediction, normalize(self.cam(pixels, target))

    def cam(self, pixels: np.ndarray, class_index: int) -> np.ndarray:
        raise NotImplementedError


class GradCam(CamMethod):
    """Grad-CAM (Selvaraju et al. 2017): activations weighted by their mean gradient."""

    name = "Grad-CAM"

    def __init__(self, classifier):
        super().__init__(classifier)
        spec = tf.TensorSpec(classifier.input_shape, tf.float32)
        self._pass = tf.function(self._prediction_and_cam, input_signature=[spec, tf.TensorSpec([], tf.int32)])

    def __call__(self, pixels, class_index):
        probabilities, abstain_score, cam = self._pass(pixels, tf.constant(-1 if class_index is None else class_index))
        return self.classifier.prediction(probabilities, abstain_score), normalize(cam.numpy())

    def _prediction_and_cam(self, pixels, class_index):
        with tf.GradientTape() as tape:
            activations, logits = self.classifier.activations_and_logits(pixels, training=False)
            probabilities, abstain_score = self.classifier.read_out(activations, logits)
            target = tf.where(class_index < 0, tf.argmax(probabilities, output_type=tf.int32), class_index)
            score = logits[0, target]
        grads = tape.gradient(score, activations)
        weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
        cam = tf.nn.relu(tf.reduce_sum(activations * weights, axis=-1))[0]
        return probabilities, abstain_score, cam


class TfKerasVisCam(CamMethod):
    """A tf-keras-vis visualiser, built once; subclasses name the class and its options."""

    visualizer = None
    replace_softmax = True  # gradient methods explain the logit, not the softmax output
    options: dict = {}

    def __init__(self, classifier):
        super().__init__(classifier)
        modifier = ReplaceToLinear() if self.replace_softmax else None
        self._visualizer = self.visualizer(classifier.keras_model, model_modifier=modifier, clone=True)

    def cam(self, pixels, class_index):
        maps = self._visualizer(
            CategoricalScore([class_index]),
            pixels,
            penultimate_layer=self.classifier.cam_layer,
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

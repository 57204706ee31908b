"""A loaded model with its compiled passes: probabilities, uncertainty and explanations.

Built once per process; every request reuses the same traced `tf.function`s (fixed
input signature, so nothing is retraced) and the same CAM objects.
"""

from dataclasses import dataclass

import numpy as np
import tensorflow as tf
from PIL import Image

from explain.cams import DEFAULT_METHOD, METHODS, CamMethod, GradCam, activations_and_logits, gradcam_map, normalize
from explain.images import fit_to_model
from explain.model import LoadedModel


@dataclass(frozen=True)
class Prediction:
    labels: list[str]
    probabilities: np.ndarray  # over all classes, sums to 1
    abstain_threshold: float | None
    abstain_score: float  # the top probability, or the feature similarity (see ModelConfig.abstain_score)

    @property
    def top_index(self) -> int:
        return int(np.argmax(self.probabilities))

    @property
    def top_label(self) -> str:
        return self.labels[self.top_index]

    @property
    def uncertain(self) -> bool:
        """True when the abstention score is under the model's threshold."""
        return self.abstain_threshold is not None and self.abstain_score < self.abstain_threshold

    def top_k(self, k: int) -> dict[str, float]:
        """The k most likely classes with their probabilities, most likely first."""
        order = np.argsort(self.probabilities)[::-1][: max(1, k)]
        return {self.labels[i]: float(self.probabilities[i]) for i in order}


@dataclass(frozen=True)
class Explanation:
    prediction: Prediction
    cam: np.ndarray  # [0, 1], at the CAM layer's resolution
    method: str
    target: str  # the class the map explains


class Classifier:
    def __init__(self, loaded: LoadedModel):
        self.loaded = loaded
        self.keras_model = loaded.keras_model
        self.labels = loaded.labels
        self.config = loaded.config
        self.temperature = float(loaded.config.temperature)
        self.cam_layer = loaded.cam_layer
        self.activations_and_logits = activations_and_logits(self.keras_model, self.cam_layer)
        self.class_means = None if loaded.class_means is None else tf.constant(loaded.class_means)
        spec = tf.TensorSpec((1, self.config.image_size, self.config.image_size, 3), tf.float32)
        self._forward = tf.function(self._probabilities_and_score, input_signature=[spec])
        self._forward_with_gradcam = tf.function(self._probabilities_score_and_gradcam,
                                                 input_signature=[spec, tf.TensorSpec([], tf.int32)])
        self._cams: dict[str, CamMethod] = {}

    def pixels(self, photo: Image.Image) -> np.ndarray:
        """The model's input batch of one, resized as in training."""
        return fit_to_model(photo, self.config.image_size)[None]

    def predict_pixels(self, pixels: np.ndarray) -> Prediction:
        return self.prediction(*self._forward(pixels))

    def predict(self, photo: Image.Image) -> Prediction:
        return self.predict_pixels(self.pixels(photo))

    def explain(self, photo: Image.Image, method: str = DEFAULT_METHOD, target: str | None = None) -> Explanation:
        """Probabilities and a CAM for `target` (default: the most likely class)."""
        if method not in METHODS:
            raise ValueError(f"Unknown CAM method {method!r}; choose one of {', '.join(METHODS)}.")
        if target is not None and target not in self.labels:
            raise ValueError(f"Unknown class {target!r}; this model knows {', '.join(self.labels)}.")
        return self.explain_pixels(self.pixels(photo), method, None if target is None else self.labels.index(target))

    def explain_pixels(self, pixels: np.ndarray, method: str = DEFAULT_METHOD,
                       class_index: int | None = None) -> Explanation:
        if method == GradCam.name:  # one compiled pass yields the probabilities, the score and the map
            probabilities, score, cam = self._forward_with_gradcam(pixels, tf.constant(
                -1 if class_index is None else class_index, tf.int32))
            prediction, cam = self.prediction(probabilities, score), normalize(cam.numpy())
        else:
            prediction = self.predict_pixels(pixels)
            class_index = prediction.top_index if class_index is None else class_index
            cam = self.cam_method(method)(pixels, class_index)
        target = prediction.top_index if class_index is None else class_index
        return Explanation(prediction, cam, method, self.labels[target])

    def cam_method(self, name: str) -> CamMethod:
        """The method's object, built on first use and kept for the process's life."""
        if name not in self._cams:
            self._cams[name] = METHODS[name](self.keras_model, self.cam_layer)
        return self._cams[name]

    def warm_up(self) -> None:
        """Trace the compiled passes once, so the first real request pays no tracing cost."""
        blank = Image.new("RGB", (self.config.image_size,) * 2, (128, 128, 128))
        self.explain(blank)
        self.predict(blank)

    def _probabilities_and_score(self, pixels):
        return self._read_out(*self.activations_and_logits(pixels, training=False))

    def _probabilities_score_and_gradcam(self, pixels, class_index):
        with tf.GradientTape() as tape:
            activations, logits = self.activations_and_logits(pixels, training=False)
            probabilities, score = self._read_out(activations, logits)
            target = tf.where(class_index < 0, tf.argmax(probabilities, output_type=tf.int32), class_index)
            explained = logits[0, target]
        return probabilities, score, gradcam_map(activations, tape.gradient(explained, activations))

    def _read_out(self, activations, logits) -> tuple[tf.Tensor, tf.Tensor]:
        """Probabilities and the abstention score from one pass (traced inside tf.function)."""
        probabilities = tf.nn.softmax(logits / self.temperature)[0]
        if self.class_means is None:
            return probabilities, tf.reduce_max(probabilities)
        features = tf.math.l2_normalize(tf.reduce_mean(activations, axis=(1, 2)), axis=-1)  # = the pooled features
        return probabilities, tf.reduce_max(tf.matmul(features, self.class_means, transpose_b=True))

    def prediction(self, probabilities, score) -> Prediction:
        return Prediction(self.labels, np.asarray(probabilities), self.config.abstain_threshold, float(score))

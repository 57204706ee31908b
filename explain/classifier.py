"""A loaded model with its compiled passes: probabilities, uncertainty and explanations.

Built once per process; every request reuses the same traced `tf.function`s (fixed
input signature, so nothing is retraced): one per CAM method and resolution, each the
method's map fused with the prediction.
"""

from dataclasses import dataclass

import numpy as np
import tensorflow as tf
from PIL import Image

from explain.cams import DEFAULT_METHOD, METHODS, activations_and_logits, normalize
from explain.errors import RequestError
from explain.images import fit_to_model
from explain.model import LoadedModel
from explain.verdicts import ANSWER, prediction_sets, scaled_softmax, scores, verdicts

BATCH = 4  # photos per call when many go through the model (see Classifier.probabilities)
# The map shown unless another is asked for: the finer one where the model has it, chosen by the
# heatmap study (faithfulness against a random mask on held-out photos, docs/explanations.md).
DEFAULT_RESOLUTION = "fine"


@dataclass(frozen=True)
class Prediction:
    labels: list[str]
    probabilities: np.ndarray  # over all classes, sums to 1
    scores: dict[str, float]  # each verdict's score (explain.verdicts.VERDICT_OF)
    thresholds: dict[str, float | None]  # each score's threshold (ModelConfig.thresholds)
    shortlist: dict | None = None  # the model's calibrated prediction set (ModelConfig.shortlist)

    @property
    def top_index(self) -> int:
        return int(np.argmax(self.probabilities))

    @property
    def top_label(self) -> str:
        return self.labels[self.top_index]

    @property
    def listed(self) -> list[str] | None:
        """The classes of the photo's conformal prediction set, most likely first (None: the model has
        no shortlist)."""
        if self.shortlist is None:
            return None
        inside = prediction_sets(self.probabilities, self.shortlist["score"], self.shortlist["threshold"])[0]
        return [self.labels[i] for i in np.argsort(self.probabilities)[::-1] if inside[i]]

    @property
    def verdict(self) -> str:
        """One of explain.verdicts.KINDS, by its rule."""
        listed = self.listed
        return verdicts(self.scores, self.thresholds, None if listed is None else [len(listed)])[0]

    @property
    def uncertain(self) -> bool:
        """True when the model does not name a class (any verdict but ANSWER)."""
        return self.verdict != ANSWER

    def top_k(self, k: int) -> dict[str, float]:
        """The k most likely classes with their probabilities, most likely first."""
        order = np.argsort(self.probabilities)[::-1][: max(1, k)]
        return {self.labels[i]: float(self.probabilities[i]) for i in order}


@dataclass(frozen=True)
class Explanation:
    prediction: Prediction
    cam: np.ndarray  # [0, 1], at the explained layer's resolution
    method: str
    target: str  # the class the map explains
    target_index: int
    layer: str  # the layer explained


class Classifier:
    def __init__(self, loaded: LoadedModel):
        self.loaded = loaded
        self.keras_model = loaded.keras_model
        self.labels = loaded.labels
        self.config = loaded.config
        self.temperature = float(loaded.config.temperature)
        # the layers a map can explain: the CAM layer, and one twice as fine where the model has it
        self.layers = {"coarse": loaded.cam_layer} | ({"fine": loaded.finer_layer} if loaded.finer_layer else {})
        # per resolution: the explained layer's activations, the CAM layer's (the abstention score
        # reads them), the logits
        self.activations_and_logits = {
            name: activations_and_logits(self.keras_model, *dict.fromkeys((layer, loaded.cam_layer)))
            for name, layer in self.layers.items()}
        self.skin_readout, self.class_means = loaded.skin_readout, loaded.class_means
        size = self.config.image_size
        self.input_spec = tf.TensorSpec((1, size, size, 3), tf.float32)
        self._forward = tf.function(self._logits_and_features, input_signature=[self.input_spec])
        self._batch = tf.function(self._batch_probabilities,
                                  input_signature=[tf.TensorSpec((None, size, size, 3), tf.float32)])
        self._fused: dict[tuple[str, str], tf.types.experimental.GenericFunction] = {}

    @property
    def cam_layer(self) -> str:
        return self.layers["coarse"]

    @property
    def default_resolution(self) -> str:
        return DEFAULT_RESOLUTION if DEFAULT_RESOLUTION in self.layers else "coarse"

    def pixels(self, photo: Image.Image) -> np.ndarray:
        """The model's input batch of one, resized as in training."""
        return fit_to_model(photo, self.config.image_size)[None]

    def predict_pixels(self, pixels: np.ndarray) -> Prediction:
        return self.prediction(*self._forward(pixels))

    def predict(self, photo: Image.Image) -> Prediction:
        return self.predict_pixels(self.pixels(photo))

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        """(n, classes) probabilities of a batch of model inputs, through one compiled function in
        chunks of BATCH (small batches cost least a photo on a 2-core CPU; docs/performance.md)."""
        batch = np.asarray(batch, dtype=np.float32)
        return np.concatenate([self._batch(batch[i:i + BATCH]).numpy() for i in range(0, len(batch), BATCH)])

    def explain(self, photo: Image.Image, method: str = DEFAULT_METHOD, target: str | None = None,
                resolution: str | None = None) -> Explanation:
        """Probabilities and a CAM for `target` (default: the most likely class) at `resolution`
        (default: the page's, `default_resolution`)."""
        return self.explain_pixels(self.pixels(photo), method, self.class_index(target), resolution)

    def resolution(self, name: str | None) -> str:
        """A map resolution this model offers (None: the default one)."""
        if name is None:
            return self.default_resolution
        if name not in self.layers:
            raise RequestError(f"Unknown map resolution {name!r}; this model offers {', '.join(self.layers)}.")
        return name

    def class_index(self, target: str | None) -> int | None:
        """The output index of a class name (None stays None: the most likely class)."""
        if target is not None and target not in self.labels:
            raise RequestError(f"Unknown class {target!r}; this model knows {', '.join(self.labels)}.")
        return None if target is None else self.labels.index(target)

    def grid(self, resolution: str) -> str:
        """A resolution as the card's study table names it, e.g. "7x7 (out_relu)"."""
        height, width = self._grid_shape(resolution)
        return f"{height}x{width} ({self.layers[resolution]})"

    def squares(self, resolution: str) -> str:
        """A resolution in the page's plain words, e.g. "7x7 squares"."""
        height, width = self._grid_shape(resolution)
        return f"{height}x{width} squares"

    def grey_photo(self) -> Image.Image:
        """A plain mid-grey photo at the model's input size: it shows nothing (warm-up, border checks)."""
        return Image.new("RGB", (self.config.image_size,) * 2, (128, 128, 128))

    def explain_pixels(self, pixels: np.ndarray, method: str = DEFAULT_METHOD, class_index: int | None = None,
                       resolution: str | None = None) -> Explanation:
        if method not in METHODS:
            raise RequestError(f"Unknown CAM method {method!r}; choose one of {', '.join(METHODS)}.")
        resolution = self.resolution(resolution)
        *read, cam = self._fused_pass(method, resolution)(
            pixels, tf.constant(-1 if class_index is None else class_index, tf.int32))
        prediction, cam = self.prediction(*read), normalize(cam.numpy())
        class_index = prediction.top_index if class_index is None else class_index
        return Explanation(prediction, cam, method, self.labels[class_index], class_index, self.layers[resolution])

    def warm_up(self) -> None:
        """Trace every compiled pass once (each method at each resolution, then the prediction), so no
        visitor pays a tracing cost: not the first Analyze, not the first Compare."""
        blank = self.grey_photo()
        pixels = self.pixels(blank)
        logger, level = tf.get_logger(), tf.get_logger().level
        logger.setLevel("ERROR")  # one trace per pass is the design, not the "retracing" TF warns of
        try:
            for resolution in self.layers:
                for method in METHODS:
                    self.explain_pixels(pixels, method, None, resolution)
            self.predict(blank)
            self.probabilities(pixels)
        finally:
            logger.setLevel(level)

    def _grid_shape(self, resolution: str) -> tuple[int, int]:
        return tuple(self.keras_model.get_layer(self.layers[resolution]).output.shape[1:3])

    def _fused_pass(self, method: str, resolution: str):
        """The prediction pass with a method's map fused in, traced once per method and layer."""
        if (method, resolution) not in self._fused:
            run, outputs = METHODS[method].run, self.activations_and_logits[resolution]

            def fused(pixels, class_index):
                read, cam = run(outputs, pixels, class_index, self._read_out)
                return (*read, cam)

            self._fused[method, resolution] = tf.function(
                fused, input_signature=[self.input_spec, tf.TensorSpec([], tf.int32)])
        return self._fused[method, resolution]

    def _logits_and_features(self, pixels):
        *activations, logits = self.activations_and_logits["coarse"](pixels, training=False)
        return self._read_out(activations, logits)

    def _batch_probabilities(self, batch):
        return tf.nn.softmax(self.activations_and_logits["coarse"](batch, training=False)[1] / self.temperature)

    def _read_out(self, activations: list, logits) -> tuple[tf.Tensor, tf.Tensor]:
        """The logits and the pooled CAM-layer features from one pass (traced inside tf.function); the
        CAM layer's activations come last."""
        return logits[0], tf.reduce_mean(activations[-1], axis=(1, 2))[0]

    def prediction(self, logits, pooled_features) -> Prediction:
        """The Prediction, its verdict scores computed as the evaluation computes them (explain.verdicts)."""
        logits = np.asarray(logits)
        read = scores(np.asarray(pooled_features), logits, self.temperature, self.skin_readout, self.class_means)
        return Prediction(self.labels, scaled_softmax(logits, self.temperature)[0],
                          {k: float(v[0]) for k, v in read.items()}, self.config.thresholds, self.config.shortlist)

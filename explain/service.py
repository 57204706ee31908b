"""What the app, the API and the command line do with a photo, in one place.

`Service.start` resolves and loads the model once per process and warms it up; each
request then reads the photo safely, predicts and explains, and returns domain objects
(`Prediction`, `Explanation`, the overlay image) that the page (`explain.page`) and the
command line word in their own way. When no model can be had, the service still starts
and every request raises the reason, instead of crashing.
"""

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import keras
from PIL import Image

from explain import faithfulness
from explain.cams import DEFAULT_METHOD, METHODS
from explain.card import FALLBACK_DISCLAIMER
from explain.classifier import Classifier, Explanation, Prediction
from explain.errors import InputImageError, SkinExplainError
from explain.images import ACCEPTED_FORMATS, load_photo
from explain.model import EXAMPLES_FOLDER, LoadedModel
from explain.overlay import MAX_SIDE, overlay
from explain.resolve import load_bundled_model, resolve_model
from explain.settings import BUNDLED_MODEL_DIR, EXAMPLES_DIR, Settings

log = logging.getLogger(__name__)
COMPARED_CLASSES = 3  # the Compare view also maps each of the top 3 classes


@dataclass(frozen=True)
class ExplainedPhoto:
    """One photo explained: the classifier's explanation, its map drawn over the photo, and how much
    hiding the map's top pixels moves the class against hiding random ones."""

    explanation: Explanation
    overlay: Image.Image
    check: faithfulness.Check


@dataclass(frozen=True)
class MethodResult:
    explanation: Explanation
    overlay: Image.Image
    seconds: float  # the map's computation alone
    deletion: faithfulness.Curve


@dataclass(frozen=True)
class Comparison:
    """Every method's map of one class, each with its deletion curve and time; the random
    baseline's curve; and the default method's maps of the top classes."""

    prediction: Prediction
    target: str
    resolution: str
    grid: str  # the resolution as the card's study table names it (Classifier.grid)
    methods: list[MethodResult]
    random: faithfulness.Curve
    classes: list[tuple[Explanation, Image.Image]]


@dataclass
class Service:
    settings: Settings
    classifier: Classifier | None = None
    model_error: SkinExplainError | None = None
    fallback_reason: str | None = None  # set when the bundled model stands in for the configured one

    @classmethod
    def start(cls, settings: Settings | None = None) -> "Service":
        """Load the configured model once and warm it up; never raises for a missing model."""
        settings = settings or Settings.from_env()
        # A server logs; it draws no progress bars (any Keras `predict` would draw one per call).
        keras.utils.disable_interactive_logging()
        try:
            loaded, fallback_reason = resolve_model(settings), None
        except SkinExplainError as err:
            if not (settings.fallback_to_bundled and (BUNDLED_MODEL_DIR / "model.keras").is_file()):
                log.error("No model: %s", err)
                return cls(settings, model_error=err)
            log.warning("Configured model unavailable, using the bundled one: %s", err)
            loaded, fallback_reason = load_bundled_model(), str(err)
        classifier = Classifier(loaded)
        classifier.warm_up()
        return cls(settings, classifier, fallback_reason=fallback_reason)

    @property
    def model(self) -> LoadedModel | None:
        return self.classifier.loaded if self.classifier else None

    @property
    def labels(self) -> list[str]:
        return self.classifier.labels if self.classifier else []

    @property
    def disclaimer(self) -> str:
        return self.model.disclaimer if self.model else FALLBACK_DISCLAIMER

    def example_photos(self) -> list[str]:
        """Example images from `examples/` and from the model folder's `examples/`."""
        folders = [EXAMPLES_DIR] + ([self.model.folder / EXAMPLES_FOLDER] if self.model and self.model.folder else [])
        suffixes = {f".{fmt.lower()}" for fmt in ACCEPTED_FORMATS} | {".jpg", ".tif"}
        return [str(p) for folder in folders if folder.is_dir() for p in sorted(folder.iterdir())
                if p.suffix.lower() in suffixes]

    def read(self, photo: str | os.PathLike | bytes | None) -> Image.Image:
        if photo is None:
            # also what an API caller gets whose file the server refused as too large (HTTP 413): the
            # JavaScript client then sends no photo at all
            raise InputImageError(f"No photo yet: upload, paste or take a photo first. A file over "
                                  f"{self.settings.max_upload_bytes / 1e6:.0f} MB is refused before it arrives.")
        # decoded no larger than the heatmap and the model need
        needed = max(MAX_SIDE, self.classifier.config.image_size if self.classifier else 0)
        return load_photo(photo, self.settings.max_upload_bytes, self.settings.max_pixels, at_least=needed)

    def predict(self, photo) -> Prediction:
        return self._classifier().predict(self.read(photo))

    def explain_photo(self, photo, method: str = DEFAULT_METHOD, target: str | None = None, *, opacity: float,
                      resolution: str | None = None) -> ExplainedPhoto:
        """The explanation of `target` (default: the most likely class) at `resolution` (default: the
        model's default), drawn with `opacity`."""
        picture, classifier = self.read(photo), self._classifier()
        pixels = classifier.pixels(picture)
        explanation = classifier.explain_pixels(pixels, method, classifier.class_index(target), resolution)
        check = faithfulness.check(classifier, pixels, explanation)
        return ExplainedPhoto(explanation, overlay(picture, explanation.cam, opacity), check)

    def compare(self, photo, target: str | None = None, *, opacity: float, resolution: str | None = None) -> Comparison:
        """The Compare view: every method on one class, with deletion curves and times, and the
        default method's maps of the top classes."""
        picture, classifier = self.read(photo), self._classifier()
        resolution = classifier.resolution(resolution)
        pixels = classifier.pixels(picture)
        index, timed = classifier.class_index(target), []
        for method in METHODS:  # the first pass settles the class when none is named
            start = time.perf_counter()
            explanation = classifier.explain_pixels(pixels, method, index, resolution)
            timed.append((explanation, time.perf_counter() - start))
            index = explanation.target_index
        prediction = timed[0][0].prediction
        curves = faithfulness.curves(classifier, pixels, {e.method: e.cam for e, _ in timed}, index, insertion=False)
        methods = [MethodResult(e, overlay(picture, e.cam, opacity), seconds, curves[e.method]) for e, seconds in timed]
        drawn = {index: next(m for m in methods if m.explanation.method == DEFAULT_METHOD)}  # not computed twice
        classes = []
        for i in (int(i) for i in prediction.probabilities.argsort()[::-1][:COMPARED_CLASSES]):
            if i in drawn:
                classes.append((drawn[i].explanation, drawn[i].overlay))
            else:
                explanation = classifier.explain_pixels(pixels, DEFAULT_METHOD, i, resolution)
                classes.append((explanation, overlay(picture, explanation.cam, opacity)))
        return Comparison(prediction, classifier.labels[index], resolution, classifier.grid(resolution), methods,
                          curves["random"], classes)

    def _classifier(self) -> Classifier:
        if self.classifier is None:
            raise self.model_error
        return self.classifier


def example_name(path: str) -> str:
    """The label under an example: its file name, e.g. "Psoriasis" or "Astronaut face"."""
    return Path(path).stem.replace("-", " ").capitalize()

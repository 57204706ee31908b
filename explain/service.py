"""What the app, the API and the command line do with a photo, in one place.

`Service.start` resolves and loads the model once per process and warms it up; each
request then reads the photo safely, predicts and explains. When no model can be had,
the service still starts and every request explains why, instead of crashing.
"""

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import keras
from PIL import Image

from explain.cams import DEFAULT_METHOD
from explain.card import FALLBACK_DISCLAIMER
from explain.classifier import UNCERTAIN_MESSAGE, Classifier, Prediction
from explain.errors import InputImageError, SkinExplainError
from explain.images import ACCEPTED_FORMATS, load_photo
from explain.model import ModelSource, load_model_folder, resolve_model
from explain.overlay import MAX_SIDE, overlay
from explain.settings import BUNDLED_MODEL_DIR, EXAMPLES_DIR, Settings

log = logging.getLogger(__name__)
TOP_CLASS = "Most likely class"


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
        # A server logs; it draws no progress bars (Score-CAM's model.predict would draw one per request).
        keras.utils.disable_interactive_logging()
        try:
            loaded, fallback_reason = resolve_model(settings), None
        except SkinExplainError as err:
            if not (settings.fallback_to_bundled and (BUNDLED_MODEL_DIR / "model.keras").is_file()):
                log.error("No model: %s", err)
                return cls(settings, model_error=err)
            log.warning("Configured model unavailable, using the bundled one: %s", err)
            loaded = load_model_folder(BUNDLED_MODEL_DIR, ModelSource("bundled", BUNDLED_MODEL_DIR.name))
            fallback_reason = str(err)
        classifier = Classifier(loaded)
        classifier.warm_up()
        return cls(settings, classifier, fallback_reason=fallback_reason)

    # --- what the page shows about the model ---
    @property
    def labels(self) -> list[str]:
        return self.classifier.labels if self.classifier else []

    @property
    def disclaimer(self) -> str:
        return self.classifier.loaded.disclaimer if self.classifier else FALLBACK_DISCLAIMER

    def model_status(self) -> str:
        """One Markdown line: which model and revision answer, or why none does."""
        if self.classifier is None:
            return f"**No model is available.** {self.model_error}"
        loaded = self.classifier.loaded
        line = f"Model **{loaded.config.name}** ({len(loaded.labels)} classes), {loaded.source.describe()}."
        if self.fallback_reason:
            line += f" The configured model could not be loaded, so the bundled model answers instead: {self.fallback_reason}"
        return line

    def example_photos(self) -> list[str]:
        """Example images from `examples/` and from the model folder's `examples/`."""
        folders = [EXAMPLES_DIR] + ([self.classifier.loaded.folder / "examples"] if self.classifier else [])
        suffixes = {f".{fmt.lower()}" for fmt in ACCEPTED_FORMATS} | {".jpg", ".tif"}
        return [str(p) for folder in folders if folder.is_dir() for p in sorted(folder.iterdir())
                if p.suffix.lower() in suffixes]

    # --- requests ---
    def read(self, photo: str | os.PathLike | bytes | None) -> Image.Image:
        if photo is None:
            raise InputImageError("No photo yet: upload, paste or take a photo first.")
        # decoded no larger than the heatmap and the model need
        needed = max(MAX_SIDE, self.classifier.config.image_size if self.classifier else 0)
        return load_photo(photo, self.settings.max_upload_bytes, self.settings.max_pixels, at_least=needed)

    def predict(self, photo, top_k: int = 3) -> tuple[dict[str, float], str]:
        """Top-k label data and a one-line verdict."""
        prediction = self._model().predict(self.read(photo))
        return prediction.top_k(int(top_k)), self.verdict(prediction)

    def explain(self, photo, method: str = DEFAULT_METHOD, target: str | None = None, opacity: float = 0.45,
                top_k: int = 3) -> tuple[dict[str, float], Image.Image, str]:
        """Top-k label data, the CAM overlay and a one-line verdict naming the explained class."""
        picture = self.read(photo)
        result = self._model().explain(picture, method, None if target in (None, "", TOP_CLASS) else target)
        note = self.verdict(result.prediction) + f" The heatmap shows what drove **{result.target}** ({result.method})."
        return result.prediction.top_k(int(top_k)), overlay(picture, result.cam, float(opacity)), note

    def verdict(self, prediction: Prediction) -> str:
        top = f"{prediction.top_label.replace('_', ' ')} ({prediction.probabilities.max():.0%})"
        if prediction.uncertain:
            return f"**{UNCERTAIN_MESSAGE}** Its closest guess would be {top}."
        return f"Most likely: **{top}**. Not a diagnosis."

    def _model(self) -> Classifier:
        if self.classifier is None:
            raise self.model_error
        return self.classifier


def example_name(path: str) -> str:
    return Path(path).stem.replace("-", " ")

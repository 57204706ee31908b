"""Finding and loading the model folder, once per process.

A model folder holds `model.keras`, `labels.json` (class names in output order),
`config.json` (see `ModelConfig`), `README.md` (the model card) and optionally
`class_means.npy` (for the "uncertain" answer, see `ModelConfig.abstain_score`). It comes from, in
this order: `SKIN_MODEL_DIR`, `SKIN_MODEL_REPO`[@`SKIN_MODEL_REVISION`] on the Hub, or
the bundled default model.
"""

import json
import zipfile
from dataclasses import dataclass, fields
from pathlib import Path

import keras
import numpy as np

from explain import layers  # noqa: F401  (registers the preprocessing layers for loading)
from explain.card import disclaimer
from explain.errors import ModelFormatError, ModelNotConfiguredError
from explain.hub import fetch_model_folder
from explain.settings import BUNDLED_MODEL_DIR, Settings

ABSTAIN_SCORES = ("max_probability", "feature_similarity")


@dataclass(frozen=True)
class ModelConfig:
    """`config.json`: how to feed the model and explain it."""

    name: str
    image_size: int
    preprocessing: str  # which layer of explain.layers.PREPROCESSING the model contains
    cam_layer: str | None = None  # None: the last 4-D convolutional activation
    temperature: float = 1.0  # divides the logits (fitted on validation data)
    # "uncertain" when the abstention score is below the threshold. The score is "max_probability"
    # (the top class's probability) or "feature_similarity": cosine similarity of the photo's
    # pooled CAM-layer features to the nearest row of class_means.npy (each class's mean over
    # its training photos), which separates unfamiliar photos far better on the default model.
    abstain_threshold: float | None = None
    abstain_score: str = "max_probability"

    @classmethod
    def from_json(cls, data: dict) -> "ModelConfig":
        """Reads the fields above; other keys (notes the training run recorded) are ignored."""
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


@dataclass(frozen=True)
class ModelSource:
    """Where the model came from, as the page and the API report it."""

    kind: str  # "folder", "hub" or "bundled"
    location: str  # a path or a Hub repo id
    revision: str | None = None  # the Hub commit that answered

    def describe(self) -> str:
        if self.kind == "hub":
            return f"Hub repo {self.location} at revision {self.revision}"
        return f"{self.kind} model at {self.location}"


@dataclass
class LoadedModel:
    keras_model: keras.Model
    labels: list[str]
    config: ModelConfig
    source: ModelSource
    folder: Path
    cam_layer: str  # the layer the CAMs explain: config.cam_layer, or the last 4-D activation
    class_means: np.ndarray | None = None  # (classes, CAM-layer channels), unit rows

    @property
    def disclaimer(self) -> str:
        return disclaimer(self.folder / "README.md")


def load_model_folder(folder: Path, source: ModelSource) -> LoadedModel:
    """Load a model folder safely: `safe_mode=True` never runs code stored in the file."""
    folder = Path(folder)
    for name in ("model.keras", "labels.json", "config.json"):
        if not (folder / name).is_file():
            raise ModelFormatError(
                f"{source.describe()} has no {name}. A model folder needs model.keras, "
                "labels.json and config.json (see README, 'Model folder')."
            )
    try:
        labels = json.loads((folder / "labels.json").read_text(encoding="utf-8"))
        config = ModelConfig.from_json(json.loads((folder / "config.json").read_text(encoding="utf-8")))
    except (ValueError, TypeError) as err:
        raise ModelFormatError(f"labels.json or config.json of {source.describe()} is invalid: {err}") from err
    keras_model = _load_keras_file(folder / "model.keras", source)
    _check_contract(keras_model, labels, config, source)
    cam_layer = _cam_layer(keras_model, config, source)
    class_means = _load_class_means(folder, config, source, cam_layer,
                                    (len(labels), keras_model.get_layer(cam_layer).output.shape[-1]))
    return LoadedModel(keras_model, labels, config, source, folder, cam_layer, class_means)


def resolve_model(settings: Settings) -> LoadedModel:
    """The configured model: local folder, then Hub repo, then the bundled default."""
    if settings.model_dir:
        return load_model_folder(Path(settings.model_dir), ModelSource("folder", settings.model_dir))
    if settings.model_repo:
        folder, commit = fetch_model_folder(settings.model_repo, settings.model_revision)
        return load_model_folder(folder, ModelSource("hub", settings.model_repo, commit))
    if (BUNDLED_MODEL_DIR / "model.keras").is_file():
        return load_model_folder(BUNDLED_MODEL_DIR, ModelSource("bundled", BUNDLED_MODEL_DIR.name))
    raise ModelNotConfiguredError(
        "No model is configured: set SKIN_MODEL_DIR to a model folder or SKIN_MODEL_REPO to a "
        "Hugging Face model repo (see README, 'Choosing the model')."
    )


def find_cam_layer(model: keras.Model) -> str | None:
    """The last layer with a 4-D output (batch, height, width, channels): the usual CAM target."""
    for layer in reversed(model.layers):
        if not isinstance(layer, keras.layers.InputLayer) and len(layer.output.shape) == 4:
            return layer.name
    return None


def _cam_layer(model: keras.Model, config: ModelConfig, source: ModelSource) -> str:
    name = config.cam_layer or find_cam_layer(model)
    if name is None:
        raise ModelFormatError(f"{source.describe()} has no 4-D convolutional activation to explain; "
                               "name one as cam_layer in config.json.")
    try:
        shape = model.get_layer(name).output.shape
    except ValueError as err:
        raise ModelFormatError(f"config.json of {source.describe()} names cam_layer {name!r}, which the model "
                               "does not have. Fix the name or remove cam_layer to use the last 4-D activation.") from err
    if len(shape) != 4:
        raise ModelFormatError(f"cam_layer {name!r} of {source.describe()} has output shape {shape}; "
                               "a CAM needs a 4-D (batch, height, width, channels) activation.")
    return name


def _load_class_means(folder: Path, config: ModelConfig, source: ModelSource, cam_layer: str,
                      shape: tuple[int, int]) -> np.ndarray | None:
    """class_means.npy as unit rows (a dot product is then the cosine), checked against `shape`:
    (classes, channels of the CAM layer)."""
    if config.abstain_score not in ABSTAIN_SCORES:
        raise ModelFormatError(f"config.json of {source.describe()} names abstain_score {config.abstain_score!r}; "
                               f"use one of {', '.join(ABSTAIN_SCORES)}.")
    if config.abstain_score != "feature_similarity":
        return None
    try:
        means = np.load(folder / "class_means.npy", allow_pickle=False).astype(np.float32)
    except (OSError, ValueError) as err:
        raise ModelFormatError(f"{source.describe()} uses abstain_score feature_similarity but its "
                               f"class_means.npy is missing or unreadable: {err}") from err
    norms = np.linalg.norm(means, axis=-1, keepdims=True)
    if means.shape != shape or not np.all(norms > 0):
        raise ModelFormatError(
            f"class_means.npy of {source.describe()} has shape {means.shape}; it needs one non-zero row per "
            f"class ({shape[0]}) and one column per channel of the CAM layer {cam_layer!r} ({shape[1]}). "
            "Export it again from the same training run.")
    return means / norms


def _load_keras_file(path: Path, source: ModelSource) -> keras.Model:
    if not zipfile.is_zipfile(path):
        raise ModelFormatError(
            f"model.keras of {source.describe()} is damaged or truncated (not a valid .keras archive). "
            "Delete it (for a Hub model: its folder in the Hugging Face cache) and download it again."
        )
    try:
        return keras.saving.load_model(path, safe_mode=True, compile=False)
    except ValueError as err:
        if "safe_mode" in str(err) or "Lambda" in str(err):
            raise ModelFormatError(
                f"Refused to load {source.describe()}: model.keras contains Python code (a Lambda "
                "layer), which loading would execute. Rebuild it with registered layers "
                "(explain.layers) instead of Lambda."
            ) from err
        raise ModelFormatError(f"model.keras of {source.describe()} could not be loaded: {err}") from err
    except Exception as err:
        raise ModelFormatError(f"model.keras of {source.describe()} could not be loaded: {err}") from err


def _check_contract(model: keras.Model, labels: list, config: ModelConfig, source: ModelSource) -> None:
    problems = []
    if not labels or not all(isinstance(x, str) for x in labels):
        problems.append("labels.json must be a non-empty list of class names")
    elif model.output_shape[-1] != len(labels):
        problems.append(f"the model has {model.output_shape[-1]} outputs but labels.json names {len(labels)}")
    last = model.layers[-1]
    if getattr(last, "activation", None) is not keras.activations.softmax or isinstance(last, keras.layers.Dense):
        problems.append("the last layer must be a softmax Activation whose input is the logits")
    if tuple(model.input_shape[1:]) != (config.image_size, config.image_size, 3):
        problems.append(f"the model's input {model.input_shape[1:]} does not match image_size {config.image_size}")
    if problems:
        raise ModelFormatError(f"{source.describe()} breaks the model folder contract: " + "; ".join(problems) + ".")

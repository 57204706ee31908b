"""The model folder: one definition of what it holds, how to write one and how to read one back.

A model folder holds `model.keras`, `labels.json` (class names in output order),
`config.json` (the fields of `ModelConfig`, nothing else), `README.md` (the model card)
and, for the verdicts that read them, `skin_readout.npy` (explain.verdicts.skin_score) and
`class_means.npy` (explain.verdicts.feature_similarity); optionally `examples/`. The training
pipeline writes it with `write_model_folder`, the app reads it with `load_model_folder`, and both
go through `LoadedModel.from_keras`, which checks the contract. `config.json`'s fields are
`explain.model_config`; which folder answers is `explain.resolve`.
"""

import functools
import json
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from explain.cam_layers import find_cam_layer, find_finer_layer
from explain.card import disclaimer, failing_sanity
from explain.errors import ModelFormatError
from explain.layers import PREPROCESSING
from explain.model_config import ModelConfig
from explain.verdicts import unit

MODEL_FILE, LABELS_FILE, CONFIG_FILE = "model.keras", "labels.json", "config.json"
SKIN_READOUT_FILE, CLASS_MEANS_FILE = "skin_readout.npy", "class_means.npy"
CARD_FILE, EXAMPLES_FOLDER = "README.md", "examples"
REQUIRED_FILES = (MODEL_FILE, LABELS_FILE, CONFIG_FILE)
# what a Hub fetch takes
FOLDER_PATTERNS = [*REQUIRED_FILES, SKIN_READOUT_FILE, CLASS_MEANS_FILE, CARD_FILE, f"{EXAMPLES_FOLDER}/*"]


@dataclass(frozen=True)
class ModelSource:
    """Where the model came from, as the page and the API report it."""

    kind: str  # "folder", "hub", "bundled" or "memory"
    location: str  # a path or a Hub repo id
    revision: str | None = None  # the Hub commit that answered

    def describe(self) -> str:
        if self.kind == "hub":
            return f"Hub repo {self.location} at revision {self.revision}"
        if self.kind == "bundled":
            return "the model that comes with this app"
        return f"{self.kind} model at {self.location}"


@dataclass
class LoadedModel:
    """A model that passed the folder contract; build it with `from_keras` or `load_model_folder`."""

    keras_model: keras.Model
    labels: list[str]
    config: ModelConfig
    source: ModelSource
    cam_layer: str  # the layer the CAMs explain: config.cam_layer, or the last 4-D activation
    finer_layer: str | None = None  # an activation on a grid twice as fine, for finer maps (find_finer_layer)
    skin_readout: np.ndarray | None = None  # (CAM-layer channels + 1,): weights, then bias
    class_means: np.ndarray | None = None  # (classes, CAM-layer channels), unit rows
    folder: Path | None = None  # None for a model built in memory (no card, no examples)

    @property
    def card(self) -> Path | None:
        return self.folder / CARD_FILE if self.folder else None

    @functools.cached_property
    def disclaimer(self) -> str:
        return disclaimer(self.card)

    @functools.cached_property
    def fails_sanity(self) -> list[str]:
        """The CAM methods the card's own study found failing the sanity checks (read once)."""
        return failing_sanity(self.card)

    @classmethod
    def from_keras(cls, keras_model: keras.Model, labels: list, config: ModelConfig, source: ModelSource,
                   skin_readout: np.ndarray | None = None, class_means: np.ndarray | None = None,
                   folder: Path | None = None) -> "LoadedModel":
        """Check a Keras model in memory against the contract; the one way to make a LoadedModel."""
        _check_contract(keras_model, labels, config, source)
        cam_layer = _cam_layer(keras_model, config, source)
        channels = keras_model.get_layer(cam_layer).output.shape[-1]
        skin_readout = _checked_readout(skin_readout, channels, source, cam_layer) \
            if config.thresholds.get("skin") is not None else None
        class_means = _unit_class_means(class_means, (len(labels), channels), source, cam_layer) \
            if config.thresholds.get("similarity") is not None else None
        return cls(keras_model, labels, config, source, cam_layer, find_finer_layer(keras_model, cam_layer),
                   skin_readout, class_means, folder)


def write_model_folder(folder: Path, model: keras.Model | Path, labels: list[str], config: ModelConfig, card: str,
                       skin_readout: np.ndarray | None = None, class_means: np.ndarray | None = None,
                       examples: Path | None = None) -> Path:
    """Write a model folder the app can load (`model` is a Keras model or a .keras file to copy)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(model, keras.Model):
        model.save(folder / MODEL_FILE)
    else:
        shutil.copy(model, folder / MODEL_FILE)
    _deflate(folder / MODEL_FILE)
    (folder / LABELS_FILE).write_text(json.dumps(list(labels), indent=1) + "\n", encoding="utf-8")
    (folder / CONFIG_FILE).write_text(json.dumps(config.to_json(), indent=2) + "\n", encoding="utf-8")
    (folder / CARD_FILE).write_text(card, encoding="utf-8")
    for name, values in ((SKIN_READOUT_FILE, skin_readout), (CLASS_MEANS_FILE, class_means)):
        if values is not None:
            np.save(folder / name, np.asarray(values, dtype=np.float32))
    if examples is not None:
        shutil.copytree(examples, folder / EXAMPLES_FOLDER, dirs_exist_ok=True)
    return folder


def _deflate(path: Path) -> None:
    """Rewrite a .keras archive compressed: Keras stores it uncompressed, and deflate makes it smaller
    (a Space repo takes files under 10 MB without large-file storage); Keras reads either alike."""
    packed = path.with_suffix(".deflating")
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(packed, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as out:
        for item in source.infolist():
            out.writestr(item.filename, source.read(item.filename))
    packed.replace(path)


def load_model_folder(folder: Path, source: ModelSource) -> LoadedModel:
    """Load a model folder safely: `safe_mode=True` never runs code stored in the file."""
    folder = Path(folder)
    for name in REQUIRED_FILES:
        if not (folder / name).is_file():
            raise ModelFormatError(
                f"{source.describe()} has no {name}. A model folder needs {', '.join(REQUIRED_FILES)} "
                "(see README, 'Model folder')."
            )
    try:
        labels = json.loads((folder / LABELS_FILE).read_text(encoding="utf-8"))
        config = ModelConfig.from_json(json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8")))
    except (ValueError, TypeError) as err:
        raise ModelFormatError(f"{LABELS_FILE} or {CONFIG_FILE} of {source.describe()} is invalid: {err}") from err
    keras_model = _load_keras_file(folder / MODEL_FILE, source)
    arrays = [_read_array(folder, name, score, source) if config.thresholds.get(score) is not None else None
              for name, score in ((SKIN_READOUT_FILE, "skin"), (CLASS_MEANS_FILE, "similarity"))]
    return LoadedModel.from_keras(keras_model, labels, config, source, *arrays, folder=folder)


def _cam_layer(model: keras.Model, config: ModelConfig, source: ModelSource) -> str:
    name = config.cam_layer or find_cam_layer(model)
    if name is None:
        raise ModelFormatError(f"{source.describe()} has no 4-D convolutional activation to explain; "
                               f"name one as cam_layer in {CONFIG_FILE}.")
    try:
        shape = model.get_layer(name).output.shape
    except ValueError as err:
        raise ModelFormatError(f"{CONFIG_FILE} of {source.describe()} names cam_layer {name!r}, which the model "
                               "does not have. Fix the name or remove cam_layer to use the last 4-D activation."
                               ) from err
    if len(shape) != 4:
        raise ModelFormatError(f"cam_layer {name!r} of {source.describe()} has output shape {shape}; "
                               "a CAM needs a 4-D (batch, height, width, channels) activation.")
    return name


def _read_array(folder: Path, name: str, score: str, source: ModelSource) -> np.ndarray:
    try:
        return np.load(folder / name, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise ModelFormatError(f"{source.describe()} sets a {score} threshold but its {name} is missing or unreadable: "
                               f"{err}. Export it again, or remove thresholds.{score} from {CONFIG_FILE}.") from err


def _checked_readout(readout: np.ndarray | None, channels: int, source: ModelSource, cam_layer: str) -> np.ndarray:
    """The skin read-out, checked: one weight per channel of the CAM layer, then the bias."""
    readout = np.zeros((0,), np.float32) if readout is None else np.asarray(readout, dtype=np.float32)
    if readout.shape != (channels + 1,) or not np.all(np.isfinite(readout)):
        raise ModelFormatError(
            f"{SKIN_READOUT_FILE} of {source.describe()} has shape {readout.shape}; it needs one finite weight per "
            f"channel of the CAM layer {cam_layer!r} ({channels}), then the bias. Export it again from the same "
            "training run.")
    return readout


def _unit_class_means(means: np.ndarray | None, shape: tuple[int, int], source: ModelSource,
                      cam_layer: str) -> np.ndarray:
    """The class means as unit rows (a dot product is then the cosine), checked against `shape`:
    (classes, channels of the CAM layer)."""
    means = np.zeros((0,), np.float32) if means is None else np.asarray(means, dtype=np.float32)
    norms = np.linalg.norm(means, axis=-1, keepdims=True)
    if means.shape != shape or not np.all(norms > 0):
        raise ModelFormatError(
            f"{CLASS_MEANS_FILE} of {source.describe()} has shape {means.shape}; it needs one non-zero row per "
            f"class ({shape[0]}) and one column per channel of the CAM layer {cam_layer!r} ({shape[1]}). "
            "Export it again from the same training run.")
    return unit(means)


def _load_keras_file(path: Path, source: ModelSource) -> keras.Model:
    if not zipfile.is_zipfile(path):
        raise ModelFormatError(
            f"{MODEL_FILE} of {source.describe()} is damaged or truncated (not a valid .keras archive). "
            "Delete it (for a Hub model: its folder in the Hugging Face cache) and download it again."
        )
    try:
        return keras.saving.load_model(path, safe_mode=True, compile=False)
    except ValueError as err:
        if "safe_mode" in str(err) or "Lambda" in str(err):
            raise ModelFormatError(
                f"Refused to load {source.describe()}: {MODEL_FILE} contains Python code (a Lambda "
                "layer), which loading would execute. Rebuild it with registered layers "
                "(explain.layers) instead of Lambda."
            ) from err
        raise ModelFormatError(f"{MODEL_FILE} of {source.describe()} could not be loaded: {err}") from err
    except Exception as err:
        raise ModelFormatError(f"{MODEL_FILE} of {source.describe()} could not be loaded: {err}") from err


def _check_contract(model: keras.Model, labels: list, config: ModelConfig, source: ModelSource) -> None:
    problems = []
    if not isinstance(labels, list) or not labels or not all(isinstance(x, str) for x in labels):
        problems.append(f"{LABELS_FILE} must be a non-empty list of class names")
    elif model.output_shape[-1] != len(labels):
        problems.append(f"the model has {model.output_shape[-1]} outputs but {LABELS_FILE} names {len(labels)}")
    last = model.layers[-1]
    if getattr(last, "activation", None) is not keras.activations.softmax or isinstance(last, keras.layers.Dense):
        problems.append("the last layer must be a softmax Activation whose input is the logits")
    if tuple(model.input_shape[1:]) != (config.image_size, config.image_size, 3):
        problems.append(f"the model's input {model.input_shape[1:]} does not match image_size {config.image_size}")
    if not any(isinstance(layer, PREPROCESSING[config.preprocessing]) for layer in model.layers):
        problems.append(f"{CONFIG_FILE} says preprocessing {config.preprocessing!r} but the model has no "
                        f"{PREPROCESSING[config.preprocessing].__name__} layer")
    if problems:
        raise ModelFormatError(f"{source.describe()} breaks the model folder contract: " + "; ".join(problems) + ".")

"""What several steps share, so no step imports another for a helper: photo file types, the
"already done" check, class names and labels of table rows, perceptual-hash distances, grouped
splits, the model's outputs on a batch, and the app's config for a trained model."""

from pathlib import Path

import keras
import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from explain.model import ModelConfig
from training.backbones import cam_layer_of, preprocessing_of
from training.config import ExperimentConfig
from training.data import mirror

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"}


def already_done(step: str, output: Path, force: bool) -> bool:
    """True (and says so) when the step's output exists and --force was not given."""
    if output.exists() and not force:
        print(f"{step}: {output} exists (use --force to redo)")
        return True
    return False


def class_names(rows: list[dict]) -> list[str]:
    """The classes of a split table, sorted: the model's output order."""
    return sorted({r["target_class"] for r in rows if r["target_class"]})


def fine_classes(rows: list[dict]) -> list[str]:
    """The fine-grained conditions of a split table, sorted: the fine head's output order."""
    return sorted({r["fine_class"] for r in rows if r["target_class"]})


def labels_of(rows: list[dict], names: list[str]) -> np.ndarray:
    return np.array([names.index(r["target_class"]) for r in rows])


def hamming_matrix(hashes: list[str]) -> np.ndarray:
    """Pairwise distances in bits between hex perceptual hashes."""
    bits = np.stack([np.unpackbits(np.frombuffer(bytes.fromhex(h), dtype=np.uint8)) for h in hashes]).astype(np.int32)
    return bits @ (1 - bits).T + (1 - bits) @ bits.T


def group_split(labels: list[str], groups: list, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (rest, held_out): about `fraction` held out, stratified by label, whole groups only."""
    n_splits = max(2, round(1 / fraction))
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    rest, held_out = next(splitter.split(np.zeros(len(labels)), labels, groups))
    return rest, held_out


def cam_features_and_logits(model: keras.Model, cam_layer: str, pixels: np.ndarray, tta: bool = False,
                            batch_size: int = 32) -> tuple:
    """The CAM layer's pooled activations (what the feature-similarity score reads) and the logits
    for uint8 pixels; with `tta`, the logits are averaged with the mirrored photos' (the features
    never are: the app computes them from the photo alone)."""
    cam = keras.layers.GlobalAveragePooling2D()(model.get_layer(cam_layer).output)
    outputs = keras.Model(model.inputs, [cam, model.get_layer("logits").output])
    cam_features, logits = outputs.predict(pixels.astype(np.float32), batch_size=batch_size, verbose=0)
    if tta:
        logits = (logits + outputs.predict(mirror(pixels).astype(np.float32), batch_size=batch_size,
                                           verbose=0)[1]) / 2
    return cam_features, logits


def model_config(config: ExperimentConfig, report: dict | None = None) -> ModelConfig:
    """The app's `config.json` for this experiment's model; without an evaluation report, the
    model as trained (no temperature, no abstention threshold yet)."""
    if report is None:
        return ModelConfig(config.model_name, config.image_size, preprocessing_of(config.backbone),
                           cam_layer_of(config.backbone))
    thresholds = {name: _rounded(value) for name, value in report["abstention"]["thresholds"].items()}
    served = report.get("shortlist", {}).get("served")
    if served:  # the list says how sure the model is; the top probability's "unsure" is not checked
        thresholds["top_probability"] = None
    return ModelConfig(config.model_name, config.image_size, preprocessing_of(config.backbone),
                       cam_layer_of(config.backbone), temperature=round(report["calibration"]["temperature"], 4),
                       thresholds=thresholds, shortlist=served)


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)

"""A trained model as the app meets it: the outputs the verdicts read (CAM-layer features and
logits), the app's `config.json` for it, and photos answered exactly as the app answers them."""

import keras
import numpy as np
from tqdm import tqdm

from explain.model_config import ModelConfig
from training.config import ExperimentConfig
from training.data.photos import mirror, read_photo
from training.model.backbones import cam_layer_of, preprocessing_of


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
        return ModelConfig(config.publish.model_name, config.model.image_size, preprocessing_of(config.model.backbone),
                           cam_layer_of(config.model.backbone))
    thresholds = {name: _rounded(value) for name, value in report["abstention"]["thresholds"].items()}
    served = report.get("shortlist", {}).get("served")
    if served:  # the list says how sure the model is; the top probability's "unsure" is not checked
        thresholds["top_probability"] = None
    return ModelConfig(config.publish.model_name, config.model.image_size, preprocessing_of(config.model.backbone),
                       cam_layer_of(config.model.backbone), temperature=round(report["calibration"]["temperature"], 4),
                       thresholds=thresholds, shortlist=served)


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def served_predictions(classifier, rows: list[dict], desc: str) -> list:
    """Each row's photo answered as the app answers it (explain.classifier.Classifier.predict), with a
    progress bar."""
    return [classifier.predict(read_photo(r["path"])) for r in tqdm(rows, desc=desc)]

"""When the model should say "uncertain": class means from training photos, a threshold from
validation photos only, and how well each score separates the test split from photos the model
must not know (out-of-taxonomy conditions, the configured out-of-distribution folders)."""

from pathlib import Path

import keras
import numpy as np

from training import metrics
from training.common import IMAGE_SUFFIXES, predict
from training.config import ExperimentConfig, expand
from training.data import load_pixels

NON_SKIN_SKIMAGE = ("coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "colorwheel",
                    "camera", "moon", "coins", "clock", "page", "text", "grass", "gravel", "brick", "retina")


def skimage_photos(folder: Path) -> Path:
    """scikit-image's bundled sample pictures that are not skin, written once as PNG files."""
    import skimage.data
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for name in NON_SKIN_SKIMAGE:
        if not (folder / f"{name}.png").is_file():
            Image.fromarray(getattr(skimage.data, name)()).save(folder / f"{name}.png")
    return folder


def ood_photos(config: ExperimentConfig, rows: list[dict]) -> dict[str, list[dict]]:
    """Out-of-distribution sets: out-of-taxonomy photos of each source, and the configured folders
    ("skimage" stands for scikit-image's sample pictures that are not skin)."""
    sets = {}
    for source in sorted({r["source"] for r in rows if r["split"] == "ood"}):
        sets[f"{source} conditions outside the taxonomy"] = [r for r in rows if r["split"] == "ood" and r["source"] == source]
    for name, folder in config.ood_folders.items():
        folder = skimage_photos(config.out / "ood_skimage") if folder == "skimage" else Path(expand(folder))
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        sets[name] = [{"path": str(p), "source": name} for p in files]
    return sets


def abstention(config: ExperimentConfig, model: keras.Model, temperature: float, outputs: dict, labels: dict,
               rows: list[dict]) -> tuple[dict, np.ndarray]:
    """Class means from training photos and the threshold from validation only; AUROC of every
    score per out-of-distribution set (the configured one decides); accuracy against coverage.

    `outputs` maps train/val/test to (features, logits). Returns the report and the class means."""
    means = metrics.class_means(outputs["train"][0], labels["train"], outputs["train"][1].shape[1])
    scores = {split: metrics.abstention_scores(*outputs[split], temperature, means) for split in ("val", "test")}
    chosen = config.abstain_score
    threshold = metrics.threshold_for_coverage(scores["val"][chosen], config.abstain_coverage)
    answering = scores["test"][chosen] >= threshold
    correct = outputs["test"][1].argmax(axis=1) == labels["test"]
    result = {
        "score": metrics.SCORE_NAMES[chosen],
        "threshold": threshold,
        "chosen_for_validation_coverage": config.abstain_coverage,
        "test_coverage": float(np.mean(answering)),
        "test_accuracy_when_answering": float(np.mean(correct[answering])),
        "accuracy_at_coverage": metrics.accuracy_at_coverage(scores["test"][chosen], correct),
        "ood": {},
    }
    for name, ood_rows in ood_photos(config, rows).items():
        if not ood_rows:
            continue
        ood = metrics.abstention_scores(*predict(model, load_pixels(ood_rows, config), config.tta), temperature, means)
        result["ood"][name] = {"n": len(ood_rows), "auroc": metrics.ood_auroc(scores["test"][chosen], ood[chosen]),
                               "share_flagged_uncertain": float(np.mean(ood[chosen] < threshold)),
                               "auroc_by_score": {metrics.SCORE_NAMES[k]: metrics.ood_auroc(scores["test"][k], ood[k])
                                                  for k in metrics.SCORE_NAMES}}
    return result, means

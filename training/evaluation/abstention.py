"""When the model should not name a class, and which of three things it says instead: "not a skin
photo" (the abstention score, feature similarity to the class means, below its threshold),
"another condition" (the same score below a second, higher threshold) or "unsure between A and B"
(the top probability). Thresholds from validation photos only; each score's risk-coverage curve
and AURC, and how well it separates the test split from photos the model must not know (other
conditions held out whole, out-of-taxonomy photos, configured folders)."""

from pathlib import Path

import keras
import numpy as np

from explain.verdicts import ANSWER, NOT_SKIN, OTHER_CONDITION, UNSURE, verdicts
from training.common import IMAGE_SUFFIXES, cam_features_and_logits
from training.config import ExperimentConfig, expand
from training.data import load_pixels
from training.evaluation import metrics

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


def verdicts_of(scores: dict, thresholds: dict) -> np.ndarray:
    """The app's verdict for each photo (explain.verdicts' rule, which the app calls too)."""
    return verdicts(scores[thresholds["abstain_score"]], scores["max_probability"], thresholds["abstain"],
                    thresholds["other_condition"], thresholds["unsure"])


def shares(verdict: np.ndarray) -> dict:
    return {v: float(np.mean(verdict == v)) for v in (ANSWER, UNSURE, OTHER_CONDITION, NOT_SKIN)}


def choose_thresholds(config: ExperimentConfig, val: dict, val_other: dict | None) -> dict:
    """Every threshold from validation photos only: the abstention score's keeps abstain_coverage of the
    validation skin photos (ours and other conditions'); the other-condition threshold, on the same
    score, keeps other_condition_coverage of ours; the unsure threshold then leaves answer_coverage
    of ours answered."""
    score = config.abstain_score
    skin = np.concatenate([val[score]] + ([val_other[score]] if val_other else []))
    thresholds = {"abstain_score": score, "abstain": metrics.threshold_for_coverage(skin, config.abstain_coverage),
                  "other_condition": None, "unsure": None}
    if config.other_condition_coverage:
        thresholds["other_condition"] = max(thresholds["abstain"], metrics.threshold_for_coverage(
            val[score], config.other_condition_coverage))
    if config.answer_coverage:
        kept = verdicts_of(val, thresholds) == ANSWER
        share = min(1.0, config.answer_coverage / max(kept.mean(), 1e-9))
        thresholds["unsure"] = metrics.threshold_for_coverage(val["max_probability"][kept], share)
    return thresholds


def abstention(config: ExperimentConfig, model: keras.Model, temperature: float, outputs: dict, labels: dict,
               rows: list[dict]) -> tuple[dict, np.ndarray]:
    """Class means from training photos and every threshold from validation only; for each score its
    risk-coverage curve and AURC on the test photos; the verdicts and AUROC of each score on the test
    split's other conditions (held out whole) and on every out-of-distribution set.

    `outputs` maps train/val/test (and other_val/other_test) to cam_features_and_logits()'s outputs.
    Returns the report and the class means."""
    means = metrics.class_means(outputs["train"][0], labels["train"], outputs["train"][1].shape[1])

    def scored(split_outputs):
        return metrics.abstention_scores(*split_outputs, temperature, means)

    scores = {split: scored(outputs[split]) for split in outputs if split != "train"}
    thresholds = choose_thresholds(config, scores["val"], scores.get("other_val"))
    test = scores["test"]
    correct = outputs["test"][1].argmax(axis=1) == labels["test"]
    answered = verdicts_of(test, thresholds) == ANSWER
    score_names = list(metrics.SCORE_NAMES)
    result = {
        "score": metrics.SCORE_NAMES[config.abstain_score],
        "threshold": thresholds["abstain"],
        "thresholds": thresholds,
        "chosen_for_validation_coverage": config.abstain_coverage,
        "test_coverage": float(np.mean(answered)),
        "test_accuracy": float(np.mean(correct)),
        "test_accuracy_when_answering": float(np.mean(correct[answered])) if answered.any() else float("nan"),
        "test_verdicts": shares(verdicts_of(test, thresholds)),
        "accuracy_at_coverage": metrics.accuracy_at_coverage(test["max_probability"], correct),
        "risk_coverage": {metrics.SCORE_NAMES[k]: metrics.risk_coverage(test[k], correct) for k in score_names},
        "ood": {},
    }
    sets = {"other conditions held out whole (test split)": scores.get("other_test")}
    for name, ood_rows in ood_photos(config, rows).items():
        if ood_rows:
            sets[name] = scored(cam_features_and_logits(model, load_pixels(ood_rows, config), config.tta))
    for name, ood in sets.items():
        if ood is None:
            continue
        result["ood"][name] = {
            "n": len(ood["max_probability"]), "auroc": metrics.ood_auroc(test[config.abstain_score], ood[config.abstain_score]),
            "share_flagged_uncertain": float(np.mean(verdicts_of(ood, thresholds) != ANSWER)),
            "verdicts": shares(verdicts_of(ood, thresholds)),
            "auroc_by_score": {metrics.SCORE_NAMES[k]: metrics.ood_auroc(test[k], ood[k]) for k in score_names}}
    return result, means

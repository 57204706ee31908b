"""Step 5, evaluate: held-out test, cross-validation, calibration, abstention, shortcuts.

Writes `report.json` (read by export and publish), `confusion_matrix.png`,
`training_curves.png` and `reliability.png` into the run folder. Cross-validation
and cross-source models are trained under `cv/` and `cross_source/`; each saves its
predictions, so an interrupted run resumes where it stopped.
"""

import json
from pathlib import Path

import keras
import numpy as np

from explain.cams import DEFAULT_METHOD
from explain.classifier import Classifier
from explain.images import fit_to_model
from explain.model import LoadedModel, ModelConfig, ModelSource
from explain.overlay import upsample
from training.backbones import CAM_LAYERS
from training import metrics, plots
from training.config import ExperimentConfig, expand
from training.curate import IMAGE_SUFFIXES
from training.data import blank_boxes, box_mask, load_pixels, read_photo
from training.split import group_split
from training.tables import read_rows
from training.train import class_names, fit, predict

NON_SKIN_SKIMAGE = ("coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "colorwheel",
                    "camera", "moon", "coins", "clock", "page", "text", "grass", "gravel", "brick", "retina")


def labels_of(rows: list[dict], names: list[str]) -> np.ndarray:
    return np.array([names.index(r["target_class"]) for r in rows])


def train_and_predict(config: ExperimentConfig, train_rows: list[dict], eval_rows: list[dict], names: list[str],
                      out: Path) -> np.ndarray:
    """Fit on `train_rows` (early-stopped on a grouped slice of them), return logits of `eval_rows`.

    The logits are saved in `out/logits.npy`, the model in `out/model.keras`: a rerun reads the
    logits, or predicts again with the saved model, instead of training again.
    """
    saved = out / "logits.npy"
    if saved.is_file():
        return np.load(saved)
    if (out / "model.keras").is_file():
        model = keras.saving.load_model(out / "model.keras", safe_mode=True, compile=False)
    else:
        fit_idx, val_idx = group_split([r["target_class"] for r in train_rows], [r["cluster"] for r in train_rows],
                                       config.val_fraction, config.seed)
        model = fit(config, [train_rows[i] for i in fit_idx], [train_rows[i] for i in val_idx], names, out)
    _, logits = predict(model, load_pixels(eval_rows, config), tta=config.tta)
    np.save(saved, logits)
    return logits


def summarize(logits: np.ndarray, labels: np.ndarray, names: list[str], rows: list[dict], ks) -> dict:
    """Metrics overall and per source."""
    probabilities = metrics.calibrated(logits)
    report = metrics.classification_report(probabilities, labels, names, ks)
    sources = sorted({r["source"] for r in rows})
    if len(sources) > 1:
        report["by_source"] = {}
        for source in sources:
            keep = np.array([r["source"] == source for r in rows])
            report["by_source"][source] = metrics.classification_report(probabilities[keep], labels[keep], names, ks)
    return report


def cross_validate(config: ExperimentConfig, rows: list[dict], names: list[str]) -> dict:
    """k-fold CV grouped by near-duplicate cluster: mean and std of each headline metric."""
    folds = []
    for fold in range(config.cv_folds):
        held = [r for r in rows if r["fold"] == str(fold)]
        train_rows = [r for r in rows if r["fold"] not in ("", str(fold))]
        print(f"cross-validation fold {fold + 1}/{config.cv_folds}: {len(train_rows)} train, {len(held)} held out")
        logits = train_and_predict(config, train_rows, held, names, config.out / "cv" / f"fold{fold}")
        folds.append(summarize(logits, labels_of(held, names), names, held, config.top_k))
    return aggregate_folds(folds, config, names)


def aggregate_folds(folds: list[dict], config: ExperimentConfig, names: list[str]) -> dict:
    """Mean and std over folds of each headline metric, overall, by source and per class."""
    keys = ["accuracy", *[f"top{k}_accuracy" for k in config.top_k], "macro_f1"]
    result = {"folds": config.cv_folds, **{k: metrics.mean_std([f[k] for f in folds]) for k in keys}}
    if "by_source" in folds[0]:
        result["by_source"] = {s: {k: metrics.mean_std([f["by_source"][s][k] for f in folds]) for k in keys}
                               for s in folds[0]["by_source"]}
    result["per_class_f1"] = {n: metrics.mean_std([f["per_class"][n]["f1"] for f in folds]) for n in names}
    return result


def cross_source(config: ExperimentConfig, rows: list[dict], names: list[str]) -> dict:
    """Train on one source, test on the other's photos of the classes both share."""
    sources = sorted({r["source"] for r in rows})
    result = {}
    for train_source in sources:
        for test_source in sources:
            if train_source == test_source:
                continue
            train_rows = [r for r in rows if r["source"] == train_source]
            known = sorted({r["target_class"] for r in train_rows})
            test_rows = [r for r in rows if r["source"] == test_source and r["target_class"] in known]
            print(f"cross-source: train on {train_source}, test on {test_source} ({len(test_rows)} photos)")
            logits = train_and_predict(config, train_rows, test_rows, known,
                                       config.out / "cross_source" / f"{train_source}_to_{test_source}")
            report = metrics.classification_report(metrics.calibrated(logits), labels_of(test_rows, known), known,
                                                   config.top_k)
            result[f"{train_source} -> {test_source}"] = {k: v for k, v in report.items() if k != "confusion_matrix"}
    return result


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


def watermark_check(config: ExperimentConfig, model: keras.Model, names: list[str], test_rows: list[dict]) -> dict | None:
    """Share of the Grad-CAM map inside the blanked boxes, on test photos of the sources that
    carry a watermark: with the watermark visible, and blanked as in training."""
    marked = {s.name for s in config.sources if s.mask_boxes}
    rows = [r for r in test_rows if r["source"] in marked]
    if not rows:
        return None
    boxes = [box for s in config.sources for box in s.mask_boxes]
    inside = box_mask(config.image_size, boxes)
    model_config = ModelConfig(config.model_name, config.image_size, config.backbone, CAM_LAYERS[config.backbone])
    gradcam = Classifier(LoadedModel(model, names, model_config, ModelSource("folder", str(config.out)), config.out)
                         ).cam_method(DEFAULT_METHOD)
    shares = {"visible": [], "blanked": []}
    for row in rows:
        visible = fit_to_model(read_photo(row["path"]), config.image_size)
        for key, pixels in (("visible", visible), ("blanked", blank_boxes(visible.copy(), boxes))):
            cam = upsample(gradcam(pixels[None], None)[1], (config.image_size, config.image_size))
            shares[key].append(float(cam[inside].sum() / max(cam.sum(), 1e-9)))
    return {"n": len(rows), "box_area_share": float(inside.mean()),
            "cam_share_logo_visible": float(np.mean(shares["visible"])),
            "cam_share_blanked": float(np.mean(shares["blanked"]))}


def abstention(config, model, temperature, outputs: dict, labels: dict, rows) -> tuple[dict, np.ndarray]:
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


def run(config: ExperimentConfig, force: bool = False) -> Path:
    out = config.out / "report.json"
    if out.is_file() and not force:
        print(f"evaluate: {out} exists (use --force to redo)")
        return out
    rows = read_rows(config.out / "split.csv")
    names = class_names(rows)
    by_split = {s: [r for r in rows if r["split"] == s] for s in ("train", "val", "test")}
    model = keras.saving.load_model(config.out / "train" / "model.keras", safe_mode=True, compile=False)
    outputs = {s: predict(model, load_pixels(split_rows, config), config.tta) for s, split_rows in by_split.items()}
    labels = {s: labels_of(split_rows, names) for s, split_rows in by_split.items()}
    val_logits, test_logits = outputs["val"][1], outputs["test"][1]
    val_labels, test_labels = labels["val"], labels["test"]
    temperature = metrics.fit_temperature(val_logits, val_labels)
    before, after = metrics.calibrated(test_logits), metrics.calibrated(test_logits, temperature)

    report = {
        "classes": names,
        "counts": {s: len(v) for s, v in by_split.items()},
        "test": summarize(test_logits, test_labels, names, by_split["test"], config.top_k),
        "calibration": {
            "temperature": temperature,
            "test_ece_before": metrics.expected_calibration_error(before, test_labels),
            "test_ece_after": metrics.expected_calibration_error(after, test_labels),
        },
    }
    report["abstention"], means = abstention(config, model, temperature, outputs, labels, rows)
    np.save(config.out / "class_means.npy", means.astype(np.float32))
    plots.confusion_matrix_png(report["test"]["confusion_matrix"], names, config.out / "confusion_matrix.png",
                               "Held-out test split")
    plots.training_curves_png(read_rows(config.out / "train" / "history.csv"), config.out / "training_curves.png")
    plots.reliability_png((before, test_labels), (after, test_labels), config.out / "reliability.png")
    report["watermark"] = watermark_check(config, model, names, by_split["test"])
    save(report, out)  # the long parts below resume from their saved predictions if interrupted
    if config.cv_folds:
        report["cross_validation"] = cross_validate(config, rows, names)
        save(report, out)
    if config.cross_source:
        report["cross_source"] = cross_source(config, [r for r in rows if r["split"] != "ood"], names)
        save(report, out)
    _print_headline(report)
    return out


def save(report: dict, path: Path) -> None:
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


def _print_headline(report: dict) -> None:
    test = report["test"]
    print(f"test: top-1 {test['accuracy']:.3f}, top-3 {test.get('top3_accuracy', float('nan')):.3f}, "
          f"macro-F1 {test['macro_f1']:.3f} (n={test['n']})")
    cv = report.get("cross_validation")
    if cv:
        print(f"{cv['folds']}-fold CV: top-1 {cv['accuracy']['mean']:.3f} +/- {cv['accuracy']['std']:.3f}, "
              f"macro-F1 {cv['macro_f1']['mean']:.3f} +/- {cv['macro_f1']['std']:.3f}")

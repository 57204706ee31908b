"""Models trained on part of the photos and scored on the rest: grouped k-fold cross-validation
and cross-source runs (train on one photo library, test on another).

Each run keeps its model (`model.keras`) and its predictions (`logits.npy`) in its own folder
under the run folder (`cv/foldK/`, `cross_source/A_to_B/`), so an interrupted evaluation
resumes where it stopped.
"""

from pathlib import Path

import keras
import numpy as np

from explain.verdicts import energy, scaled_softmax
from training.config import ExperimentConfig
from training.data.grouping import group_split
from training.data.photos import load_pixels
from training.data.tables import class_names, labels_of
from training.evaluation import metrics
from training.model.backbones import cam_layer_of
from training.model.fitting import fit
from training.model.served import cam_features_and_logits


def train_and_predict(config: ExperimentConfig, train_rows: list[dict], eval_rows: list[dict], names: list[str],
                      out: Path) -> np.ndarray:
    """Fit on `train_rows` (early-stopped on a grouped slice of them); return the logits of `eval_rows`.

    They are saved in `out/logits.npy`, the model in `out/model.keras`: a rerun reads them, or predicts
    again with the saved model, instead of training again; an interrupted fine-tune continues from its
    checkpoint.
    """
    saved = out / "logits.npy"
    if saved.is_file():
        return np.load(saved)
    if (out / "model.keras").is_file():
        model = keras.saving.load_model(out / "model.keras", safe_mode=True, compile=False)
    else:
        model = fit(config, *grouped_slice(train_rows, [r["target_class"] for r in train_rows], config), names, out,
                    resume=True)
    np.save(saved, cam_features_and_logits(model, cam_layer_of(config.model.backbone), load_pixels(eval_rows, config),
                                           tta=config.evaluation.tta)[1])
    return np.load(saved)


def grouped_slice(rows: list[dict], labels: list[str], config: ExperimentConfig) -> tuple[list, list]:
    """(fit, validation) rows: about val_fraction held out for early stopping, whole clusters."""
    fit_idx, val_idx = group_split(labels, [r["cluster"] for r in rows], config.data.val_fraction, config.seed)
    return [rows[i] for i in fit_idx], [rows[i] for i in val_idx]


def cross_validate(config: ExperimentConfig, rows: list[dict], names: list[str]) -> dict:
    """k-fold CV grouped by near-duplicate cluster: mean and std of each headline metric. Photos of
    other conditions are held out fold by fold, whole conditions at a time: the energy's AUROC on them
    (the "another condition" score) says how well it tells conditions nobody trained on from ours."""
    folds = []
    for fold in range(config.data.cv_folds):
        held = [r for r in rows if r["fold"] == str(fold) and r["target_class"]]
        held_other = [r for r in rows if r["fold"] == str(fold) and r.get("other_condition")]
        train_rows = [r for r in rows if r["fold"] not in ("", str(fold)) and r["target_class"]]
        print(f"cross-validation fold {fold + 1}/{config.data.cv_folds}: {len(train_rows)} train, {len(held)} held out"
              + (f", and {len(held_other)} photos of other conditions" if held_other else ""))
        logits = train_and_predict(config, train_rows, held + held_other, names,
                                               config.out / "cv" / f"fold{fold}")
        summary = metrics.summarize(logits[: len(held)], labels_of(held, names), names,
                                    [r["source"] for r in held], config.evaluation.top_k)
        if held_other:
            score = energy(logits)
            summary["other_condition_auroc"] = metrics.ood_auroc(score[: len(held)], score[len(held):])
        folds.append(summary)
    return aggregate_folds(folds, config, names)


def aggregate_folds(folds: list[dict], config: ExperimentConfig, names: list[str]) -> dict:
    """Mean and std over folds of each headline metric, overall, by source and per class."""
    keys = ["accuracy", *[f"top{k}_accuracy" for k in config.evaluation.top_k], "macro_f1"]
    result = {"folds": config.data.cv_folds, **{k: metrics.mean_std([f[k] for f in folds]) for k in keys}}
    if "by_source" in folds[0]:
        result["by_source"] = {s: {k: metrics.mean_std([f["by_source"][s][k] for f in folds]) for k in keys}
                               for s in folds[0]["by_source"]}
    result["per_class_f1"] = {n: metrics.mean_std([f["per_class"][n]["f1"] for f in folds]) for n in names}
    result["per_class_recall"] = {n: metrics.mean_std([f["per_class"][n]["recall"] for f in folds]) for n in names}
    if "other_condition_auroc" in folds[0]:
        result["other_condition_auroc"] = metrics.mean_std([f["other_condition_auroc"] for f in folds])
    return result


def cross_source(config: ExperimentConfig, rows: list[dict], names: list[str]) -> dict:
    """Leave one photo library out: train on every other library, test on this one's photos of the
    classes the others know (with two, each trains on one and is tested on the other). Sources of one
    library (Source.library) are left out together, so no trace of it, such as its watermark, trains."""
    library_of = {r["source"]: r["source"] for r in rows} | {s.name: s.photo_library for s in config.data.sources}
    libraries = sorted({library_of[r["source"]] for r in rows})
    result = {}
    for held_out in libraries if len(libraries) > 1 else []:
        train_rows = [r for r in rows if library_of[r["source"]] != held_out]
        known = class_names(train_rows)
        test_rows = [r for r in rows if library_of[r["source"]] == held_out and r["target_class"] in known]
        name = f"{' + '.join(s for s in libraries if s != held_out)} -> {held_out}"
        print(f"leave one source out: {name} ({len(train_rows)} photos to train, {len(test_rows)} to test)")
        logits = train_and_predict(config, train_rows, test_rows, known,
                                      config.out / "cross_source" / f"without_{held_out}")
        report = metrics.classification_report(scaled_softmax(logits), labels_of(test_rows, known), known,
                                               config.evaluation.top_k)
        result[name] = {k: v for k, v in report.items() if k != "confusion_matrix"}
    return result

"""Step 5, evaluate: held-out test, calibration, abstention, shortlist, logo study, cross-validation, cross-source.

Writes `report.json` (read by export and publish), `confusion_matrix.png`,
`training_curves.png`, `reliability.png` and `risk_coverage.png` into the run folder. The parts live in their own
modules: `abstention`, `shortlist` (the conformal prediction set), `watermark` (the logo study), `crossval` (whose runs resume from saved predictions).
"""

import json
from pathlib import Path

import keras
import numpy as np

from explain.classifier import Classifier
from explain.model import CLASS_MEANS_FILE, SKIN_READOUT_FILE, LoadedModel, ModelSource
from explain.verdicts import scaled_softmax, scores
from training.config import ExperimentConfig
from training.data.photos import load_pixels
from training.data.tables import class_names, labels_of, read_rows
from training.evaluation import metrics
from training.evaluation.abstention import abstention, rows_of
from training.evaluation.crossval import cross_source, cross_validate
from training.evaluation.shortlist import shortlist
from training.evaluation.watermark import logo_check
from training.model.backbones import cam_layer_of
from training.model.served import cam_features_and_logits, model_config
from training.report import plots
from training.steps import already_done


def run(config: ExperimentConfig, force: bool = False) -> Path:
    out = config.out / "report.json"
    if already_done("evaluate", out, force):
        return out
    rows = read_rows(config.out / "split.csv")
    names = class_names(rows)
    by_split = {s: rows_of(rows, s) for s in ("train", "val", "test")}
    other = {f"other_{s}": [r for r in rows if r["split"] == s and r.get("other_condition")]
             for s in ("train", "val", "test")}
    model = keras.saving.load_model(config.out / "train" / "model.keras", safe_mode=True, compile=False)
    cam_layer = cam_layer_of(config.model.backbone)
    outputs = {s: cam_features_and_logits(model, cam_layer, load_pixels(split_rows, config), config.evaluation.tta)
               for s, split_rows in {**by_split, **other}.items() if split_rows}
    labels = {s: labels_of(split_rows, names) for s, split_rows in by_split.items()}
    val_logits, test_logits = outputs["val"][1], outputs["test"][1]
    val_labels, test_labels = labels["val"], labels["test"]
    temperature = metrics.fit_temperature(val_logits, val_labels)
    before, after = scaled_softmax(test_logits), scaled_softmax(test_logits, temperature)

    report = {
        "classes": names,
        "counts": {s: len(v) for s, v in by_split.items()},
        "test": metrics.summarize(test_logits, test_labels, names, [r["source"] for r in by_split["test"]],
                                  config.evaluation.top_k),
        "calibration": {
            "temperature": temperature,
            "test_ece_before": metrics.expected_calibration_error(before, test_labels),
            "test_ece_after": metrics.expected_calibration_error(after, test_labels),
        },
    }
    report["abstention"], readout, means = abstention(config, model, temperature, outputs, labels, rows, names)
    plots.risk_coverage_png(report["abstention"]["risk_coverage"], config.out / "risk_coverage.png")
    if config.evaluation.shortlist_coverage:
        split_scores = {s: scores(*outputs[s], temperature, readout, means) for s in ("val", "test")}
        report["shortlist"] = shortlist(
            config.evaluation.shortlist_coverage,
            *((scaled_softmax(outputs[s][1], temperature), labels[s], split_scores[s]) for s in ("val", "test")),
            by_split["test"], names, report["abstention"]["thresholds"])
    if readout is not None:
        np.save(config.out / SKIN_READOUT_FILE, readout)
    np.save(config.out / CLASS_MEANS_FILE, means.astype(np.float32))
    plots.confusion_matrix_png(report["test"]["confusion_matrix"], names, config.out / "confusion_matrix.png",
                               "Held-out test split")
    plots.training_curves_png(read_rows(config.out / "train" / "history.csv"), config.out / "training_curves.png")
    plots.reliability_png((before, test_labels), (after, test_labels), config.out / "reliability.png")
    classifier = Classifier(LoadedModel.from_keras(model, names, model_config(config), ModelSource("memory", str(config.out))))
    report["logo"] = logo_check(classifier, config.data.sources, by_split["test"])
    save(report, out)  # the long parts below resume from their saved predictions if interrupted
    if config.data.cv_folds:
        report["cross_validation"] = cross_validate(config, rows, names)
        save(report, out)
    if config.evaluation.cross_source:
        report["cross_source"] = cross_source(config, [r for r in rows if r["target_class"]], names)
        save(report, out)
    _print_headline(report)
    return out


def save(report: dict, path: Path) -> None:
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


def _print_headline(report: dict) -> None:
    test = report["test"]
    print(f"test: top-1 {test['accuracy']:.3f}, top-3 {test.get('top3_accuracy', float('nan')):.3f}, "
          f"macro-F1 {test['macro_f1']:.3f} (n={test['n']})")
    logo = report.get("logo")
    if logo:
        print(f"test, {logo['n']} photos of the logo's library: top-1 {logo['top1']['logo removed']:.3f} logo removed, "
              f"{logo['top1']['as served']:.3f} as served; removing the logo changes the top class on "
              f"{logo['top_class_changed']['logo removed']:.1%}, the control box on "
              f"{logo['top_class_changed']['control removed']:.1%}")
    cv = report.get("cross_validation")
    if cv:
        print(f"{cv['folds']}-fold CV: top-1 {cv['accuracy']['mean']:.3f} +/- {cv['accuracy']['std']:.3f}, "
              f"macro-F1 {cv['macro_f1']['mean']:.3f} +/- {cv['macro_f1']['std']:.3f}")

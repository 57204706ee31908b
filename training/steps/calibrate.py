"""Calibrate (a study, not part of `all`): give a model folder that has none a shortlist, on this run's split.

`python -m training calibrate --config FILE --model-dir FOLDER` answers the run's validation and test
photos of our classes through the app's own code, calibrates the conformal shortlist on half the
test split (training.evaluation.shortlist) and writes it into the folder: `config.json` gets
`shortlist` (and no longer checks the top probability: the list says how sure the model is) and the
card its shortlist section. The same calibration runs in `evaluate` for a model the pipeline trains;
this step is for a model trained before it (the shipped one), so it needs no retraining. Use the
split the model was trained on: a photo it trained on would make the stated hit rate a lie.
"""

import json
from pathlib import Path

import numpy as np

from explain.classifier import Classifier
from explain.model import CARD_FILE, CONFIG_FILE, ModelSource, load_model_folder
from explain.model_config import ModelConfig
from training.config import ExperimentConfig
from training.data.tables import print_table, read_rows
from training.evaluation.abstention import rows_of
from training.evaluation.shortlist import shortlist
from training.model.served import served_predictions
from training.report.card import SHORTLIST_HEADING, put_section, shortlist_section


def answered(classifier: Classifier, rows: list[dict], desc: str) -> tuple:
    """(probabilities, labels, scores) of these photos as the app answers them."""
    predictions = served_predictions(classifier, rows, desc)
    labels = np.array([classifier.labels.index(r["target_class"]) for r in rows])
    scores = {name: np.array([p.scores[name] for p in predictions]) for name in predictions[0].scores}
    return np.stack([p.probabilities for p in predictions]), labels, scores


def calibrate_folder(config: ExperimentConfig, folder: Path) -> dict:
    """Calibrate the folder's shortlist at config.evaluation.shortlist_coverage and write it into the folder."""
    classifier = Classifier(load_model_folder(folder, ModelSource("folder", str(folder))))
    rows = read_rows(config.out / "split.csv")
    splits = {split: rows_of(rows, split) for split in ("val", "test")}
    result = shortlist(config.evaluation.shortlist_coverage, *(answered(classifier, r, f"{folder.name}: {s}")
                                                    for s, r in splits.items()),
                       splits["test"], classifier.labels, classifier.config.thresholds)
    served = classifier.config.to_json() | {"shortlist": result["served"],
                                            "thresholds": classifier.config.thresholds | {"top_probability": None}}
    ModelConfig.from_json(served)  # what the app will read
    (folder / CONFIG_FILE).write_text(json.dumps(served, indent=2) + "\n", encoding="utf-8")
    card = folder / CARD_FILE
    if card.is_file():
        card.write_text(put_section(card.read_text(encoding="utf-8"), SHORTLIST_HEADING, shortlist_section(result)),
                        encoding="utf-8")
    return result


def run(config: ExperimentConfig, model_dirs: list[str] = ()) -> Path:
    if not config.evaluation.shortlist_coverage:
        raise SystemExit("calibrate: set shortlist_coverage in the config (for example 0.9) to say what the list "
                         "must hold")
    out = config.out / "shortlist.json"
    results = json.loads(out.read_text(encoding="utf-8")) if out.is_file() else {}
    for folder in model_dirs:
        results[folder] = calibrate_folder(config, Path(folder))
        out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print_table([{"model": folder, "score": r["score"], "threshold": f"{r['threshold']:.4f}",
                  "photos measured": r["measured"]["n"], "list holds the right class": f"{r['measured']['coverage']:.3f}",
                  "mean length": f"{r['measured']['mean_size']:.2f}",
                  **{f'"{k}"': f"{share:.3f}" for k, share in r["measured"]["verdicts"].items()}}
                 for folder, r in results.items() if folder in model_dirs])
    return out

"""Score (a study, not part of `all`): model folders as the app serves them, on this run's held-out photos.

`python -m training score --config FILE --model-dir A [B ...]` loads each folder the way the app does
and answers every held-out photo through the app's own decoder and compiled pass: top-1 and top-3 on
the test split (overall and per source), the verdicts each set of photos gets, and the classes photos
outside the taxonomy are named as. Models scored on the same run compare on identical photos,
whatever preprocessing each was trained with. A model trained on another split (an earlier model)
may have trained on some of these photos: `--unseen-by SPLIT_CSV` leaves out every photo that is
in that split's train or validation part, for every model alike, and says how many. Writes
`scores.json` in the run folder, one entry per model folder.
"""

import collections
import json
from pathlib import Path

import numpy as np

from explain.classifier import Classifier
from explain.model import CARD_FILE, ModelSource, load_model_folder
from explain.verdicts import ANSWER, KINDS
from training.config import ExperimentConfig
from training.data.tables import print_table, read_rows
from training.evaluation.abstention import ood_photos
from training.evaluation.watermark import VIEWS, logo_check
from training.model.served import served_predictions
from training.report.card import LOGO_HEADING, logo_section, put_section


def photo_sets(config: ExperimentConfig, unseen_by: list[str] = ()) -> dict[str, list[dict]]:
    """The held-out photos: the test split of our classes, other conditions' test split, every OOD set;
    less any photo that trained (or chose) a model of the splits in `unseen_by`."""
    rows = read_rows(config.out / "split.csv")
    sets = {"test split": [r for r in rows if r["split"] == "test" and r["target_class"]],
            "other conditions held out whole (test split)": [r for r in rows if r["split"] == "test"
                                                             and r.get("other_condition")]}
    sets |= ood_photos(config, rows)
    seen = {r["path"] for split in unseen_by for r in read_rows(Path(split)) if r["split"] in ("train", "val")}
    kept = {name: [r for r in photos if r["path"] not in seen] for name, photos in sets.items()}
    left_out = sum(map(len, sets.values())) - sum(map(len, kept.values()))
    if unseen_by:
        print(f"score: {left_out} photos left out, seen in training or validation by {', '.join(unseen_by)}")
    return kept


def score_folder(folder: Path, sets: dict[str, list[dict]], sources) -> dict:
    """Every set's verdicts and accuracy, and the logo study (training.evaluation.watermark) on the test split."""
    classifier = Classifier(load_model_folder(folder, ModelSource("folder", str(folder))))
    result = {"logo": logo_check(classifier, sources, sets["test split"])}
    for name, rows in sets.items():
        predictions = served_predictions(classifier, rows, f"{folder.name}: {name}")
        verdicts = collections.Counter(p.verdict for p in predictions)
        entry = {"n": len(rows), "verdicts": {v: verdicts[v] / max(1, len(rows)) for v in KINDS},
                 "top_class": dict(collections.Counter(p.top_label for p in predictions).most_common())}
        if rows and rows[0].get("target_class"):
            entry |= accuracy(predictions, rows)
            for source in sorted({r["source"] for r in rows}):
                keep = [i for i, r in enumerate(rows) if r["source"] == source]
                entry.setdefault("by_source", {})[source] = accuracy([predictions[i] for i in keep],
                                                                     [rows[i] for i in keep])
        result[name] = entry
    return result


def accuracy(predictions: list, rows: list[dict]) -> dict:
    """Top-1, top-3, answered share and accuracy when answering, and per-class recall."""
    truth = [r["target_class"] for r in rows]
    top1 = np.array([p.top_label == t for p, t in zip(predictions, truth)])
    top3 = np.array([t in p.top_k(3) for p, t in zip(predictions, truth)])
    answered = np.array([p.verdict == ANSWER for p in predictions])
    recall = {c: float(top1[[t == c for t in truth]].mean()) for c in sorted(set(truth))}
    return {"n": len(rows), "top1": float(top1.mean()), "top3": float(top3.mean()),
            "answered": float(answered.mean()),
            "top1_when_answered": float(top1[answered].mean()) if answered.any() else float("nan"),
            "recall": recall}


def write_logo_section(folder: Path, logo: dict) -> None:
    """Put the logo study into the folder's card, for a model trained before `evaluate` measured it."""
    card = folder / CARD_FILE
    card.write_text(put_section(card.read_text(encoding="utf-8"), LOGO_HEADING, logo_section(logo)), encoding="utf-8")


def run(config: ExperimentConfig, force: bool = False, model_dirs: list[str] = (), unseen_by: list[str] = (),
        card: bool = False) -> Path:
    out = config.out / "scores.json"
    scores = json.loads(out.read_text(encoding="utf-8")) if out.is_file() else {}
    sets = photo_sets(config, unseen_by)
    for folder in model_dirs:
        if folder in scores and not force:
            print(f"score: {folder} already scored (use --force to redo)")
            continue
        scores[folder] = {"unseen_by": list(unseen_by), **score_folder(Path(folder), sets, config.data.sources)}
        out.write_text(json.dumps(scores, indent=2) + "\n", encoding="utf-8")
    for folder in model_dirs if card else ():
        if scores[folder].get("logo"):
            write_logo_section(Path(folder), scores[folder]["logo"])
    print_table([{"model": folder, "set": name, "n": s["n"],
                  "top-1": f"{s['top1']:.3f}" if "top1" in s else "", "top-3": f"{s['top3']:.3f}" if "top3" in s else "",
                  **{v: f"{s['verdicts'][v]:.3f}" for v in KINDS}}
                 for folder in model_dirs for name, s in scores[folder].items() if name not in ("unseen_by", "logo")])
    print_table([{"model": folder, "photos of the logo's library": s["logo"]["n"],
                  **{f"top-1 {view}": f"{s['logo']['top1'][view]:.3f}" for view in VIEWS},
                  **{f"top class changed, {view}": f"{share:.3f}"
                     for view, share in s["logo"]["top_class_changed"].items()}}
                 for folder in model_dirs if (s := scores[folder]).get("logo")])
    return out

"""Ablate (a study, not part of `all`): which settings the numbers support, each scored by the same grouped CV.

Each variant (the config's `ablations`) changes one or more settings of the config. Fine-tuning
one variant through 5 folds costs about 40 minutes of 2-core CPU, so variants are scored with the
backbone frozen: pooled features are computed once per image size and view (the photo, its
mirror, augmented copies), cached in `<output_dir>/ablation/features/`, and only the head is
trained per fold (seconds). A variant marked `"fine_tune": true` is instead trained in full
through the evaluation's cross-validation (training.evaluation.crossval) (resumable per fold;
with no other change it reads back evaluate's own folds).
Writes `ablation.json`; the card shows it beside the fine-tuned model's CV.
"""

import json
import re
import shutil
from pathlib import Path

import keras
import numpy as np

from training.config import ExperimentConfig
from training.data.grouping import group_split
from training.data.photos import dataset
from training.data.tables import class_names, labels_of, read_rows
from training.evaluation import metrics
from training.evaluation.crossval import aggregate_folds, cross_validate
from training.model.fitting import balanced_class_weights, feature_view, fit_head, new_model

# every setting that changes the cached features; a cache made with other values is recomputed
# (the number of augmented copies is not one: each copy is its own file)
FEATURE_SETTINGS = {"model": ("backbone", "alpha", "image_size", "imagenet_weights"),
                    "data": ("sources", "blank_boxes"),
                    "augment": ("flip", "rotation", "zoom", "contrast", "brightness"),
                    "training": ("batch_size",)}


def cached_views(config: ExperimentConfig, rows: list[dict], names: list[str]) -> list[np.ndarray]:
    """Feature views of `rows` under the config's settings, each computed once and kept on disk
    (a variant asking for more augmented copies computes only the copies it lacks)."""
    folder = config.out / "ablation" / "features" / f"{config.model.image_size}px"
    values = config.as_dict()
    settings = json.dumps({"seed": config.seed} | {section: {k: values[section][k] for k in keys}
                                                   for section, keys in FEATURE_SETTINGS.items()}, sort_keys=True)
    stamp = folder / "settings.json"
    if not (stamp.is_file() and stamp.read_text(encoding="utf-8") == settings):
        shutil.rmtree(folder, ignore_errors=True)  # made with other settings
    files = [folder / f"view{i}.npy" for i in range(2 + config.training.head_augmented_copies)]
    missing = [i for i, f in enumerate(files) if not f.is_file()]
    if missing:
        print(f"ablation: features of {len(rows)} photos at {config.model.image_size} px, views {missing}")
        model = new_model(config, len(names))
        ds = dataset(rows, names, config, shuffle=False)
        folder.mkdir(parents=True, exist_ok=True)
        stamp.write_text(settings, encoding="utf-8")
        for i in missing:
            np.save(files[i], feature_view(model, ds, config, i))
    return [np.load(f) for f in files]


def head_logits(config: ExperimentConfig, views: list[np.ndarray], labels: np.ndarray, fit_idx, val_idx,
                names: list[str], rows: list[dict], out: Path):
    """Train a head on `fit_idx` (early-stopped on `val_idx`); return a function giving logits."""
    one_hot = np.eye(len(names), dtype=np.float32)
    train = (np.concatenate([v[fit_idx] for v in views]), np.tile(one_hot[labels[fit_idx]], (len(views), 1)))
    weights = balanced_class_weights([rows[i] for i in fit_idx], names) if config.training.class_weights else None
    out.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(config.seed)
    head, _ = fit_head(config, train, (views[0][val_idx], one_hot[labels[val_idx]]), weights, out)
    logits_of = keras.Model(head.inputs, head.get_layer("logits").output)

    def logits(photo, mirror):
        result = logits_of.predict(photo, verbose=0)
        return (result + logits_of.predict(mirror, verbose=0)) / 2 if config.evaluation.tta else result
    return logits


def score_variant(config: ExperimentConfig, rows: list[dict], names: list[str], name: str) -> dict:
    """Grouped k-fold CV of the head on cached features, the folds of `split.csv`."""
    views = cached_views(config, rows, names)
    labels = labels_of(rows, names)
    folds = []
    for fold in range(config.data.cv_folds):
        held = np.array([i for i, r in enumerate(rows) if r["fold"] == str(fold)])
        rest = np.array([i for i, r in enumerate(rows) if r["fold"] != str(fold)])
        fit_idx, val_idx = group_split([rows[i]["target_class"] for i in rest], [rows[i]["cluster"] for i in rest],
                                       config.data.val_fraction, config.seed)
        logits = head_logits(config, views, labels, rest[fit_idx], rest[val_idx], names, rows,
                             config.out / "ablation" / slug(name) / f"fold{fold}")
        folds.append(metrics.summarize(logits(views[0][held], views[1][held]), labels[held], names,
                                       [rows[i]["source"] for i in held], config.evaluation.top_k))
    return aggregate_folds(folds, config, names)


def slug(name: str) -> str:
    return re.sub(r"\W+", "_", name).strip("_")


def run(config: ExperimentConfig, force: bool = False) -> Path:
    if not config.model.imagenet_weights:
        raise ValueError("ablate scores variants with the backbone frozen, which needs pretrained weights: "
                         "set imagenet_weights in the config.")
    out = config.out / "ablation.json"
    done = json.loads(out.read_text()) if out.is_file() and not force else {"variants": {}}
    rows = [r for r in read_rows(config.out / "split.csv") if r["fold"] != "" and r["target_class"]]
    names = class_names(rows)
    for name, overrides in config.evaluation.ablations.items():
        if name not in done["variants"]:
            print(f"ablation: {name}")
            changes = {k: v for k, v in overrides.items() if k != "fine_tune"}
            variant = config.changed(**changes)
            if not overrides.get("fine_tune"):
                result = score_variant(variant, rows, names, name)
            else:
                if changes:
                    variant.output_dir = str(config.out / "ablation" / slug(name))
                result = cross_validate(variant, rows, names)
            done["variants"][name] = {"overrides": overrides, **result}
            # the config's order, then any others
            order = [n for n in config.evaluation.ablations if n in done["variants"]]
            done["variants"] = {n: done["variants"][n] for n in order + sorted(set(done["variants"]) - set(order))}
            out.write_text(json.dumps(done, indent=2) + "\n", encoding="utf-8")
    for name, result in done["variants"].items():
        print(f"{name:32s} top-1 {result['accuracy']['mean']:.3f} +/- {result['accuracy']['std']:.3f}  "
              f"top-3 {result['top3_accuracy']['mean']:.3f}  macro-F1 {result['macro_f1']['mean']:.3f}")
    return out

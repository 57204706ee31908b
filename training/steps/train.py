"""Step 4, train: the model of the run's train split (`training.model.fitting`), chosen on its
validation split. Writes `train/model.keras` (with its augmentation layers), `history.csv` and
checkpoints; an interrupted fine-tune resumes with --resume.
"""

import shutil
from pathlib import Path

from training.config import ExperimentConfig
from training.data.tables import class_names, read_rows
from training.model.fitting import fit
from training.steps import already_done


def run(config: ExperimentConfig, force: bool = False, resume: bool = False) -> Path:
    """The model of the run's train split, chosen on its validation split (`train/model.keras`)."""
    out = config.out / "train"
    if already_done("train", out / "model.keras", force):
        return out
    if force:
        shutil.rmtree(out, ignore_errors=True)
    rows = read_rows(config.out / "split.csv") + _augmented_rows(config)
    names = class_names(rows)
    known = [r for r in rows if r["target_class"]]
    fit(config, [r for r in known if r["split"] == "train"], [r for r in known if r["split"] == "val"], names, out,
        resume=resume)
    return out


def _augmented_rows(config: ExperimentConfig) -> list[dict]:
    path = config.out / "augmented.csv"
    return read_rows(path) if path.is_file() else []

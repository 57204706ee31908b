"""Step 2, split: train / validation / test (and optional CV folds) by ORIGINAL photo.

Near-duplicate clusters stay on one side, and the split happens before any
augmentation, so no test photo has a sibling in training: the flaw behind the
original project's 97.4%. `check_no_leakage` refuses any split that breaks this.
"""

from pathlib import Path

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from training.config import ExperimentConfig
from training.data.grouping import group_split, hamming_matrix
from training.data.tables import read_rows, write_rows
from training.steps import already_done


class LeakageError(ValueError):
    """A test or validation photo has an identical or near-identical photo in training."""


def assign_splits(rows: list[dict], config: ExperimentConfig) -> list[dict]:
    """Adds `split` (train/val/test, or ood for out-of-taxonomy photos) and `fold` to each row.
    Photos of other conditions (`other_condition`) are split too: their condition is part of
    their cluster, so whole conditions go to one side."""
    known = [r for r in rows if r["target_class"]]
    _split_groups(known, [r["target_class"] for r in known], config)
    other = [r for r in rows if r.get("other_condition")]
    _split_groups(other, ["other"] * len(other), config)
    for row in rows:
        if not row["target_class"] and not row.get("other_condition"):
            row["split"], row["fold"] = "ood", ""
    return rows


def _split_groups(rows: list[dict], labels: list[str], config: ExperimentConfig) -> None:
    """train/val/test and CV folds of `rows`, stratified by `labels`, whole near-duplicate clusters."""
    if not rows:
        return
    groups = [r["cluster"] for r in rows]
    for row in rows:
        row["split"], row["fold"] = "train", ""
    rest, test = group_split(labels, groups, config.data.test_fraction, config.seed)
    for i in test:
        rows[i]["split"] = "test"
    val_fraction = config.data.val_fraction / (1 - config.data.test_fraction)
    _, val = group_split([labels[i] for i in rest], [groups[i] for i in rest], val_fraction, config.seed + 1)
    for i in val:
        rows[rest[i]]["split"] = "val"
    if config.data.cv_folds:
        splitter = StratifiedGroupKFold(n_splits=config.data.cv_folds, shuffle=True, random_state=config.seed)
        for fold, (_, held) in enumerate(splitter.split(np.zeros(len(labels)), labels, groups)):
            for i in held:
                rows[i]["fold"] = fold


def check_no_leakage(rows: list[dict], within: int, held_out: str = "test", against: str = "train") -> None:
    """Refuse when a `held_out` photo equals, or is a near duplicate (pHash) of, an `against` photo."""
    a = [r for r in rows if r["split"] == held_out]
    b = [r for r in rows if r["split"] == against]
    if not a or not b:
        return
    shared_sha = {r["sha256"] for r in a} & {r["sha256"] for r in b}
    close = np.argwhere(hamming_matrix([r["phash"] for r in a] + [r["phash"] for r in b])[: len(a), len(a):] <= within)
    if shared_sha or len(close):
        pairs = [(a[i]["path"], b[j]["path"]) for i, j in close[:3]]
        raise LeakageError(
            f"{len(close)} {held_out} photo(s) have an identical or near-identical photo in {against} "
            f"(pHash distance <= {within}), e.g. {pairs}. Re-run curate so they share a cluster, then split again."
        )


def check_folds(rows: list[dict], within: int) -> None:
    """Every cross-validation fold against the other folds."""
    folds = sorted({r["fold"] for r in rows if r["fold"] != ""})
    for fold in folds:
        relabelled = [{**r, "split": "held" if r["fold"] == fold else ("rest" if r["fold"] != "" else "")} for r in rows]
        check_no_leakage(relabelled, within, held_out="held", against="rest")


def run(config: ExperimentConfig, force: bool = False) -> Path:
    out = config.out / "split.csv"
    if already_done("split", out, force):
        return out
    rows = assign_splits(read_rows(config.out / "curated.csv"), config)
    for held_out in ("test", "val"):
        check_no_leakage(rows, config.data.cluster_distance, held_out=held_out)
    check_folds(rows, config.data.cluster_distance)
    write_rows(out, rows)
    counts = {s: sum(r["split"] == s for r in rows) for s in ("train", "val", "test", "ood")}
    print("split:", ", ".join(f"{n} {s}" for s, n in counts.items()))
    return out

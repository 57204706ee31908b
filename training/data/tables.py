"""The pipeline's tables: every step reads and writes plain CSV, one row a photo (a split table's rows
carry path, source, target_class, fine_class, ...)."""

import csv
from pathlib import Path

import numpy as np


def write_rows(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else [])
        writer.writeheader()
        writer.writerows(rows)


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def print_table(rows: list[dict]) -> None:
    """Rows of dicts as an aligned text table."""
    if not rows:
        return
    columns = list(rows[0])
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    for row in rows:
        print("  ".join(str(row[c]).ljust(widths[c]) for c in columns))


def class_names(rows: list[dict]) -> list[str]:
    """The classes of a split table, sorted: the model's output order."""
    return sorted({r["target_class"] for r in rows if r["target_class"]})


def fine_classes(rows: list[dict]) -> list[str]:
    """The fine-grained conditions of a split table, sorted: the fine head's output order."""
    return sorted({r["fine_class"] for r in rows if r["target_class"]})


def labels_of(rows: list[dict], names: list[str]) -> np.ndarray:
    return np.array([names.index(r["target_class"]) for r in rows])

"""The evaluation's pictures: confusion matrix, training curves, reliability diagram."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def confusion_matrix_png(matrix: list[list[int]], names: list[str], path: Path, title: str) -> None:
    matrix = np.asarray(matrix)
    share = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1 + 0.6 * len(names), 1 + 0.55 * len(names)))
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for (i, j), count in np.ndenumerate(matrix):
        if count:
            ax.text(j, i, count, ha="center", va="center", fontsize=8, color="white" if share[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    _save(fig, path)


def training_curves_png(history: list[dict], path: Path) -> None:
    epochs = [int(r["epoch"]) + 1 for r in history]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric in zip(axes, ("loss", "accuracy")):
        ax.plot(epochs, [float(r[metric]) for r in history], label="train")
        ax.plot(epochs, [float(r[f"val_{metric}"]) for r in history], label="validation")
        ax.set(xlabel="epoch", title=metric)
        ax.legend()
    _save(fig, path)


def reliability_png(before: tuple[np.ndarray, np.ndarray], after: tuple[np.ndarray, np.ndarray], path: Path,
                    bins: int = 10) -> None:
    """Accuracy against confidence, before and after temperature scaling."""
    fig, ax = plt.subplots(figsize=(5, 5))
    edges = np.linspace(0, 1, bins + 1)
    for (probabilities, labels), name in ((before, "before"), (after, "after temperature scaling")):
        confidence = probabilities.max(axis=1)
        correct = probabilities.argmax(axis=1) == labels
        centers, accuracy = [], []
        for low, high in zip(edges[:-1], edges[1:]):
            in_bin = (confidence > low) & (confidence <= high)
            if in_bin.any():
                centers.append(confidence[in_bin].mean())
                accuracy.append(correct[in_bin].mean())
        ax.plot(centers, accuracy, marker="o", label=name)
    ax.plot([0, 1], [0, 1], "k--", label="perfect calibration")
    ax.set(xlabel="confidence (top probability)", ylabel="accuracy", title="Reliability on the test split")
    ax.legend()
    _save(fig, path)


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def risk_coverage_png(curves: dict, path: Path) -> None:
    """Error rate against the share of photos answered, one line per score (with its AURC)."""
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for name, curve in curves.items():
        ax.plot(curve["coverage"], curve["risk"], label=f"{name}: AURC {curve['aurc']:.3f}")
    ax.set_xlabel("share of test photos answered (most confident first)")
    ax.set_ylabel("error rate among answered photos")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7)
    ax.set_title("Risk-coverage on the held-out test split")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)

"""Classification, calibration and abstention metrics on arrays of logits and labels."""

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax
from sklearn.metrics import roc_auc_score

from explain.verdicts import scaled_softmax, unit


def top_k_accuracy(probabilities: np.ndarray, labels: np.ndarray, k: int) -> float:
    top = np.argsort(probabilities, axis=1)[:, ::-1][:, :k]
    return float(np.mean([label in row for label, row in zip(labels, top)]))


def confusion(labels: np.ndarray, predicted: np.ndarray, n: int) -> np.ndarray:
    """Rows: true class; columns: predicted class."""
    matrix = np.zeros((n, n), dtype=int)
    np.add.at(matrix, (labels, predicted), 1)
    return matrix


def classification_report(probabilities: np.ndarray, labels: np.ndarray, names: list[str], ks=(3,)) -> dict:
    """Accuracy, top-k accuracy, per-class and macro precision, recall and F1, confusion matrix."""
    predicted = probabilities.argmax(axis=1)
    matrix = confusion(labels, predicted, len(names))
    per_class = {}
    for i, name in enumerate(names):
        tp, support, predicted_n = matrix[i, i], matrix[i].sum(), matrix[:, i].sum()
        precision = tp / predicted_n if predicted_n else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[name] = {"precision": float(precision), "recall": float(recall), "f1": float(f1),
                           "support": int(support)}
    present = [v for v in per_class.values() if v["support"]]
    return {
        "n": int(len(labels)),
        "accuracy": float(np.mean(predicted == labels)),
        **{f"top{k}_accuracy": top_k_accuracy(probabilities, labels, k) for k in ks},
        "macro_precision": float(np.mean([v["precision"] for v in present])),
        "macro_recall": float(np.mean([v["recall"] for v in present])),
        "macro_f1": float(np.mean([v["f1"] for v in present])),
        "per_class": per_class,
        "confusion_matrix": matrix.tolist(),
    }


def summarize(logits: np.ndarray, labels: np.ndarray, names: list[str], sources: list[str], ks) -> dict:
    """`classification_report` of the photos overall and, when they come from several sources, per source."""
    probabilities = scaled_softmax(logits)
    report = classification_report(probabilities, labels, names, ks)
    if len(set(sources)) > 1:
        report["by_source"] = {}
        for source in sorted(set(sources)):
            keep = np.array([s == source for s in sources])
            report["by_source"][source] = classification_report(probabilities[keep], labels[keep], names, ks)
    return report


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    edges = np.linspace(0, 1, bins + 1)
    ece = 0.0
    for low, high in zip(edges[:-1], edges[1:]):
        in_bin = (confidence > low) & (confidence <= high)
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(ece)


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature minimising negative log-likelihood (Guo et al. 2017), on validation data."""
    def nll(log_t):
        return -np.mean(log_softmax(logits / np.exp(log_t), axis=1)[np.arange(len(labels)), labels])

    return float(np.exp(minimize_scalar(nll, bounds=(-3, 3), method="bounded").x))


def class_means(features: np.ndarray, labels: np.ndarray, n: int) -> np.ndarray:
    """Each class's mean pooled feature vector over its (training) photos, as unit rows."""
    return unit(np.stack([features[labels == c].mean(axis=0) for c in range(n)]))


def threshold_for_coverage(confidence: np.ndarray, coverage: float) -> float:
    """The score threshold that keeps `coverage` of these (validation) photos."""
    return float(np.quantile(confidence, 1 - coverage))


def accuracy_at_coverage(confidence: np.ndarray, correct: np.ndarray, coverages=(1.0, 0.9, 0.8, 0.7, 0.5)) -> list:
    """Accuracy on the most confident share of photos, for each share."""
    ordered = correct[np.argsort(-confidence)]
    return [{"coverage": c, "accuracy": float(ordered[: max(1, round(c * len(ordered)))].mean())} for c in coverages]


def risk_coverage(confidence: np.ndarray, correct: np.ndarray, points: int = 50) -> dict:
    """Error rate among the most confident photos at each coverage, and the area under that curve
    (AURC: lower is better; a score that ranks every mistake last reaches the error rate's minimum)."""
    ordered = 1.0 - correct[np.argsort(-confidence, kind="stable")].astype(float)
    risks = np.cumsum(ordered) / np.arange(1, len(ordered) + 1)
    coverage = np.linspace(1 / len(ordered), 1, min(points, len(ordered)))
    picked = np.clip(np.round(coverage * len(ordered)).astype(int) - 1, 0, len(ordered) - 1)
    return {"aurc": float(risks.mean()), "coverage": coverage.round(4).tolist(), "risk": risks[picked].round(4).tolist()}


def ood_auroc(in_confidence: np.ndarray, out_confidence: np.ndarray) -> float:
    """How well a score separates known conditions (positive) from unknown photos."""
    scores = np.concatenate([in_confidence, out_confidence])
    truth = np.concatenate([np.ones(len(in_confidence)), np.zeros(len(out_confidence))])
    return float(roc_auc_score(truth, scores))


def mean_std(values: list[float]) -> dict:
    return {"mean": float(np.mean(values)), "std": float(np.std(values)), "folds": [float(v) for v in values]}

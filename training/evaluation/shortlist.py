"""The shortlist: a conformal prediction set over the classes, with a hit rate stated and measured.

Calibrated with MAPIE's split conformal classifier on one half of the test split, whole clusters
(`calibrating`): photos that trained nothing and chose nothing. The other half measures it. The
conformity score (`explain.verdicts.SET_RULES`: LAC, APS) is the one with the smallest mean set on the
validation photos at the stated coverage. The app applies the stored threshold with
`explain.verdicts.prediction_sets`; MAPIE is a training dependency only.

The guarantee holds for photos exchangeable with the calibration photos; the report says how far the
hit rate falls per library and per class, where it need not hold, and for each library left out of the
calibration (the nearest to a camera it never saw that needs no new model).
"""

import hashlib
import math

import numpy as np
from mapie.classification import SplitConformalClassifier
from sklearn.base import BaseEstimator, ClassifierMixin

from explain.verdicts import ANSWER, KINDS, SET_RULES, SHORTLIST, prediction_sets, verdicts


class GivenProbabilities(ClassifierMixin, BaseEstimator):
    """A fitted "classifier" whose input is already the model's probabilities: MAPIE conformalizes a
    model it cannot call (a Keras model, or a model folder as the app serves it)."""

    def __init__(self, classes: int = 2):
        self.classes = classes

    def fit(self, probabilities, labels=None):
        self.classes_ = np.arange(self.classes)
        return self

    def predict_proba(self, probabilities):
        return np.asarray(probabilities, dtype=np.float64)

    def predict(self, probabilities):
        return np.asarray(probabilities).argmax(axis=1)


def calibrating(row: dict) -> bool:
    """Whether a test photo calibrates the shortlist (else it measures it), by a hash of its cluster:
    near-duplicates and a patient's photos fall on one side, the same on every run."""
    return hashlib.sha256(f"{row['source']}:{row['cluster']}".encode()).digest()[0] % 2 == 0


def conformalized(probabilities: np.ndarray, labels: np.ndarray, score: str, coverage: float
                  ) -> SplitConformalClassifier:
    """MAPIE's split conformal classifier for `score` at `coverage`, calibrated on these photos."""
    conformal = SplitConformalClassifier(GivenProbabilities(probabilities.shape[1]).fit(probabilities),
                                         confidence_level=coverage, conformity_score=score, prefit=True,
                                         random_state=0)
    return conformal.conformalize(probabilities, labels)


def calibrated_threshold(probabilities: np.ndarray, labels: np.ndarray, score: str, coverage: float) -> float:
    """The conformal quantile MAPIE calibrates: a class is in the set when explain.verdicts.SET_RULES[score]
    says so at this threshold (MAPIE computes it at its first prediction)."""
    conformal = conformalized(probabilities, labels, score, coverage)
    conformal.predict_set(probabilities[:1], conformity_score_params={"include_last_label": True})
    return float(conformal._mapie_classifier.conformity_score_function_.quantiles_[0])


def set_report(sets: np.ndarray, labels: np.ndarray) -> dict:
    """How many photos, the share whose set holds the right class, and the mean set size."""
    if not len(labels):
        return {"n": 0}
    return {"n": int(len(labels)), "coverage": float(sets[np.arange(len(labels)), labels].mean()),
            "mean_size": float(sets.sum(axis=1).mean())}


def fewest_calibration_photos(coverage: float) -> int:
    """Below this many calibration photos, no conformal threshold reaches `coverage`."""
    return math.ceil(1 / (1 - coverage))


def library_left_out(probabilities: np.ndarray, labels: np.ndarray, rows: list[dict], half: np.ndarray, score: str,
                     coverage: float) -> dict:
    """Each library left out of the calibration half, its measuring photos measured against that calibration:
    how far the hit rate falls on photos unlike every calibration photo. The model itself trained on every
    library, so a camera it never saw at all may fall further."""
    source = np.array([r["source"] for r in rows])
    result = {}
    for library in sorted(set(source)):
        calibration, measuring = half & (source != library), ~half & (source == library)
        if calibration.sum() < fewest_calibration_photos(coverage):  # one library: nothing left to calibrate on
            continue
        threshold = calibrated_threshold(probabilities[calibration], labels[calibration], score, coverage)
        result[library] = set_report(prediction_sets(probabilities[measuring], score, threshold), labels[measuring])
    return result


def shortlist(coverage: float, val: tuple, test: tuple, test_rows: list[dict], names: list[str],
              thresholds: dict) -> dict:
    """Calibrate and measure the shortlist. `val` and `test` are (probabilities, labels, scores) of each
    split's photos of our classes (scores: explain.verdicts.scores, for the verdicts that come first);
    `thresholds` the verdicts' (the top probability's is not used: the list replaces it).

    Returns what the model folder stores (`served`: score, threshold, stated coverage and the hit rates
    measured) and the report: each candidate score on validation, then on the measuring half overall,
    per verdict, per library and per class."""
    half = np.array([calibrating(r) for r in test_rows])
    needed = fewest_calibration_photos(coverage)
    if half.sum() < needed:
        raise ValueError(f"The shortlist's calibration half of the test split has {half.sum()} photos; a coverage of "
                         f"{coverage} needs at least {needed}. Lower shortlist_coverage, or give the test split more "
                         "photos.")
    (val_p, val_y, _), (test_p, test_y, test_scores) = val, test
    candidates = {}
    for score in SET_RULES:
        threshold = calibrated_threshold(test_p[half], test_y[half], score, coverage)
        candidates[score] = {"threshold": threshold, **set_report(prediction_sets(val_p, score, threshold), val_y)}
    score = min(candidates, key=lambda s: candidates[s]["mean_size"])
    threshold = candidates[score]["threshold"]
    measuring = ~half
    sets = prediction_sets(test_p[measuring], score, threshold)
    truth = test_y[measuring]
    kept = {name: value for name, value in thresholds.items() if name != "top_probability"}
    kind = verdicts({k: v[measuring] for k, v in test_scores.items()}, kept, sets.sum(axis=1))
    hit = sets[np.arange(len(truth)), truth]
    listed = np.isin(kind, (ANSWER, SHORTLIST))
    rows = [r for r, m in zip(test_rows, measuring) if m]
    measured = {k: float(hit[kind == k].mean()) for k in (ANSWER, SHORTLIST) if (kind == k).any()}
    report = {
        "coverage": coverage, "score": score, "threshold": threshold, "candidates_on_validation": candidates,
        "calibration_photos": int(half.sum()),
        "measured": {**set_report(sets, truth),
                     "verdicts": {k: float((kind == k).mean()) for k in KINDS},
                     "hit_rate": measured,
                     "listed": {"share": float(listed.mean()),
                                "coverage": float(hit[listed].mean()) if listed.any() else float("nan"),
                                "mean_size": float(sets[listed].sum(axis=1).mean()) if listed.any() else float("nan")}},
        "by_source": {s: set_report(sets[keep], truth[keep]) for s in sorted({r["source"] for r in rows})
                      if (keep := np.array([r["source"] == s for r in rows])).any()},
        "by_class": {names[c]: set_report(sets[truth == c], truth[truth == c]) for c in sorted(set(truth.tolist()))},
        "library_left_out_of_calibration": library_left_out(test_p, test_y, test_rows, half, score, coverage),
    }
    served = {"score": score, "threshold": math.ceil(threshold * 1e4) / 1e4, "coverage": coverage,  # never below
              "measured": {k: round(v, 3) for k, v in measured.items()} | {"photos": int(measuring.sum())}}
    return {"served": served, **report}

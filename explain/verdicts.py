"""The verdicts: what a photo is told, the score each one reads, and the one rule that picks them, on arrays.

A verdict is one entry of `VERDICTS`: its kind, the scores that give it (a photo whose score is below
the score's threshold gets it), the configuration field that sets how many validation photos of
ours its thresholds keep, and its words on the page. Checked strongest first:

- "not a skin photo": the skin read-out, a logistic regression on the photo's pooled CAM-layer
  features fitted on skin photos against everyday photos;
- "another condition": the energy (log-sum-exp of the logits), low for photos unlike every condition
  the model knows, or the similarity of the features to the nearest class mean, low for skin unlike
  every class (healthy skin);
- otherwise the shortlist: a conformal prediction set (`prediction_sets`) whose threshold the pipeline
  calibrated to hold the right class on a stated share of photos like the test photos. One class:
  "answer"; two or three: "shortlist"; more, or none: "unsure" (the model cannot narrow it down). A
  model without a shortlist is "unsure" below its top-probability threshold, else "answer".

The app and the CLI call the rule on one photo, the evaluation on thousands, so the shares of each
verdict that the model card reports are the shares the app gives.
"""

from dataclasses import dataclass, field

import numpy as np
from scipy.special import logsumexp

NOT_SKIN, OTHER_CONDITION, UNSURE, SHORTLIST, ANSWER = "not skin", "another condition", "unsure", "shortlist", "answer"
LONGEST_LIST = 3  # a prediction set longer than this is no help to a visitor: "unsure" instead


@dataclass(frozen=True)
class Verdict:
    """One kind of answer. Its words may use {first} (the most likely class), {listed} (the classes it
    names, with their probabilities), {names} (the same without them) and {n} (how many classes the
    model knows)."""

    kind: str
    headline: str  # the result box's big type
    summary: str  # the verdict's first sentence
    rest: str  # what follows it
    scores: dict[str, str] = field(default_factory=dict)  # score -> how reports name it; below its threshold: this
    names_classes: bool = True  # False: no class bar on the page, so nothing looks like an answer


VERDICTS = {verdict.kind: verdict for verdict in (  # strongest first
    Verdict(NOT_SKIN, "Not a photo of skin?",
            "This does not look like a photo of skin like the ones this model learned from.",
            "If it were skin, the closest of the {n} conditions it knows would be {first}.",
            {"skin": "skin read-out (logistic, skin against everyday photos)"}, names_classes=False),
    Verdict(OTHER_CONDITION, "Perhaps another condition",
            "This photo is unlike the photos of the {n} conditions this model knows: it may show another condition.",
            "If it were one of the {n}, the closest would be {first}. Not a diagnosis.",
            {"energy": "energy (log-sum-exp of the logits)",
             "similarity": "feature similarity to the nearest class mean (cosine)"}, names_classes=False),
    Verdict(UNSURE, "Cannot narrow it down", "The model cannot narrow it down; its closest are {listed}.",
            "Not a diagnosis.", {"top_probability": "top probability (temperature-scaled)"}),
    Verdict(SHORTLIST, "One of: {names}", "One of: {listed}.", "Not a diagnosis."),
    Verdict(ANSWER, "{first}", "Most likely: {listed}.", "Not a diagnosis."),
)}
KINDS = tuple(VERDICTS)
VERDICT_OF = {score: kind for kind, verdict in VERDICTS.items() for score in verdict.scores}
SCORE_NAMES = {score: name for verdict in VERDICTS.values() for score, name in verdict.scores.items()}


def unit(x: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1, so that a dot product is the cosine."""
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def skin_score(features: np.ndarray, readout: np.ndarray | None) -> np.ndarray:
    """The skin read-out's logit for each photo's pooled CAM-layer features (`readout`: the weights
    on the unit features, then the bias); +inf where the model has no read-out (never "not skin")."""
    features = np.atleast_2d(features)
    if readout is None:
        return np.full(len(features), np.inf)
    return unit(features) @ readout[:-1] + readout[-1]


def feature_similarity(features: np.ndarray, class_means: np.ndarray | None) -> np.ndarray:
    """Each photo's cosine similarity to the nearest class mean (`class_means`: unit rows); +inf where
    the model has none."""
    features = np.atleast_2d(features)
    if class_means is None:
        return np.full(len(features), np.inf)
    return (unit(features) @ class_means.T).max(axis=1)


def scaled_softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Temperature-scaled softmax of each row of logits: the probabilities the app shows."""
    scaled = np.atleast_2d(logits).astype(np.float64) / temperature
    return np.exp(scaled - logsumexp(scaled, axis=1, keepdims=True))


def energy(logits: np.ndarray) -> np.ndarray:
    """Each row's log-sum-exp of the logits: low for a photo unlike every condition the model knows."""
    return logsumexp(np.atleast_2d(logits), axis=1)


def scores(features: np.ndarray, logits: np.ndarray, temperature: float, readout: np.ndarray | None,
           class_means: np.ndarray | None) -> dict:
    """Each score of VERDICT_OF for each photo, from its pooled CAM-layer features and logits."""
    return {"skin": skin_score(features, readout), "energy": energy(logits),
            "similarity": feature_similarity(features, class_means),
            "top_probability": scaled_softmax(logits, temperature).max(axis=1)}


def least_ambiguous_set(probabilities: np.ndarray, threshold: float) -> np.ndarray:
    """LAC (least ambiguous set-valued classifier): every class whose probability is at least
    1 - threshold, where threshold is the calibrated quantile of 1 - p(true class)."""
    return np.atleast_2d(probabilities) >= 1 - threshold


def adaptive_set(probabilities: np.ndarray, threshold: float) -> np.ndarray:
    """APS (adaptive prediction sets), not randomised: the most likely classes until their summed
    probability reaches the threshold, the class that crosses it included."""
    probabilities = np.atleast_2d(probabilities)
    order = np.argsort(-probabilities, axis=1)
    ranked = np.take_along_axis(probabilities, order, axis=1)
    keep = np.cumsum(ranked, axis=1) - ranked < threshold
    sets = np.zeros_like(keep)
    np.put_along_axis(sets, order, keep, axis=1)
    return sets


# each conformity score the pipeline may calibrate (MAPIE's names), and the set it gives at a threshold
SET_RULES = {"lac": least_ambiguous_set, "aps": adaptive_set}


def prediction_sets(probabilities: np.ndarray, score: str, threshold: float) -> np.ndarray:
    """(photos, classes) booleans: the classes in each photo's conformal prediction set."""
    return SET_RULES[score](probabilities, threshold)


def verdicts(scores: dict, thresholds: dict, set_sizes: np.ndarray | None = None) -> np.ndarray:
    """Each photo's verdict kind: the strongest verdict one of whose scores is below its threshold (a
    missing or None threshold is not checked); else, by its prediction set's size (`set_sizes`; None:
    the model has no shortlist), "answer" for one class, "shortlist" for two to LONGEST_LIST, "unsure"
    for more or none."""
    verdict = np.full(len(np.atleast_1d(scores["top_probability"])), ANSWER, dtype=object)
    if set_sizes is not None:
        sizes = np.atleast_1d(set_sizes)
        verdict[(sizes > 1) & (sizes <= LONGEST_LIST)] = SHORTLIST
        verdict[(sizes == 0) | (sizes > LONGEST_LIST)] = UNSURE
    for kind in reversed(KINDS):  # the strongest verdict written last
        for name in VERDICTS[kind].scores:
            if thresholds.get(name) is not None:
                verdict[np.atleast_1d(scores[name]) < thresholds[name]] = kind
    return verdict

"""The four verdicts, the score each one reads, and the one rule that picks them, on arrays.

Each verdict answers its own question with its own score (higher: more like what the model
learned from): "not a skin photo" the skin read-out, a logistic regression on the photo's pooled
CAM-layer features fitted on skin photos against everyday photos; "another condition" two scores,
either low enough: the energy (log-sum-exp of the logits), low for photos unlike every condition
the model knows, and the similarity of the features to the nearest class mean, low for skin unlike
every class (healthy skin); "unsure between A and B" the top probability, the score that ranks the
model's own mistakes best on validation photos. The app and the CLI call the rule on one photo,
the evaluation on thousands, so the shares of each verdict that the model card reports are the
shares the app gives.
"""

import numpy as np
from scipy.special import logsumexp

NOT_SKIN, OTHER_CONDITION, UNSURE, ANSWER = "not skin", "another condition", "unsure", "answer"
KINDS = (ANSWER, UNSURE, OTHER_CONDITION, NOT_SKIN)
# each score, and the verdict a photo gets when that score is below its threshold
VERDICT_OF = {"skin": NOT_SKIN, "energy": OTHER_CONDITION, "similarity": OTHER_CONDITION, "top_probability": UNSURE}


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


def verdicts(scores: dict, thresholds: dict) -> np.ndarray:
    """NOT_SKIN where the skin score is below its threshold, else OTHER_CONDITION where the energy or
    the similarity is below its threshold, else UNSURE where the top probability is below its
    threshold, else ANSWER. `thresholds` maps a score to its threshold; a missing or None one is
    not checked."""
    verdict = np.full(len(np.atleast_1d(scores["top_probability"])), ANSWER, dtype=object)
    for kind in (UNSURE, OTHER_CONDITION, NOT_SKIN):  # the strongest verdict written last
        for name in (name for name, given in VERDICT_OF.items() if given == kind):
            if thresholds.get(name) is not None:
                verdict[np.atleast_1d(scores[name]) < thresholds[name]] = kind
    return verdict

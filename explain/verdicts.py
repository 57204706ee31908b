"""The four verdicts and the one rule that picks them, on arrays.

The app and the CLI call it on one photo, the evaluation on thousands, so the shares of each
verdict that the model card reports are the shares the app gives.
"""

import numpy as np

NOT_SKIN, OTHER_CONDITION, UNSURE, ANSWER = "not skin", "another condition", "unsure", "answer"


def unit(x: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1, so that a dot product is the cosine."""
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def feature_similarity(features: np.ndarray, class_means: np.ndarray) -> np.ndarray:
    """Each photo's cosine similarity to the nearest class mean (`class_means`: unit rows), from its
    pooled CAM-layer features: low means unlike every photo the model learned from."""
    return (unit(np.atleast_2d(features)) @ class_means.T).max(axis=1)


def verdicts(score: np.ndarray, top_probability: np.ndarray, abstain: float | None = None,
             other_condition: float | None = None, unsure: float | None = None) -> np.ndarray:
    """NOT_SKIN where the abstention score is below `abstain` (far from every photo the model learned
    from), else OTHER_CONDITION below `other_condition` (less far), else UNSURE where the top
    probability is below `unsure`, else ANSWER. A threshold of None is not checked."""
    score, top_probability = np.atleast_1d(score), np.atleast_1d(top_probability)
    verdict = np.full(len(score), ANSWER, dtype=object)
    for threshold, value, name in ((unsure, top_probability, UNSURE), (other_condition, score, OTHER_CONDITION),
                                   (abstain, score, NOT_SKIN)):  # the strongest verdict written last
        if threshold is not None:
            verdict[value < threshold] = name
    return verdict

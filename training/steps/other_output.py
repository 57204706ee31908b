"""An explicit "another condition" output, tried on cached features (issue #33; a study, not a step).

`python -m training other --config FILE --model-dir FOLDER` fits one logistic regression over the
model's classes plus "another condition" on the folder's pooled CAM-layer features (cached in the run
folder): the training split's photos of our classes and of the conditions outside them. Other conditions
are split whole, by condition, so the validation and test splits' are conditions it never saw. Its
threshold on "another condition" is set on validation to call as many of our photos so as the served
rule does there; the study then compares, on the test split, how many photos of other conditions each
catches and what it costs ours. Writes `other_output.json` in the run folder.
"""

import json
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from tqdm import tqdm

from explain.classifier import Classifier
from explain.model import ModelSource, load_model_folder
from explain.verdicts import NOT_SKIN, OTHER_CONDITION
from training.config import ExperimentConfig
from training.data.photos import load_pixels
from training.data.tables import print_table, read_rows
from training.model.served import cam_features_and_logits, served_predictions

OTHER = "another condition"
REFUSED = (NOT_SKIN, OTHER_CONDITION)  # the served rule's verdicts that name no class of ours
C_CHOICES = (0.003, 0.01, 0.03, 0.1)


def photo_sets(rows: list[dict]) -> dict[str, list[dict]]:
    """Each split's photos of our classes and of other conditions."""
    return {f"{split} {kind}": [r for r in rows if r["split"] == split and r[column]]
            for split in ("train", "val", "test") for kind, column in (("ours", "target_class"),
                                                                        ("other", "other_condition"))}


def cached_features(config: ExperimentConfig, classifier: Classifier, sets: dict[str, list[dict]]) -> dict:
    """Each set's pooled CAM-layer features, computed once and kept in the run folder."""
    path = config.out / "other_output_features.npz"
    if path.is_file():
        return dict(np.load(path))
    features = {name: cam_features_and_logits(classifier.keras_model, classifier.config.cam_layer,
                                              load_pixels(rows, config))[0]
                for name, rows in tqdm(sets.items(), desc="features")}
    np.savez(path, **features)
    return features


def served_refusals(classifier: Classifier, rows: list[dict], desc: str) -> np.ndarray:
    """Which photos the served rule tells "not skin" or "another condition", through the app's own code."""
    return np.array([p.verdict in REFUSED for p in served_predictions(classifier, rows, desc)])


def fitted(features: dict, sets: dict, c: float):
    """The head over our classes and OTHER on the training split's standardised features: a function
    from a set's name to its probabilities, and the head's class order."""
    scaler = StandardScaler().fit(np.concatenate([features["train ours"], features["train other"]]))
    x = scaler.transform(np.concatenate([features["train ours"], features["train other"]]))
    y = [r["target_class"] for r in sets["train ours"]] + [OTHER] * len(sets["train other"])
    head = LogisticRegression(C=c, max_iter=5000, class_weight="balanced").fit(x, y)
    return lambda name: head.predict_proba(scaler.transform(features[name])), list(head.classes_)


def run(config: ExperimentConfig, model_dirs: list[str] = ()) -> Path:
    folder = Path(model_dirs[0])
    classifier = Classifier(load_model_folder(folder, ModelSource("folder", str(folder))))
    sets = photo_sets(read_rows(config.out / "split.csv"))
    empty = [name for name, rows in sets.items() if not rows]
    if empty:
        raise SystemExit(f"other: no photos in {', '.join(empty)}; the study needs a source with other_conditions "
                         "whose conditions fall in every split")
    features = cached_features(config, classifier, sets)
    served = {name: served_refusals(classifier, sets[name], name) for name in ("val ours", "test ours", "test other")}
    rate = float(served["val ours"].mean())
    truth = np.array([r["target_class"] for r in sets["test ours"]])
    results = {"served rule": {"ours told another condition (test)": float(served["test ours"].mean()),
                               "other conditions caught (test)": float(served["test other"].mean())}}
    for c in C_CHOICES:
        probabilities, classes = fitted(features, sets, c)
        other = classes.index(OTHER)
        threshold = float(np.quantile(probabilities("val ours")[:, other], 1 - rate))
        test = probabilities("test ours")
        ours = [i for i, name in enumerate(classes) if name != OTHER]
        results[f"explicit output, C {c}"] = {
            "threshold": threshold,
            "other conditions caught (val)": float((probabilities("val other")[:, other] > threshold).mean()),
            "ours told another condition (test)": float((test[:, other] > threshold).mean()),
            "other conditions caught (test)": float((probabilities("test other")[:, other] > threshold).mean()),
            "top-1 on ours (test)": float((np.array(classes)[ours][test[:, ours].argmax(axis=1)] == truth).mean())}
    out = config.out / "other_output.json"
    out.write_text(json.dumps({"model": str(folder), "rate on validation": rate, **results}, indent=2) + "\n",
                   encoding="utf-8")
    print_table([{"rule": name, **{k: f"{v:.3f}" for k, v in r.items()}} for name, r in results.items()])
    return out

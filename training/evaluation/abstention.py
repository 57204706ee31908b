"""When the model should not name a class, and which of three things it says instead, each verdict
on its own scores (explain.verdicts): "not a skin photo" (the skin read-out, fitted here), "another
condition" (the energy of the logits, or the similarity to the nearest class mean, computed here)
or "unsure between A and B" (the top probability).

The skin read-out is a logistic regression on the pooled CAM-layer features: skin photos (the
training split, ours and other conditions', and half of each folder named a skin folder in
`skin_readout_folders`) against half of each folder named not skin there (everyday photos). The
other half of those folders is held out and measured. Every threshold comes from validation photos
only. The report gives each score's risk-coverage curve and AURC on the test photos, and how well
it separates the test split from photos the model must not know (other conditions held out whole,
out-of-taxonomy photos, the configured folders' held-out halves).
"""

import hashlib
from pathlib import Path

import keras
import numpy as np
from sklearn.linear_model import LogisticRegression

from explain.verdicts import ANSWER, KINDS, SCORE_NAMES, VERDICT_OF, scores, unit, verdicts
from training.config import ExperimentConfig, each_score_coverage, expand
from training.data.photos import IMAGE_SUFFIXES, load_pixels
from training.data.tables import read_rows
from training.evaluation import metrics
from training.model.backbones import cam_layer_of
from training.model.served import cam_features_and_logits

NON_SKIN_SKIMAGE = ("coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "colorwheel",
                    "camera", "moon", "coins", "clock", "page", "text", "grass", "gravel", "brick", "retina")

def skimage_photos(folder: Path) -> Path:
    """scikit-image's bundled sample pictures that are not skin, written once as PNG files."""
    import skimage.data
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for name in NON_SKIN_SKIMAGE:
        if not (folder / f"{name}.png").is_file():
            Image.fromarray(getattr(skimage.data, name)()).save(folder / f"{name}.png")
    return folder


def held_out_half(path: Path) -> bool:
    """Which half of a folder a photo is in, by a hash of its name: the same on every run."""
    return hashlib.sha256(path.name.encode()).digest()[0] % 2 == 1


def folder_photos(config: ExperimentConfig, name: str) -> list[dict]:
    """The photos of one configured folder ("skimage": scikit-image's pictures that are not skin), each
    marked `fits_readout` when the skin read-out is fitted on it and `shows_people` from a manifest
    beside the images that says so."""
    folder = config.evaluation.ood_folders[name]
    folder = skimage_photos(config.out / "ood_skimage") if folder == "skimage" else Path(expand(folder))
    manifest = folder.parent / "manifest.csv"
    people = {Path(r["path"]).name: r.get("shows_people") == "1" for r in read_rows(manifest)} \
        if manifest.is_file() else {}
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    return [{"path": str(p), "source": name, "shows_people": people.get(p.name, False),
             "fits_readout": name in config.evaluation.skin_readout_folders and not held_out_half(p)} for p in files]


def ood_photos(config: ExperimentConfig, rows: list[dict]) -> dict[str, list[dict]]:
    """Out-of-distribution sets, all held out: out-of-taxonomy photos of each source, and each
    configured folder less the half that fits the skin read-out (photos showing people apart)."""
    sets = {}
    for source in sorted({r["source"] for r in rows if r["split"] == "ood"}):
        sets[f"{source} conditions outside the taxonomy"] = [r for r in rows if r["split"] == "ood" and r["source"] == source]
    for name in config.evaluation.ood_folders:
        held = [r for r in folder_photos(config, name) if not r["fits_readout"]]
        sets[name] = [r for r in held if not r["shows_people"]]
        if any(r["shows_people"] for r in held):
            sets[f"{name}, showing people"] = [r for r in held if r["shows_people"]]
    return sets


def fit_skin_readout(config: ExperimentConfig, model: keras.Model, train_features: np.ndarray) -> np.ndarray | None:
    """The skin read-out's weights on unit CAM-layer features, then its bias: skin photos (the training
    split's features, `train_features`, and the fitting halves of the skin folders) against the
    fitting halves of the not-skin folders, classes balanced. None without a not-skin folder."""
    if all(config.evaluation.skin_readout_folders.values()):
        return None
    features, is_skin = [train_features], [np.ones(len(train_features))]
    for name, skin in config.evaluation.skin_readout_folders.items():
        fitting = [r for r in folder_photos(config, name) if r["fits_readout"]]
        pixels = load_pixels(fitting, config)
        features.append(cam_features_and_logits(model, cam_layer_of(config.model.backbone), pixels)[0])
        is_skin.append(np.full(len(fitting), float(skin)))
    readout = LogisticRegression(C=config.evaluation.skin_readout_c, max_iter=5000, class_weight="balanced")
    readout.fit(unit(np.concatenate(features)), np.concatenate(is_skin))
    return np.concatenate([readout.coef_[0], readout.intercept_]).astype(np.float32)


def shares(verdict: np.ndarray) -> dict:
    return {v: float(np.mean(verdict == v)) for v in KINDS}


def choose_thresholds(config: ExperimentConfig, val: dict, val_other: dict | None) -> dict:
    """Every threshold from validation photos only: the skin score's keeps skin_coverage of the
    validation skin photos (ours and other conditions'); the energy's and the similarity's each take
    half of what other_condition_coverage leaves out of ours; the top probability's then leaves
    answer_coverage of ours answered."""
    skin = np.concatenate([val["skin"]] + ([val_other["skin"]] if val_other else []))
    thresholds = dict.fromkeys(VERDICT_OF)
    if np.isfinite(skin).all():  # a model with a skin read-out
        thresholds["skin"] = metrics.threshold_for_coverage(skin, config.evaluation.skin_coverage)
    if config.evaluation.other_condition_coverage:
        each = each_score_coverage(config.evaluation.other_condition_coverage)
        for name in ("energy", "similarity"):
            thresholds[name] = metrics.threshold_for_coverage(val[name], each)
    if config.evaluation.answer_coverage:
        kept = verdicts(val, thresholds) == ANSWER
        share = min(1.0, config.evaluation.answer_coverage / max(kept.mean(), 1e-9))
        thresholds["top_probability"] = metrics.threshold_for_coverage(val["top_probability"][kept], share)
    return thresholds


def abstention(config: ExperimentConfig, model: keras.Model, temperature: float, outputs: dict, labels: dict,
               rows: list[dict], names: list[str]) -> tuple[dict, np.ndarray | None, np.ndarray]:
    """The skin read-out and the class means from training photos, every threshold from validation only; for each score
    its risk-coverage curve and AURC on the test photos (and on validation, which picks the unsure
    score); the verdicts and AUROC of each score on every held-out set; and how often a photo of a
    class in `harmful_mistakes` is answered as one of the classes it must not be mistaken for.

    `outputs` maps train/val/test (and other_train/other_val/other_test) to cam_features_and_logits()'s
    outputs. Returns the report, the skin read-out and the class means."""
    train_features = np.concatenate([outputs[s][0] for s in ("train", "other_train") if s in outputs])
    readout = fit_skin_readout(config, model, train_features)
    means = metrics.class_means(outputs["train"][0], labels["train"], outputs["train"][1].shape[1])

    def scored(split_outputs):
        return scores(*split_outputs, temperature, readout, means)

    split_scores = {split: scored(outputs[split]) for split in outputs if split not in ("train", "other_train")}
    thresholds = choose_thresholds(config, split_scores["val"], split_scores.get("other_val"))
    test = split_scores["test"]
    correct = {s: outputs[s][1].argmax(axis=1) == labels[s] for s in ("val", "test")}
    test_verdicts = verdicts(test, thresholds)
    answered = test_verdicts == ANSWER
    test_rows = rows_of(rows, "test")
    result = {
        "thresholds": thresholds,
        "scores": {name: SCORE_NAMES[name] for name in VERDICT_OF},
        "coverages": {"skin": config.evaluation.skin_coverage,
                      "other_condition": config.evaluation.other_condition_coverage,
                      "answer": config.evaluation.answer_coverage},
        "test_coverage": float(np.mean(answered)),
        "test_accuracy": float(np.mean(correct["test"])),
        "test_accuracy_when_answering": float(np.mean(correct["test"][answered])) if answered.any() else float("nan"),
        "test_verdicts": shares(test_verdicts),
        "test_verdicts_by_source": {s: shares(test_verdicts[[r["source"] == s for r in test_rows]])
                                    for s in sorted({r["source"] for r in test_rows})},
        "accuracy_at_coverage": metrics.accuracy_at_coverage(test["top_probability"], correct["test"]),
        "risk_coverage": {SCORE_NAMES[k]: metrics.risk_coverage(test[k], correct["test"]) for k in SCORE_NAMES},
        "validation_aurc": {SCORE_NAMES[k]: metrics.risk_coverage(split_scores["val"][k], correct["val"])["aurc"]
                            for k in SCORE_NAMES},
        "harmful_mistakes": harmful_mistakes(config, outputs["test"][1], test_verdicts, test_rows, names),
        "ood": {},
    }
    sets = {"other conditions held out whole (test split)": split_scores.get("other_test")}
    for name, ood_rows in ood_photos(config, rows).items():
        if ood_rows:
            sets[name] = scored(cam_features_and_logits(model, cam_layer_of(config.model.backbone),
                                                        load_pixels(ood_rows, config), config.evaluation.tta))
    for name, ood in sets.items():
        if ood is None:
            continue
        result["ood"][name] = {
            "n": len(ood["top_probability"]), "verdicts": shares(verdicts(ood, thresholds)),
            "auroc_by_score": {SCORE_NAMES[k]: metrics.ood_auroc(test[k], ood[k]) for k in SCORE_NAMES}}
    return result, readout, means


def rows_of(rows: list[dict], split: str) -> list[dict]:
    """A split's photos of the classes, in the order evaluate predicts them."""
    return [r for r in rows if r["split"] == split and r["target_class"]]


def harmful_mistakes(config: ExperimentConfig, logits: np.ndarray, verdict: np.ndarray, test_rows: list[dict],
                     names: list[str]) -> dict:
    """For each class of `harmful_mistakes` the model knows, per source: how many test photos, and the
    share answered (verdict ANSWER) as one of the classes it must not be mistaken for."""
    result = {}
    top = np.array(names)[logits.argmax(axis=1)]
    for name, wrong in config.evaluation.harmful_mistakes.items():
        if name not in names:
            continue
        for source in sorted({r["source"] for r in test_rows if r["target_class"] == name}):
            keep = np.array([r["target_class"] == name and r["source"] == source for r in test_rows])
            result.setdefault(name, {})[source] = {
                "n": int(keep.sum()), "answered_as": wrong,
                "share": float(np.mean((verdict[keep] == ANSWER) & np.isin(top[keep], wrong)))}
    return result

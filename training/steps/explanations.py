"""Explanations (a study, not part of `all`): how faithful each CAM method's maps are, and
whether they pass the sanity checks, on the held-out test photos, through the app's own code.

On every test photo (or a seeded sample of `explanation_photos`), for every method and map
resolution: the deletion and insertion areas against the random mask's (explain.faithfulness),
how often hiding the map's top 20% lowers the answer more than hiding a random 20% (the
sentence the app shows), and two sanity checks (Adebayo et al.,
NeurIPS 2018): the Spearman rank correlation of each map with the same map after the model's
top (the `logits` layer) is re-initialised, and with the map of another class. A map that hardly
changes when the weights it should depend on are randomised, or when another class is
explained, fails. And where each map puts its weight: on the outer ring of cells (where zero
padding acts), for the test photos and for a plain grey photo, which shows nothing. Writes
`explanations.json` (resumable photo by photo) and puts its table into the folder's model card in place
(and into `card_path` when the folder is the bundled one).
"""

import json
from pathlib import Path

import keras
import numpy as np
from scipy.stats import spearmanr
from tqdm import tqdm

from explain import faithfulness
from explain.cams import METHODS
from explain.card import EXPLANATIONS_HEADING, TRUST_HEADING
from explain.classifier import Classifier
from explain.model import LoadedModel, ModelSource, load_model_folder
from training.config import ExperimentConfig
from training.data.photos import read_photo
from training.data.tables import read_rows
from training.report.card import cards_of, explanations_section, put_section, trust_section

SANITY_SEED = 7


def with_random_top(loaded: LoadedModel, seed: int = SANITY_SEED) -> LoadedModel:
    """The same model with its last Dense layer (the head) re-initialised (the first step of Adebayo et al.'s cascade)."""
    model = keras.models.clone_model(loaded.keras_model)
    model.set_weights(loaded.keras_model.get_weights())
    logits = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)][-1]
    rng = np.random.default_rng(seed)
    kernel, bias = logits.get_weights()
    limit = np.sqrt(6 / sum(kernel.shape))  # Glorot uniform, as Keras initialises it
    logits.set_weights([rng.uniform(-limit, limit, kernel.shape).astype(np.float32), np.zeros_like(bias)])
    return LoadedModel.from_keras(model, loaded.labels, loaded.config, loaded.source, loaded.skin_readout, loaded.class_means)


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rho of two maps; 1.0 when either is constant and they are equal, 0.0 otherwise."""
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 1.0 if np.array_equal(a, b) else 0.0
    return float(spearmanr(a.ravel(), b.ravel()).statistic)


def sanity(classifier: Classifier, randomized: Classifier, pixels: np.ndarray, explanation,
           resolution: str) -> dict:
    """The two sanity correlations of one map: with the same map from the model whose top was
    re-initialised (`with_random_top`), and with the map of the second most likely class."""
    second = int(explanation.prediction.probabilities.argsort()[::-1][1])
    shuffled = randomized.explain_pixels(pixels, explanation.method, explanation.target_index, resolution).cam
    other = classifier.explain_pixels(pixels, explanation.method, second, resolution).cam
    return {"rho_random_top": rank_correlation(explanation.cam, shuffled),
            "rho_other_class": rank_correlation(explanation.cam, other)}


def edge_cells(cam: np.ndarray) -> dict:
    """How much of a map lies on its outer ring of cells, and whether its hottest cell does, against
    the ring's share of the cells: zero padding can light up a CNN's border cells whatever the photo shows."""
    ring = np.ones(cam.shape, bool)
    ring[1:-1, 1:-1] = False
    hottest = np.unravel_index(int(np.argmax(cam)), cam.shape)
    return {"edge_share": float(cam[ring].sum() / max(cam.sum(), 1e-12)), "hottest_on_edge": float(ring[hottest]),
            "edge_cells": float(ring.mean())}


def photo_results(classifier: Classifier, randomized: Classifier, pixels: np.ndarray) -> dict:
    """Every method and resolution on one photo: faithfulness and the two sanity correlations."""
    top = classifier.predict_pixels(pixels).top_index
    results = {}
    for resolution in classifier.layers:
        explanations = {m: classifier.explain_pixels(pixels, m, top, resolution) for m in METHODS}
        curves = faithfulness.curves(classifier, pixels, {m: e.cam for m, e in explanations.items()}, top)
        for method, explanation in explanations.items():
            check = faithfulness.check(classifier, pixels, explanation)
            results[f"{method} | {resolution}"] = {
                "deletion": curves[method].deletion_area, "insertion": curves[method].insertion_area,
                "random_deletion": curves["random"].deletion_area, "random_insertion": curves["random"].insertion_area,
                "beats_random_at_20": check.beats_random,
                **sanity(classifier, randomized, pixels, explanation, resolution),
                **edge_cells(explanation.cam),
            }
    return results


def summarize(per_photo: dict, classifier: Classifier) -> dict:
    """Means over photos, per method and resolution, and the share of a grey photo's map on the edge ring."""
    keys = next(iter(per_photo.values())).keys()
    grey = classifier.pixels(classifier.grey_photo())
    table = {}
    for key in keys:
        values = {k: [photo[key][k] for photo in per_photo.values()] for k in next(iter(per_photo.values()))[key]}
        method, resolution = key.split(" | ")
        grey_map = classifier.explain_pixels(grey, method, None, resolution).cam
        table[key] = {"method": method, "grid": classifier.grid(resolution), "resolution": resolution,
                      "squares": classifier.squares(resolution), **{k: float(np.mean(v)) for k, v in values.items()},
                      "grey_edge_share": edge_cells(grey_map)["edge_share"]}
    return {"photos": len(per_photo), "table": table}


def model_folder(config: ExperimentConfig) -> Path:
    return Path(config.publish.bundle_dir) if config.publish.bundle_dir else config.out / "model"


def run(config: ExperimentConfig, force: bool = False) -> Path:
    out = config.out / "explanations.json"
    split = config.out / "split.csv"
    if not split.is_file():
        raise FileNotFoundError(f"{split} is missing: run `python -m training split --config ...` first "
                                "(curate and split are seeded, so they give the model's own test photos again).")
    folder = model_folder(config)
    loaded = load_model_folder(folder, ModelSource("folder", str(folder)))
    keras.utils.disable_interactive_logging()
    classifier, randomized = Classifier(loaded), Classifier(with_random_top(loaded))
    done = json.loads(out.read_text()) if out.is_file() and not force else {"per_photo": {}}
    rows = [r for r in read_rows(split) if r["split"] == "test" and r["target_class"]]
    sample = config.evaluation.explanation_photos
    if sample and len(rows) > sample:  # a seeded sample, the same every run
        picked = np.random.default_rng(config.seed).choice(len(rows), sample, replace=False)
        rows = [rows[i] for i in sorted(picked)]
    for row in tqdm([r for r in rows if r["path"] not in done["per_photo"]], desc="explanations", unit="photo"):
        pixels = classifier.pixels(read_photo(row["path"]))  # as the app sees it: no box blanked
        done["per_photo"][row["path"]] = photo_results(classifier, randomized, pixels)
        if len(done["per_photo"]) % 20 == 0:
            out.write_text(json.dumps(done) + "\n", encoding="utf-8")
    done["summary"] = summarize(done["per_photo"], classifier)
    out.write_text(json.dumps(done) + "\n", encoding="utf-8")
    for path in cards_of(config, folder):
        text = put_section(path.read_text(encoding="utf-8"), TRUST_HEADING, trust_section(done["summary"]))
        path.write_text(put_section(text, EXPLANATIONS_HEADING, explanations_section(done["summary"])), encoding="utf-8")
        print(f"explanations: card section written into {path}")
    for key, r in done["summary"]["table"].items():
        print(f"{key:28s} deletion {r['deletion']:.3f} (random {r['random_deletion']:.3f})  insertion "
              f"{r['insertion']:.3f} (random {r['random_insertion']:.3f})  beats random {r['beats_random_at_20']:.0%}  "
              f"rho random top {r['rho_random_top']:.2f}  rho other class {r['rho_other_class']:.2f}  "
              f"on the edge ring ({r['edge_cells']:.0%} of cells): {r['edge_share']:.0%} of the map, hottest cell "
              f"{r['hottest_on_edge']:.0%}; grey photo {r['grey_edge_share']:.0%}")
    return out

"""The CAM methods, their faithfulness and their sanity, on the tiny model trained by the pipeline."""

import json

import numpy as np
import pytest
import tensorflow as tf
from conftest import map_alone
from PIL import Image, ImageFilter
from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus
from tf_keras_vis.layercam import Layercam
from tf_keras_vis.scorecam import Scorecam
from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
from tf_keras_vis.utils.scores import CategoricalScore

from explain import faithfulness
from explain.cams import METHODS, GradientCam, activations_and_logits, forward_and_backward, normalize
from explain.classifier import Classifier
from explain.images import load_photo
from explain.overlay import upsample
from explain.page import method_choices, sanity_failures
from explain.service import Service
from explain.settings import Settings
from training.data.tables import read_rows
from training.report.card import sanity_passes
from training.steps.explanations import edge_cells, rank_correlation, sanity, with_random_top


def photo(path: str) -> Image.Image:
    return load_photo(path, 10**8, 10**8)


def reference_cam(model, method: str, pixels, class_index: int, layer: str) -> np.ndarray:
    """The same map computed by tf-keras-vis, the reference implementation."""
    visualizer, options = {"Grad-CAM++": (GradcamPlusPlus, {}), "LayerCAM": (Layercam, {}),
                           "Score-CAM": (Scorecam, {"max_N": METHODS["Score-CAM"].channels})}[method]
    cam = visualizer(model, model_modifier=ReplaceToLinear(), clone=True)(  # logits: Scorecam applies softmax itself
        CategoricalScore([class_index]), pixels, penultimate_layer=layer, seek_penultimate_conv_layer=False,
        expand_cam=False, normalize_cam=False, **options)
    return normalize(np.asarray(cam)[0])


def well_conditioned(classifier, pixels, resolution: str, floor: float = 5e-4) -> bool:
    """Whether Grad-CAM++'s closed form is stable on this photo: its weight of a location is
    g^2 / (2 g^2 + g^3 sum(A)), which explodes where 2 + g sum(A) nears 0; there, float rounding
    (tf-keras-vis scales every gradient by exp(score) first) decides the map, not the method."""
    model = activations_and_logits(classifier.keras_model, classifier.layers[resolution])
    _, activations, gradients = forward_and_backward(model, tf.constant(pixels), tf.constant(-1))
    g, total = gradients.numpy(), activations.numpy().sum(axis=(1, 2), keepdims=True)
    nonzero = g != 0
    return bool((np.abs(2 + g * total)[nonzero]).min() >= floor) if nonzero.any() else True


@pytest.mark.parametrize("resolution", ["coarse", "fine"])
@pytest.mark.parametrize("method", ["Grad-CAM++", "LayerCAM", "Score-CAM"])
def test_fast_maps_match_tf_keras_vis(classifier, test_photos, method, resolution):
    """Each method, run eagerly as tf-keras-vis runs, gives tf-keras-vis's map (the classifier's traced
    pass is held to the method by the test below: a traced pass's fused kernels move the gradients by a
    fraction of a percent, which Grad-CAM++'s closed form can blow up where 2 + g sum(A) nears 0)."""
    outputs = activations_and_logits(classifier.keras_model, classifier.layers[resolution])
    compared = 0
    for path, _ in test_photos[:12]:
        if compared == 6:
            break
        pixels = classifier.pixels(photo(path))
        target = classifier.predict_pixels(pixels).top_index
        ours = normalize(METHODS[method].run(outputs, tf.constant(pixels), tf.constant(target))[1].numpy())
        reference = reference_cam(classifier.keras_model, method, pixels, target, classifier.layers[resolution])
        assert ours.shape == reference.shape == ((3, 3) if resolution == "coarse" else (6, 6))
        if reference.std() > 0 and (method != "Grad-CAM++" or well_conditioned(classifier, pixels, resolution)):
            assert np.corrcoef(ours.ravel(), reference.ravel())[0, 1] >= 0.99, path
            compared += 1
    assert compared >= 4


@pytest.mark.parametrize("method", [m for m in METHODS if issubclass(METHODS[m], GradientCam)])
def test_the_fused_pass_gives_the_methods_own_map(classifier, test_photos, method):
    """The classifier folds each gradient method into its prediction pass; the method alone agrees."""
    pixels = classifier.pixels(photo(test_photos[3][0]))
    for resolution in classifier.layers:
        fused = classifier.explain_pixels(pixels, method, 1, resolution)
        alone = map_alone(method, classifier.keras_model, classifier.layers[resolution], pixels, 1)
        np.testing.assert_allclose(fused.cam, alone, atol=1e-5)
        np.testing.assert_allclose(fused.prediction.probabilities, classifier.predict_pixels(pixels).probabilities,
                                   atol=1e-6)


@pytest.mark.parametrize("method", list(METHODS))
def test_each_method_maps_the_class_it_is_asked_for(classifier, test_photos, method):
    """Not a constant map, and not the same map for another class."""
    differs = 0
    for path, _ in test_photos[:6]:
        rings = classifier.explain(photo(path), method, target="Rings", resolution="coarse")
        stripes = classifier.explain(photo(path), method, target="Stripes", resolution="coarse")
        assert rings.target == "Rings" and rings.target_index == 1 and rings.method == method
        assert rings.cam.shape == (3, 3) and rings.cam.min() == 0.0
        assert rings.cam.max() in (0.0, 1.0)  # all zero where nothing in the photo speaks for the class
        differs += not np.allclose(rings.cam, stripes.cam, atol=0.05)
    assert differs >= 4


def test_a_finer_map_has_twice_the_grid(classifier, test_photos):
    assert classifier.layers == {"coarse": "out_relu", "fine": "block_13_expand_relu"}
    assert classifier.grid("fine") == "6x6 (block_13_expand_relu)"
    assert classifier.explain(photo(test_photos[0][0])).cam.shape == (6, 6)  # the page's default, everywhere
    with pytest.raises(ValueError, match="Unknown map resolution 'finest'; this model offers coarse, fine"):
        classifier.explain(photo(test_photos[0][0]), resolution="finest")


def test_the_faithfulness_check_hides_what_it_says(classifier, test_photos):
    """Rebuild the masked copies independently and score them one by one."""
    pixels = classifier.pixels(photo(test_photos[0][0]))
    explanation = classifier.explain_pixels(pixels)
    check = faithfulness.check(classifier, pixels, explanation)
    size = pixels.shape[1]
    blurred = np.asarray(Image.fromarray(pixels[0].astype(np.uint8)).filter(
        ImageFilter.GaussianBlur(faithfulness.BLUR_RADIUS)), dtype=np.float32)
    stretched = upsample(explanation.cam, (size, size)).ravel()
    top = np.zeros(size * size, bool)  # the 20% of pixels the map ranks highest (ties: first in reading order)
    top[np.argsort(-stretched, kind="stable")[: round(0.2 * size * size)]] = True
    hidden = np.where(top.reshape(size, size)[..., None], blurred, pixels[0])
    expected = classifier.predict_pixels(hidden[None]).probabilities[explanation.target_index]
    assert check.map_hidden == pytest.approx(expected, abs=1e-4)
    assert check.probability == pytest.approx(explanation.prediction.probabilities.max(), abs=1e-6)
    assert check.target == explanation.target and check.fraction == 0.2
    assert faithfulness.check(classifier, pixels, explanation) == check  # seeded by the photo: repeatable


def test_random_masks_hide_blocks_of_the_asked_share(test_photos, classifier):
    pixels = classifier.pixels(photo(test_photos[0][0]))[0]
    first, second = faithfulness.random_order(pixels, 0), faithfulness.random_order(pixels, 1)
    assert sorted(first) == list(range(pixels.shape[0] * pixels.shape[1])) and not np.array_equal(first, second)
    mask = np.zeros(pixels.shape[0] * pixels.shape[1], bool)
    mask[first[: round(0.25 * mask.size)]] = True
    blocks = mask.reshape(pixels.shape[:2]).reshape(6, 16, 6, 16).mean(axis=(1, 3))
    assert set(np.unique(blocks)) <= {0.0, 1.0} and blocks.mean() == pytest.approx(0.25, abs=1 / 36)


def test_curves_run_from_the_photo_to_the_blurred_photo(classifier, test_photos):
    pixels = classifier.pixels(photo(test_photos[1][0]))
    explanation = classifier.explain_pixels(pixels)
    curves = faithfulness.curves(classifier, pixels, {"Grad-CAM": explanation.cam}, explanation.target_index)
    blurred = classifier.probabilities(np.stack([np.asarray(Image.fromarray(pixels[0].astype(np.uint8)).filter(
        ImageFilter.GaussianBlur(faithfulness.BLUR_RADIUS)), dtype=np.float32)]))[0, explanation.target_index]
    for curve in curves.values():
        assert curve.shares == (0.0, *faithfulness.CURVE_FRACTIONS, 1.0)
        assert curve.deletion[0] == pytest.approx(explanation.prediction.probabilities.max(), abs=1e-5)
        assert curve.deletion[-1] == pytest.approx(blurred, abs=1e-5) == curve.insertion[0]
        assert curve.insertion[-1] == pytest.approx(curve.deletion[0], abs=1e-6)
        assert 0.0 <= curve.deletion_area <= 1.0 and 0.0 <= curve.insertion_area <= 1.0
    assert set(curves) == {"Grad-CAM", "random"}


def test_randomising_the_top_changes_only_the_head(tiny_model_dir, classifier):
    """Only the last Dense layer (`fine_logits`: the tiny model, like the shipped one, scores fine conditions)."""
    randomized = with_random_top(classifier.loaded)
    before, after = classifier.keras_model, randomized.keras_model
    for layer in before.layers:
        same = all(np.array_equal(a, b) for a, b in zip(layer.get_weights(), after.get_layer(layer.name).get_weights()))
        assert same == (layer.name != "fine_logits"), layer.name


def sanity_correlations(classifier: Classifier, paths: list[str], method: str, resolution: str) -> dict:
    """The study's two sanity correlations (training.steps.explanations.sanity), median over the photos."""
    randomized = Classifier(with_random_top(classifier.loaded))
    rows = []
    for path in paths:
        pixels = classifier.pixels(photo(path))
        rows.append(sanity(classifier, randomized, pixels, classifier.explain_pixels(pixels, method, None, resolution),
                           resolution))
    return {key: float(np.median([row[key] for row in rows])) for key in rows[0]}


@pytest.mark.parametrize("method", list(METHODS))
def test_the_sanity_checks_tell_the_methods_apart(classifier, test_photos, method):
    """A method passes when its maps change (median rank correlation below training.report.card's
    SANITY_THRESHOLD) both when the model's top is re-initialised and when another class is explained.
    On the tiny model's coarse maps Grad-CAM passes and the other three fail, as on the shipped model
    at both resolutions (tests/test_shipped_model.py)."""
    correlations = sanity_correlations(classifier, [p for p, _ in test_photos[:8]], method, "coarse")
    assert sanity_passes(correlations) == (method == "Grad-CAM"), correlations


def test_rank_correlation_of_maps():
    a = np.arange(9.0).reshape(3, 3)
    assert rank_correlation(a, a * 2 + 1) == pytest.approx(1.0)
    assert rank_correlation(a, -a) == pytest.approx(-1.0)
    assert rank_correlation(np.zeros((3, 3)), a) == 0.0


def test_edge_cells_tell_a_map_on_the_border_from_a_centred_one():
    centred, corner = np.zeros((7, 7)), np.zeros((7, 7))
    centred[3, 3] = 1.0
    corner[0, 6], corner[3, 3] = 1.0, 0.5
    assert edge_cells(centred) == {"edge_share": 0.0, "hottest_on_edge": 0.0, "edge_cells": 24 / 49}
    assert edge_cells(corner)["hottest_on_edge"] == 1.0 and edge_cells(corner)["edge_share"] == pytest.approx(2 / 3)
    assert edge_cells(np.ones((14, 14)))["edge_share"] == pytest.approx(52 / 196)  # a flat map: the ring's share


def test_the_explanations_study_writes_its_table_into_the_card(pipeline_run, tiny_model_dir, tmp_path):
    from training.__main__ import main

    config = json.loads((pipeline_run / "config.json").read_text())
    folder = tmp_path / "model"
    folder.mkdir()
    for item in tiny_model_dir.iterdir():
        (folder / item.name).write_bytes(item.read_bytes())
    config["output_dir"], config["publish"]["bundle_dir"] = str(tmp_path), str(folder)
    (tmp_path / "split.csv").write_bytes((pipeline_run / "split.csv").read_bytes())
    (tmp_path / "explain.json").write_text(json.dumps(config))
    assert main(["explanations", "--config", str(tmp_path / "explain.json")]) == 0
    result = json.loads((tmp_path / "explanations.json").read_text())
    tests = [r for r in read_rows(pipeline_run / "split.csv") if r["split"] == "test" and r["target_class"]]
    assert result["summary"]["photos"] == len(result["per_photo"]) == len(tests)
    table = result["summary"]["table"]
    assert set(table) == {f"{m} | {r}" for m in METHODS for r in ("coarse", "fine")}
    for key, row in table.items():  # each figure is its mean over the photos, and the baseline is one for all
        for name in ("beats_random_at_20", "rho_random_top", "deletion"):
            assert row[name] == pytest.approx(np.mean([photo[key][name] for photo in result["per_photo"].values()]))
        assert row["random_insertion"] == pytest.approx(table["Grad-CAM | coarse"]["random_insertion"])
    card = (folder / "README.md").read_text()
    assert "## How far the heatmaps can be trusted\nMeasured on" in card
    assert "## Faithfulness and sanity of the heatmaps" in card and "| Score-CAM | 6x6 (block_13_expand_relu) |" in card
    assert "| sanity | hottest on the edge (ring) | grey photo on the edge |" in card
    assert card.count("## Disclaimer") == 1
    main(["explanations", "--config", str(tmp_path / "explain.json")])  # again: the sections are replaced, not added
    assert (folder / "README.md").read_text().count("## How far the heatmaps can be trusted") == 1
    # the page labels the methods that failed at every map size here: the model's own measurement
    failing = [m for m in METHODS if not any(sanity_passes(table[f"{m} | {r}"]) for r in ("coarse", "fine"))]
    assert "Score-CAM" in failing and "Grad-CAM" not in failing
    service = Service.start(Settings(model_dir=str(folder), fallback_to_bundled=False))
    assert sanity_failures(service) == failing
    for label, method in method_choices(service):
        assert ("fails sanity checks" in label) == (method in failing)

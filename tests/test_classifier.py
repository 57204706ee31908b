"""The classifier and its explanations, on the tiny model trained by the pipeline."""

import io

import matplotlib
import numpy as np
import pytest
from conftest import map_alone
from PIL import Image
from tf_keras_vis.gradcam import Gradcam
from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
from tf_keras_vis.utils.scores import CategoricalScore

from explain.cam_layers import find_cam_layer
from explain.cams import METHODS, normalize
from explain.classifier import Prediction
from explain.images import decode_photo, fit_to_model, load_photo
from explain.overlay import heat_image, jpeg_bytes, overlay, upsample
from explain.verdicts import (
    ANSWER,
    LONGEST_LIST,
    NOT_SKIN,
    OTHER_CONDITION,
    SHORTLIST,
    UNSURE,
    VERDICTS,
    prediction_sets,
)


def photo(path: str) -> Image.Image:
    return load_photo(path, 10**8, 10**8)


def test_probabilities_cover_every_class_and_sum_to_one(classifier, test_photos):
    for path, _ in test_photos:
        prediction = classifier.predict(photo(path))
        assert prediction.probabilities.shape == (3,)
        assert prediction.probabilities.sum() == pytest.approx(1.0, abs=1e-5)
        everything = prediction.top_k(3)
        assert list(everything.values()) == sorted(prediction.probabilities, reverse=True)  # most likely first
        for name, probability in everything.items():
            assert probability == prediction.probabilities[classifier.labels.index(name)]
        assert list(prediction.top_k(2)) == list(everything)[:2] and list(everything)[0] == prediction.top_label


def test_top_k_orders_the_classes_by_probability():
    """Label order and probability order disagree here, so only a real sort passes."""
    prediction = Prediction(["A", "B", "C", "D", "E"], np.array([0.05, 0.3, 0.1, 0.4, 0.15]), None, 0.4)
    assert prediction.top_k(5) == {"D": 0.4, "B": 0.3, "E": 0.15, "C": 0.1, "A": 0.05}
    assert list(prediction.top_k(2)) == ["D", "B"] and list(prediction.top_k(0)) == ["D"]


def test_tiny_model_recognises_held_out_photos(classifier, test_photos):
    correct = [classifier.predict(photo(path)).top_label == truth for path, truth in test_photos]
    # three classes: chance is 0.33. Trained from scratch on about 60 photos, the tiny model gets 57% to 86%
    # of its 14 test photos, depending on which photos the seeded split holds out.
    assert np.mean(correct) >= 0.5


def test_fast_gradcam_matches_tf_keras_vis(classifier, test_photos):
    """The one-pass Grad-CAM is the same map tf-keras-vis computes, ~15x faster."""
    reference = Gradcam(classifier.keras_model, model_modifier=ReplaceToLinear(), clone=True)
    compared = 0
    for path, _ in test_photos[:8]:
        pixels = classifier.pixels(photo(path))
        fused = classifier.explain_pixels(pixels, resolution="coarse")
        alone = map_alone("Grad-CAM", classifier.keras_model, classifier.cam_layer, pixels, fused.prediction.top_index)
        slow = reference(CategoricalScore([fused.prediction.top_index]), pixels,
                         penultimate_layer=classifier.cam_layer, seek_penultimate_conv_layer=False, expand_cam=False)
        slow = normalize(np.asarray(slow)[0])
        assert fused.cam.shape == alone.shape == slow.shape == (3, 3)
        np.testing.assert_allclose(fused.cam, alone, atol=1e-5)  # the fused pass and the method agree
        if slow.std() > 0:
            assert np.corrcoef(fused.cam.ravel(), slow.ravel())[0, 1] >= 0.99
            compared += 1
    assert compared >= 4


def test_fast_path_prediction_equals_the_plain_forward_pass(classifier, test_photos):
    pixels = classifier.pixels(photo(test_photos[1][0]))
    prediction = classifier.explain_pixels(pixels).prediction
    activations, logits = (t.numpy()[0] for t in classifier.activations_and_logits["coarse"](pixels))
    scaled = logits / classifier.temperature
    expected = np.exp(scaled - scaled.max()) / np.exp(scaled - scaled.max()).sum()
    assert np.allclose(prediction.probabilities, expected, atol=1e-5)
    # each verdict's score, by hand: the skin read-out on the unit pooled features, the energy, the top probability
    features = activations.mean(axis=(0, 1))
    readout = classifier.loaded.skin_readout
    assert prediction.scores["skin"] == pytest.approx(features / np.linalg.norm(features) @ readout[:-1] + readout[-1],
                                                      abs=1e-4)
    assert prediction.scores["energy"] == pytest.approx(np.log(np.exp(logits - logits.max()).sum()) + logits.max(),
                                                        abs=1e-4)
    assert prediction.scores["top_probability"] == pytest.approx(expected.max(), abs=1e-5)
    means = classifier.class_means
    assert prediction.scores["similarity"] == pytest.approx(
        (means @ features / np.linalg.norm(features)).max(), abs=1e-5)
    plain = classifier.predict_pixels(pixels)
    assert np.allclose(prediction.probabilities, plain.probabilities, atol=1e-6)
    assert plain.scores == pytest.approx(prediction.scores, abs=1e-5)


def test_requests_reuse_the_compiled_pass(classifier, test_photos):
    for path, _ in test_photos[:3]:
        classifier.explain(photo(path))
        classifier.explain(photo(path), target="Dots")
    assert classifier._fused_pass("Grad-CAM", "coarse").experimental_get_tracing_count() == 1
    assert classifier._forward.experimental_get_tracing_count() == 1
    assert classifier._fused_pass("Score-CAM", "coarse") is classifier._fused_pass("Score-CAM", "coarse")


def test_unknown_method_or_class_is_refused(classifier, test_photos):
    with pytest.raises(ValueError, match="Unknown CAM method"):
        classifier.explain(photo(test_photos[0][0]), "Magic-CAM")
    with pytest.raises(ValueError, match="Unknown class 'Melanoma'"):
        classifier.explain(photo(test_photos[0][0]), target="Melanoma")


def test_cam_layer_is_found_when_config_names_none(classifier):
    assert find_cam_layer(classifier.keras_model) == "out_relu"


THRESHOLDS = {"skin": 0.0, "energy": 2.0, "similarity": 0.6, "top_probability": 0.5}


def predicted(labels, probabilities, skin=1.0, energy=3.0, similarity=0.8, thresholds=THRESHOLDS, shortlist=None):
    probabilities = np.asarray(probabilities)
    return Prediction(labels, probabilities, {"skin": skin, "energy": energy, "similarity": similarity,
                                              "top_probability": probabilities.max()}, thresholds, shortlist)


@pytest.mark.parametrize("skin,energy,similarity,top,expected", [
    (-1.0, 1.0, 0.5, 0.2, NOT_SKIN),  # not skin comes first, whatever the other scores say
    (-1.0, 5.0, 0.9, 0.95, NOT_SKIN),
    (1.0, 1.5, 0.9, 0.9, OTHER_CONDITION),  # a confident class does not hide a photo unlike ours
    (1.0, 3.0, 0.5, 0.9, OTHER_CONDITION),  # either of the two scores is enough
    (1.0, 3.0, 0.8, 0.45, UNSURE),
    (1.0, 3.0, 0.8, 0.9, ANSWER),
])
def test_the_verdicts_are_checked_in_order_each_on_its_own_score(skin, energy, similarity, top, expected):
    rest = (1 - top) / 2
    prediction = predicted(["A", "B", "C"], [top, rest, rest], skin, energy, similarity)
    assert prediction.verdict == expected
    assert prediction.uncertain == (expected != ANSWER)


def test_a_verdict_without_a_threshold_is_never_given():
    off = dict.fromkeys(THRESHOLDS)
    assert predicted(["A", "B", "C"], [0.4, 0.3, 0.3], -5.0, -5.0, -1.0, thresholds=off).verdict == ANSWER


LAC = {"score": "lac", "threshold": 0.8, "coverage": 0.9, "measured": {"answer": 0.83, "shortlist": 0.91}}
FIVE = ["Acne", "Skin_Tag", "C", "D", "E"]


@pytest.mark.parametrize("threshold,probabilities,expected,listed", [
    (0.8, [0.85, 0.05, 0.04, 0.03, 0.03], ANSWER, ["Acne"]),  # only one class at or above 1 - 0.8
    (0.8, [0.5, 0.3, 0.1, 0.06, 0.04], SHORTLIST, ["Acne", "Skin_Tag"]),
    (0.8, [0.3, 0.25, 0.2, 0.15, 0.1], UNSURE, ["Acne", "Skin_Tag", "C"]),
    (0.88, [0.3, 0.25, 0.2, 0.15, 0.1], UNSURE, ["Acne", "Skin_Tag", "C", "D"]),  # four: it cannot narrow it down
    (0.7, [0.25, 0.25, 0.2, 0.15, 0.15], UNSURE, []),  # none at or above 0.3: nor can it here
])
def test_the_shortlist_names_one_class_a_few_or_says_it_cannot_narrow_it_down(threshold, probabilities, expected,
                                                                              listed):
    prediction = predicted(FIVE, probabilities, thresholds=dict(THRESHOLDS, top_probability=None),
                           shortlist=dict(LAC, threshold=threshold))
    assert prediction.listed == listed
    assert prediction.verdict == (expected if len(listed) != LONGEST_LIST else SHORTLIST)


def test_a_photo_unlike_ours_is_never_given_a_list():
    prediction = predicted(FIVE, [0.85, 0.05, 0.04, 0.03, 0.03], energy=1.0, shortlist=LAC)
    assert prediction.listed == ["Acne"] and prediction.verdict == OTHER_CONDITION


def test_verdict_data_names_the_kind_and_classes_in_plain_text():
    from explain.page import label_value, verdict, verdict_markdown

    unsure = verdict(predicted(["Acne", "Skin_Tag", "C"], [0.4, 0.35, 0.25]))
    assert unsure["kind"] == UNSURE and unsure["classes"] == ["Acne", "Skin_Tag", "C"]
    assert unsure["text"] == ("The model cannot narrow it down; its closest are Acne (40%), Skin Tag (35%) or C (25%). "
                              "Not a diagnosis.")
    assert verdict_markdown(unsure).startswith("**The model cannot narrow it down; its closest are Acne (40%)")
    other = verdict(predicted(["Acne", "B", "C"], [0.8, 0.1, 0.1], energy=1.0))
    assert other["kind"] == OTHER_CONDITION and other["classes"] == ["Acne"]
    assert other["text"] == (f"{VERDICTS[OTHER_CONDITION].summary.format(n=3)} If it were one of the 3, the closest "
                             "would be Acne. Not a diagnosis.")
    not_skin = verdict(predicted(["Acne", "B", "C"], [0.8, 0.1, 0.1], skin=-2.0))
    assert not_skin["kind"] == NOT_SKIN and not_skin["text"].startswith(VERDICTS[NOT_SKIN].summary)
    assert not_skin["scores"]["skin"] == -2.0 and not_skin["thresholds"]["skin"] == 0.0
    answer = verdict(predicted(["Acne", "B", "C"], [0.8, 0.1, 0.1]))
    assert answer["kind"] == ANSWER and answer["classes"] == ["Acne"] and answer["text"].startswith("Most likely: Acne")
    assert answer["coverage"] is None and answer["hit_rate"] is None  # no shortlist, no stated rate
    assert all("*" not in v["text"] for v in (unsure, other, not_skin, answer))
    # under "not skin" and "another condition" no bar looks like an answer; under the others the top k show
    for prediction in (predicted(["Acne", "B", "C"], [0.8, 0.1, 0.1], skin=-2.0),
                       predicted(["Acne", "B", "C"], [0.8, 0.1, 0.1], energy=1.0)):
        assert label_value(prediction, 3) == {"headline": VERDICTS[prediction.verdict].headline, "confidences": {}}
    assert label_value(predicted(["Acne", "B", "C"], [0.8, 0.15, 0.05]), 2) == {
        "headline": "Acne", "confidences": pytest.approx({"Acne": 0.8, "B": 0.15})}


def test_a_shortlist_states_its_measured_hit_rate():
    from explain.page import HIT_RATE_WORDS, headline, verdict

    open_thresholds = dict(THRESHOLDS, top_probability=None)
    listed = predicted(FIVE, [0.5, 0.3, 0.1, 0.06, 0.04], thresholds=open_thresholds, shortlist=LAC)
    data = verdict(listed)
    assert data["kind"] == SHORTLIST and data["classes"] == ["Acne", "Skin_Tag"] and headline(listed) == "One of: Acne or Skin Tag"
    assert data["text"] == ("One of: Acne (50%) or Skin Tag (30%). " + HIT_RATE_WORDS[SHORTLIST].format(share="91%")
                            + " Not a diagnosis.")
    assert data["coverage"] == 0.9 and data["hit_rate"] == 0.91
    one = verdict(predicted(FIVE, [0.85, 0.05, 0.04, 0.03, 0.03], thresholds=open_thresholds, shortlist=LAC))
    assert one["text"].startswith("Most likely: Acne (85%). Single answers like this were right for 83%")


@pytest.mark.parametrize("score", ["lac", "aps"])
def test_the_apps_prediction_sets_are_mapies(score):
    """The app applies the stored threshold without MAPIE: its sets are the ones MAPIE predicts."""
    from training.evaluation.shortlist import calibrated_threshold, conformalized

    rng = np.random.default_rng(1)
    logits = rng.normal(size=(400, 6)) * 2
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = np.array([rng.choice(6, p=p) for p in probabilities])
    threshold = calibrated_threshold(probabilities[:200], labels[:200], score, 0.9)
    mapie = conformalized(probabilities[:200], labels[:200], score, 0.9)
    sets = mapie.predict_set(probabilities[200:], conformity_score_params={"include_last_label": True})[1][:, :, 0]
    ours = prediction_sets(probabilities[200:], score, threshold)
    assert ours.sum() > 200 and np.array_equal(ours, sets)
    assert 0.8 < ours[np.arange(200), labels[200:]].mean() <= 1.0  # about the stated coverage on new photos


def test_a_library_left_out_of_the_calibration_shows_its_own_hit_rate():
    """Two libraries, one whose photos the model reads far worse: calibrated with both, the list's hit
    rate is about the stated one overall; calibrated without the hard library, the list is too short for
    it and holds the right class far less often, which is what the report must show."""
    from training.evaluation.shortlist import calibrated_threshold, library_left_out, set_report

    rng = np.random.default_rng(2)
    rows, probabilities, labels = [], [], []
    for library, sharpness in (("easy", 4.0), ("hard", 0.8)):
        for i in range(600):
            label = int(rng.integers(6))
            logits = rng.normal(size=6) + sharpness * np.eye(6)[label] * (1 + rng.random())
            probabilities.append(np.exp(logits) / np.exp(logits).sum())
            labels.append(label)
            rows.append({"source": library, "cluster": f"{library}{i}"})
    probabilities, labels = np.array(probabilities), np.array(labels)
    half = np.arange(len(rows)) % 2 == 0
    left_out = library_left_out(probabilities, labels, rows, half, "lac", 0.9)
    assert set(left_out) == {"easy", "hard"} and left_out["hard"]["n"] == 300
    both = calibrated_threshold(probabilities[half], labels[half], "lac", 0.9)
    hard = ~half & (np.array([r["source"] for r in rows]) == "hard")
    with_it = set_report(prediction_sets(probabilities[hard], "lac", both), labels[hard])["coverage"]
    assert left_out["hard"]["coverage"] < with_it - 0.1  # its own hit rate falls when no photo like it calibrated
    assert left_out["easy"]["coverage"] >= 0.85  # the easy library keeps its hit rate on the hard one's list


def test_parent_logits_sum_the_fine_probabilities():
    from explain.layers import ParentLogits

    fine = np.random.default_rng(0).normal(size=(4, 5)).astype(np.float32)
    parents = np.asarray(ParentLogits([0, 1, 0, 2, 1])(fine))
    p = np.exp(fine) / np.exp(fine).sum(axis=1, keepdims=True)
    summed = np.stack([p[:, [0, 2]].sum(1), p[:, [1, 4]].sum(1), p[:, 3]], axis=1)
    assert np.allclose(np.exp(parents) / np.exp(parents).sum(axis=1, keepdims=True), summed, atol=1e-6)


def test_overlay_keeps_the_photo_shape_and_blends():
    picture = Image.new("RGB", (1200, 800), (0, 0, 0))
    cam = np.array([[0.0, 1.0], [0.0, 0.0]])
    result = overlay(picture, cam, opacity=0.5)
    assert result.size == (512, 341)
    assert overlay(picture, cam, opacity=0.0).getpixel((400, 100)) == (0, 0, 0)
    assert result.getpixel((500, 5)) != result.getpixel((5, 335))  # hot corner differs from cold corner
    assert result.getpixel((5, 335)) == (0, 0, 0)  # where the map is cold the photo is left untinted
    hot = np.asarray(heat_image(cam, (512, 341)).getpixel((511, 0)))
    assert np.abs(np.asarray(result.getpixel((511, 0))) - 0.5 * hot).max() <= 2  # the full opacity where hottest
    with pytest.raises(ValueError, match="opacity"):
        overlay(picture, cam, opacity=1.5)


def test_palette_heatmap_matches_calling_the_colormap_per_pixel():
    cam = np.random.default_rng(0).random((7, 7)).astype(np.float32)
    fast = np.asarray(heat_image(cam, (448, 300)), dtype=int)
    reference = np.round(matplotlib.colormaps["jet"](upsample(cam, (448, 300)))[..., :3] * 255).astype(int)
    difference = np.abs(fast - reference)
    assert fast.shape == reference.shape == (300, 448, 3)
    # levels quantised before stretching, and matplotlib floors where the table rounds: at most
    # two of 256 levels apart, about 5 RGB units each where jet is steepest
    assert difference.max() <= 12 and difference.mean() < 1.0


def test_overlay_is_sent_as_a_faithful_jpeg():
    picture = Image.new("RGB", (448, 448), (90, 60, 40))
    heatmap = overlay(picture, np.random.default_rng(1).random((7, 7)), 0.45)
    decoded = Image.open(io.BytesIO(jpeg_bytes(heatmap)))
    assert decoded.format == "JPEG" and decoded.size == heatmap.size
    assert np.abs(np.asarray(decoded, dtype=int) - np.asarray(heatmap, dtype=int)).mean() < 3


def test_a_large_jpeg_is_decoded_smaller_into_nearly_the_same_model_input(test_photos):
    small = photo(test_photos[0][0])
    big = small.resize((small.width * 12, small.height * 12), Image.Resampling.BILINEAR)
    data = io.BytesIO()
    big.save(data, "JPEG", quality=95)
    full = decode_photo(data.getvalue(), 10**9)
    quick = decode_photo(data.getvalue(), 10**9, at_least=512)
    assert full.size == big.size
    assert min(quick.size) >= 512 and quick.width * quick.height <= full.width * full.height / 4
    # the shipped model's answers on real photos: tests/test_shipped_model.py
    assert np.abs(fit_to_model(full, 224) - fit_to_model(quick, 224)).mean() < 1.0  # of 255 levels


def test_two_requests_at_once_get_the_same_answers_as_one_at_a_time(classifier, test_photos):
    """The app computes two requests at a time (SKIN_CONCURRENCY=2), sharing the compiled
    passes and the tf-keras-vis objects."""
    from concurrent.futures import ThreadPoolExecutor

    jobs = [(photo(path), method) for path, _ in test_photos[:2] for method in METHODS] * 2
    one_at_a_time = [classifier.explain(picture, method) for picture, method in jobs]
    with ThreadPoolExecutor(max_workers=2) as pool:
        at_once = list(pool.map(lambda job: classifier.explain(*job), jobs))
    for alone, together in zip(one_at_a_time, at_once):
        assert alone.target == together.target
        assert np.allclose(alone.prediction.probabilities, together.prediction.probabilities, atol=1e-5)
        assert np.allclose(alone.cam, together.cam, atol=1e-4)

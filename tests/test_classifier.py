"""The classifier and its explanations, on the tiny model trained by the pipeline."""

import numpy as np
import pytest
from PIL import Image
from tf_keras_vis.gradcam import Gradcam
from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
from tf_keras_vis.utils.scores import CategoricalScore

from explain.cams import METHODS, normalize
from explain.classifier import Prediction, find_cam_layer
from explain.images import load_photo
from explain.overlay import overlay


def photo(path: str) -> Image.Image:
    return load_photo(path, 10**8, 10**8)


def test_probabilities_cover_every_class_and_sum_to_one(classifier, test_photos):
    prediction = classifier.predict(photo(test_photos[0][0]))
    assert prediction.probabilities.shape == (3,)
    assert prediction.probabilities.sum() == pytest.approx(1.0, abs=1e-5)
    top = prediction.top_k(2)
    assert list(top) == [prediction.top_label, *list(top)[1:]] and len(top) == 2


def test_tiny_model_recognises_held_out_photos(classifier, test_photos):
    correct = [classifier.predict(photo(path)).top_label == truth for path, truth in test_photos]
    assert np.mean(correct) >= 0.6  # three classes: chance is 0.33


def test_fast_gradcam_matches_tf_keras_vis(classifier, test_photos):
    """The one-pass Grad-CAM is the same map tf-keras-vis computes, ~15x faster."""
    reference = Gradcam(classifier.keras_model, model_modifier=ReplaceToLinear(), clone=True)
    for path, _ in test_photos[:4]:
        pixels = classifier.pixels(photo(path))
        probabilities, fast = classifier.cam_method("Grad-CAM")(pixels, None)
        slow = reference(CategoricalScore([int(np.argmax(probabilities))]), pixels,
                         penultimate_layer=classifier.cam_layer, seek_penultimate_conv_layer=False, expand_cam=False)
        slow = normalize(np.asarray(slow)[0])
        assert fast.shape == slow.shape == (3, 3)
        if slow.std() > 0:
            assert np.corrcoef(fast.ravel(), slow.ravel())[0, 1] >= 0.99


def test_fast_path_probabilities_equal_the_plain_forward_pass(classifier, test_photos):
    pixels = classifier.pixels(photo(test_photos[1][0]))
    probabilities, _ = classifier.cam_method("Grad-CAM")(pixels, None)
    logits = classifier.activations_and_logits(pixels)[1].numpy()[0] / classifier.temperature
    expected = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    assert np.allclose(probabilities, expected, atol=1e-5)
    assert np.allclose(probabilities, classifier.probabilities(pixels), atol=1e-6)


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_gives_a_normalised_map_for_a_chosen_class(classifier, test_photos, method):
    result = classifier.explain(photo(test_photos[2][0]), method, target="Rings")
    assert result.target == "Rings" and result.method == method
    assert result.cam.shape == (3, 3) and 0.0 <= result.cam.min() and result.cam.max() <= 1.0


def test_requests_reuse_the_compiled_pass(classifier, test_photos):
    gradcam = classifier.cam_method("Grad-CAM")
    for path, _ in test_photos[:3]:
        classifier.explain(photo(path))
        classifier.explain(photo(path), target="Dots")
    assert gradcam._pass.experimental_get_tracing_count() == 1
    assert classifier._probabilities.experimental_get_tracing_count() == 1
    assert classifier.cam_method("LayerCAM") is classifier.cam_method("LayerCAM")


def test_unknown_method_or_class_is_refused(classifier, test_photos):
    with pytest.raises(ValueError, match="Unknown CAM method"):
        classifier.explain(photo(test_photos[0][0]), "Magic-CAM")
    with pytest.raises(ValueError, match="Unknown class 'Melanoma'"):
        classifier.explain(photo(test_photos[0][0]), target="Melanoma")


def test_cam_layer_is_found_when_config_names_none(classifier):
    assert find_cam_layer(classifier.keras_model) == "out_relu"


def test_uncertain_when_top_probability_is_below_threshold():
    labels = ["A", "B", "C"]
    assert Prediction(labels, np.array([0.5, 0.3, 0.2]), 0.6).uncertain
    assert not Prediction(labels, np.array([0.7, 0.2, 0.1]), 0.6).uncertain
    assert not Prediction(labels, np.array([0.4, 0.3, 0.3]), None).uncertain


def test_overlay_keeps_the_photo_shape_and_blends():
    picture = Image.new("RGB", (1200, 800), (0, 0, 0))
    cam = np.array([[0.0, 1.0], [0.0, 0.0]])
    result = overlay(picture, cam, opacity=0.5)
    assert result.size == (512, 341)
    assert overlay(picture, cam, opacity=0.0).getpixel((400, 100)) == (0, 0, 0)
    assert result.getpixel((500, 5)) != result.getpixel((5, 335))  # hot corner differs from cold corner
    with pytest.raises(ValueError, match="opacity"):
        overlay(picture, cam, opacity=1.5)

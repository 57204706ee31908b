"""The model the app ships with: it loads, it is small, and it answers real photos sensibly."""

import io
import random
from pathlib import Path

import numpy as np
import pytest
from conftest import ARTIFACTS, ROOT, SHARED, launch_app
from PIL import Image

from explain import page
from explain.service import Service
from explain.settings import BUNDLED_MODEL_DIR, Settings
from explain.verdicts import ANSWER, NOT_SKIN, OTHER_CONDITION, VERDICTS

pytestmark = pytest.mark.skipif(not (BUNDLED_MODEL_DIR / "model.keras").is_file(),
                                reason="no bundled model in default_model/ yet")
DERMNET = SHARED / "data" / "dermnetnz-subset"
SD198 = SHARED / "data" / "sd198-subset"


@pytest.fixture(scope="module")
def service():
    return Service.start(Settings())


def test_bundled_model_is_the_default_and_fits_in_a_space_repo(service):
    assert service.classifier.loaded.source.kind == "bundled"
    assert sum(f.stat().st_size for f in BUNDLED_MODEL_DIR.iterdir()) < 10_000_000  # the whole folder
    assert len(service.labels) == 13 and "Skin_Tag" not in service.labels and "Healthy" not in service.labels
    assert "Naevus" in service.labels  # a mole has a name of its own (issue #19)
    card = (ROOT / "model_card.md").read_text()
    assert card == (BUNDLED_MODEL_DIR / "README.md").read_text()
    assert "## Disclaimer" in card and "CC BY-NC-ND" in card and "research and academic use" in card


def test_non_skin_photo_is_said_not_to_be_skin(service):
    labels, verdict = page.predict_outputs(service, ROOT / "examples" / "coffee-cup.jpg")
    assert verdict["kind"] == NOT_SKIN and verdict["text"].startswith(VERDICTS[NOT_SKIN].summary)
    # the big type says so, not a class name, and no bar looks like an answer
    assert labels == {"headline": VERDICTS[NOT_SKIN].headline, "confidences": {}}


@pytest.mark.skipif(not (SHARED / "data" / "imagenet-samples").is_dir() or not SD198.is_dir(),
                    reason=f"everyday and clinical photos not found under {SHARED}")
def test_everyday_photos_are_not_skin_and_skin_photos_are(service):
    """The skin read-out on the half of the ImageNet samples it was not fitted on (those showing people
    too), and on SD-198's photos of conditions outside the classes (which fitted nothing)."""
    from training.evaluation.abstention import held_out_half
    from training.steps.curate import load_taxonomy

    everyday = [p for p in sorted((SHARED / "data" / "imagenet-samples" / "images").iterdir()) if held_out_half(p)]
    taxonomy = load_taxonomy(str(ROOT / "training" / "data" / "taxonomies" / "sd198.json"))
    outside = [name for name, target in taxonomy.items() if target is None]
    skin = [p for name in outside for p in sorted((SD198 / "images" / name).glob("*.jpg"))][::3]
    said = {name: np.mean([service.classifier.predict(service.read(p)).verdict == NOT_SKIN for p in photos])
            for name, photos in (("everyday", everyday), ("skin", skin))}
    assert len(everyday) >= 300 and len(skin) >= 90
    # docs/model.md: 96.4% of the everyday photos without people, 25 of 30 with them, 0.3% of SD-198's
    # other conditions; issue #19's 97% is missed since the fine-tune
    assert said["everyday"] >= 0.95 and said["skin"] <= 0.02, said


@pytest.mark.skipif(not (SHARED / "data" / "normal-skin-web").is_dir(), reason=f"normal-skin photos not under {SHARED}")
def test_most_healthy_skin_photos_are_told_another_condition_not_that_they_are_not_skin(service):
    """Healthy skin is outside the taxonomy but is skin: on the half of the web photos that did not fit
    the skin read-out, most get no answer, and few are called "not a photo of skin"."""
    from training.evaluation.abstention import held_out_half

    photos = [p for p in sorted((SHARED / "data" / "normal-skin-web" / "images").rglob("*.jp*g")) if held_out_half(p)]
    verdicts = [service.classifier.predict(service.read(p)).verdict for p in photos]
    assert len(photos) >= 40 and np.mean([v != ANSWER for v in verdicts]) >= 0.7
    assert np.mean([v == NOT_SKIN for v in verdicts]) <= 0.2


@pytest.mark.skipif(not DERMNET.is_dir() or not SD198.is_dir(), reason=f"clinical photos not found under {SHARED}")
def test_held_out_clinical_photos_are_classified_well_above_chance(service, tmp_path):
    """The shipped model's own held-out test photos: curate and split are seeded, so they are
    recomputed here exactly as in training. Photos go through the app's path (watermark left in).
    Photos of other conditions, held out whole, are answered less often than ours."""
    from training.config import ExperimentConfig
    from training.data.tables import read_rows
    from training.evaluation.shortlist import calibrating
    from training.steps import curate, split

    config = ExperimentConfig.load(ROOT / "configs" / "default_model.json", output_dir=str(tmp_path))
    curate.run(config)
    split.run(config)
    test = [r for r in read_rows(tmp_path / "split.csv") if r["split"] == "test" and r["target_class"]]
    # the phone examples are test photos: their patients trained nothing (examples/README.md)
    tested = {Path(r["path"]).read_bytes() for r in test if r["source"] == "pad-ufes"}
    assert all((ROOT / "examples" / name).read_bytes() in tested for name in ("naevus-phone.jpg", "carcinoma-phone.jpg"))
    photos = random.Random(0).sample(test, 80)
    correct = [service.classifier.predict(service.read(r["path"])).top_label == r["target_class"] for r in photos]
    assert np.mean(correct) >= 0.3  # twelve classes: chance is about 0.08
    other = [r for r in read_rows(tmp_path / "split.csv") if r["split"] == "test" and r["other_condition"]]
    refused = {name: np.mean([service.classifier.predict(service.read(r["path"])).verdict in (NOT_SKIN, OTHER_CONDITION)
                              for r in random.Random(0).sample(rows, 80)]) for name, rows in (("ours", test),
                                                                                              ("other", other))}
    assert refused["ours"] <= 0.15 and refused["other"] >= refused["ours"] + 0.1
    # the stored shortlist on the test photos that did not calibrate it: about the coverage it states
    measuring = [r for r in test if not calibrating(r)]
    listed = [service.classifier.predict(service.read(r["path"])).listed for r in measuring]
    stated = service.classifier.config.shortlist["coverage"]
    assert len(measuring) >= 150 and np.mean([r["target_class"] in named for r, named in zip(measuring, listed)]) \
        >= stated - 0.05


@pytest.mark.skipif(not SD198.is_dir(), reason=f"clinical photos not found under {SHARED}")
def test_phone_size_photos_decoded_smaller_get_the_same_answer(service):
    """Uploads are decoded at reduced scale (JPEG DCT scaling) down to what the model and the
    heatmap need; on real photos enlarged 4x, the answers match decoding them in full."""
    from explain.images import decode_photo

    paths = sorted(SD198.glob("images/*/*.jpg"))[::40][:12]
    agree, biggest_change = [], 0.0
    for path in paths:
        photo = Image.open(path).convert("RGB")
        big = io.BytesIO()
        photo.resize((photo.width * 4, photo.height * 4), Image.Resampling.BICUBIC).save(big, "JPEG", quality=92)
        full = service.classifier.predict(decode_photo(big.getvalue(), 10**9)).probabilities
        quick = service.classifier.predict(service.read(big.getvalue())).probabilities
        agree.append(full.argmax() == quick.argmax())
        biggest_change = max(biggest_change, float(np.abs(full - quick).max()))
    assert np.mean(agree) >= 0.9 and biggest_change <= 0.03, biggest_change  # docs/performance.md (measured 0.021)


def test_app_serves_the_bundled_model_end_to_end(tmp_path):
    from gradio_client import Client, handle_file

    ARTIFACTS.mkdir(exist_ok=True)
    process, url = launch_app({"SKIN_MODEL_DIR": "", "SKIN_MODEL_REPO": ""}, ARTIFACTS / "app_bundled.log")
    try:
        client = Client(url, verbose=False)
        said = client.predict(api_name="/model_info")
        assert said["source"]["kind"] == "bundled" and "the model that comes with this app" in said["text"]
        labels, heatmap, verdict, _, _ = client.predict(handle_file(str(ROOT / "examples" / "acne.jpg")),
                                                        "Grad-CAM", "Most likely class", 0.45, 13, "coarse",
                                                        api_name="/explain")
        assert verdict["kind"] == ANSWER and len(labels["confidences"]) == 13  # every class's bar
        assert sum(c["confidence"] for c in labels["confidences"]) == pytest.approx(1.0, abs=1e-4)
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_fallback_to_the_bundled_model_is_said_on_the_page_and_by_the_api(tmp_path):
    """A configured model that cannot be loaded, with SKIN_MODEL_FALLBACK=1: the bundled model answers
    and the page and /model_info both say why."""
    import json
    import urllib.request

    from gradio_client import Client, handle_file

    ARTIFACTS.mkdir(exist_ok=True)
    process, url = launch_app({"SKIN_MODEL_DIR": str(tmp_path / "not-a-model"), "SKIN_MODEL_FALLBACK": "1"},
                              ARTIFACTS / "app_fallback.log")
    try:
        said = Client(url, verbose=False).predict(api_name="/model_info")
        assert said["source"]["kind"] == "bundled" and "has no model.keras" in said["fallback_reason"]
        assert "could not be loaded, so the bundled model answers instead" in said["text"]
        config = json.loads(urllib.request.urlopen(url + "config").read())
        page = " ".join(str(c.get("props", {}).get("value", "")) for c in config["components"])
        assert "could not be loaded, so the bundled model answers instead" in page
        labels, _ = Client(url, verbose=False).predict(handle_file(str(ROOT / "examples" / "acne.jpg")), 3,
                                                       api_name="/predict")  # answered: its bars shown
        assert len(labels["confidences"]) == 3
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.mark.parametrize("method", ["Grad-CAM", "Grad-CAM++", "LayerCAM", "Score-CAM"])
def test_sanity_checks_on_the_clinical_examples_agree_with_the_page(service, method):
    """The shipped model on the 12 unseen clinical examples: the methods the page labels as failing
    the sanity checks (the card's study, on 300 test photos) fail them here at every resolution, and
    the others pass at the page's default. The coarse 7x7 Grad-CAM is not asserted: on these 12 it fails
    both checks (rho 0.50 and 0.53) where the 300-photo study has it pass (0.28 and 0.40); see
    docs/explanations.md."""
    from test_explanations import sanity_correlations

    from training.report.card import sanity_passes

    photos = sorted(str(p) for p in (ROOT / "examples").glob("*.jpg") if "-" not in p.stem)
    assert len(photos) == 12
    for resolution in service.classifier.layers:
        correlations = sanity_correlations(service.classifier, photos, method, resolution)
        if method in page.sanity_failures(service):
            assert not sanity_passes(correlations), (resolution, correlations)
        elif resolution == service.classifier.default_resolution:
            assert sanity_passes(correlations), (resolution, correlations)


@pytest.mark.parametrize("method", ["Grad-CAM++", "LayerCAM", "Score-CAM"])
def test_fast_maps_match_tf_keras_vis_on_real_photos(service, method):
    """The app's own compiled maps against tf-keras-vis, the reference, on the 12 clinical examples."""
    from test_explanations import reference_cam

    for path in sorted(p for p in (ROOT / "examples").glob("*.jpg") if "-" not in p.stem):
        pixels = service.classifier.pixels(service.read(path))
        for resolution in ("coarse", "fine"):
            ours = service.classifier.explain_pixels(pixels, method, None, resolution)
            reference = reference_cam(service.classifier.keras_model, method, pixels, ours.target_index,
                                      service.classifier.layers[resolution])
            assert np.corrcoef(ours.cam.ravel(), reference.ravel())[0, 1] >= 0.99, (path.name, resolution)


def examples_table(service) -> list[str]:
    """README's table of the examples, one row each: what the shipped model says about it."""
    from explain.service import example_name

    rows = []
    for path in sorted((ROOT / "examples").glob("*.jpg")):
        prediction = service.classifier.predict(service.read(path))
        said = page.verdict(prediction)
        named = ", ".join(said["classes"])
        if said["kind"] in (NOT_SKIN, OTHER_CONDITION):
            named = f"(closest: {named})"
        top = f"{prediction.top_label} {prediction.probabilities.max():.0%}"
        rows.append(f"| {example_name(path).lower()} | {said['kind']} | {named} | {top} |")
    return rows


def test_readme_table_of_the_examples_is_what_the_shipped_model_says(service):
    readme = (ROOT / "README.md").read_text()
    expected = examples_table(service)
    missing = [row for row in expected if row not in readme]
    assert not missing, "README's examples table is out of date; its rows should read:\n" + "\n".join(expected)

"""The app launched as a real process on 127.0.0.1, called the way developers will call it."""

import io
import json
import re
import subprocess
import sys
import urllib.error
import urllib.request

import numpy as np
import pytest
from bad_inputs import CASES
from conftest import ARTIFACTS, ROOT, launch_app
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from explain import page
from explain.cams import METHODS
from explain.card import TRUST_HEADING, card_section, failing_sanity
from explain.service import Service
from explain.settings import Settings
from explain.verdicts import ANSWER, KINDS, VERDICTS


def readme_snippets() -> list[str]:
    """The Python blocks README marks with <!-- api-snippet -->, exactly as written there."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.findall(r"<!-- api-snippet -->\s*```python\n(.*?)```", text, flags=re.DOTALL)


@pytest.fixture(scope="module")
def client(app_url):
    return Client(app_url, verbose=False)


@pytest.fixture(scope="module")
def photo(test_photos, tmp_path_factory) -> str:
    """One of the tiny model's held-out Rings photos, enlarged to 512 px: a photo of a class the model
    knows, so every verdict these tests meet names classes whatever the tiny model's training made of
    an everyday photo."""
    path = tmp_path_factory.mktemp("photo") / "rings.jpg"
    Image.open(next(p for p, c in test_photos if c == "Rings")).convert("RGB").resize((512, 512)).save(path)
    return str(path)



def test_readme_snippets_run_against_the_app(app_url):
    snippets = readme_snippets()
    assert len(snippets) == 3
    for snippet in snippets:
        code = snippet.replace("http://127.0.0.1:7860/", app_url)
        result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        printed = result.stdout.splitlines()  # after gradio_client's "Loaded as API" line
        assert any(line in KINDS or line.startswith("Grad-CAM: deletion area ") for line in printed)  # from the data


def test_predict_returns_top_k_label_data(client, photo):
    labels, verdict = client.predict(handle_file(photo), 2, api_name="/predict")
    kind = verdict["kind"]
    assert kind in KINDS and "*" not in verdict["text"] and verdict["text"].startswith(verdict["summary"])
    assert set(verdict["scores"]) == set(verdict["thresholds"]) == {"skin", "energy", "similarity", "top_probability"}
    assert verdict["coverage"] == 0.8  # the tiny model's shortlist, as its config states it
    # bars only when the verdict names classes, the first of them on top; the big type is the answer's
    # class, the list, or what the verdict is
    if VERDICTS[kind].names_classes:
        assert len(labels["confidences"]) == 2 and verdict["classes"][0] == labels["confidences"][0]["label"]
    else:
        assert "confidences" not in labels or not labels["confidences"]
    assert (labels["label"] == verdict["classes"][0]) == (kind == ANSWER)
    assert labels["label"].startswith(VERDICTS[kind].headline.split("{")[0])


def test_probabilities_over_all_classes_sum_to_one(client, photo):
    labels, _ = client.predict(handle_file(photo), 3, api_name="/predict")
    assert {c["label"] for c in labels["confidences"]} == {"Dots", "Rings", "Stripes"}
    assert sum(c["confidence"] for c in labels["confidences"]) == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("method", ["Grad-CAM", "Grad-CAM++", "LayerCAM", "Score-CAM"])
@pytest.mark.parametrize("resolution", ["coarse", "fine"])
def test_explain_returns_a_jpeg_overlay_and_its_faithfulness(client, photo, method, resolution):
    labels, overlay_path, verdict, sentence, numbers = client.predict(
        handle_file(photo), method, "Rings", 0.5, 3, resolution, api_name="/explain")
    overlay = Image.open(overlay_path)
    assert overlay.format == "JPEG" and overlay.size == (512, 512)  # the 512x512 photo, at most 512 a side
    assert verdict["heatmap"] == {"class": "Rings", "method": method}
    assert verdict["text"].endswith(f"The heatmap shows what drove Rings ({method}).")
    assert len(labels["confidences"]) == 3
    assert numbers["target"] == "Rings" and numbers["fraction"] == 0.2
    rings = next(c["confidence"] for c in labels["confidences"] if c["label"] == "Rings")
    assert numbers["probability"] == pytest.approx(rings, abs=1e-4)
    assert sentence.startswith("Hiding the 20% of the photo the map marks most")
    assert f"Rings from {numbers['probability']:.0%} to {numbers['map_hidden']:.0%}" in sentence
    assert ("does no better than a random mask" in sentence) == (not numbers["beats_random"])


def test_compare_shows_every_method_and_the_top_classes(client, photo, tiny_model_dir):
    gallery, numbers = client.predict(handle_file(photo), "Stripes", 0.45, "coarse", api_name="/compare")
    table = page.compare_table(numbers)  # what the page shows, drawn from the numbers
    captions = [item["caption"] for item in gallery]
    assert len(gallery) == 7 and all(Image.open(item["image"]).size == (512, 512) for item in gallery)
    for caption, method in zip(captions, ["Grad-CAM", "Grad-CAM++", "Score-CAM", "LayerCAM"]):
        assert caption.startswith(f"{method}: area ")
    assert sorted(c.split(" of ")[1].split(" (")[0] for c in captions[4:]) == ["Dots", "Rings", "Stripes"]
    assert numbers["target"] == "Stripes" and numbers["grid"] == "3x3 (out_relu)"
    assert "maps of 3x3 squares" in table and "out_relu" not in table  # plain words on the page
    assert set(numbers["methods"]) == {"Grad-CAM", "Grad-CAM++", "Score-CAM", "LayerCAM"}
    # a method whose maps failed the sanity checks in the card's study is starred
    assert numbers["fails_sanity"] == failing_sanity(tiny_model_dir / "README.md") != []
    for method, curve in numbers["methods"].items():
        assert curve["seconds"] > 0 and len(curve["deletion"]) == len(curve["shares"]) == 7
        star = "\\*" if method in numbers["fails_sanity"] else ""
        assert f"| {method}{star} | {curve['deletion_area']:.3f} |" in table
    assert "\\* fails sanity checks: hardly depends on the class." in table


def test_the_api_says_which_model_answers(app_url, client):
    info = client.predict(api_name="/model_info")
    assert info["available"] and info["name"] == "tiny-test-model" and info["classes"] == ["Dots", "Rings", "Stripes"]
    assert info["source"]["kind"] == "folder" and info["fallback_reason"] is None and "*" not in info["text"]


def test_the_page_carries_the_disclaimer_and_model(app_url, tiny_model_dir):
    config = json.loads(urllib.request.urlopen(app_url + "config").read())
    texts = " ".join(str(c.get("props", {}).get("value", "")) for c in config["components"])
    assert "tiny-test-model" in texts and "folder model at" in texts
    assert "This is not a diagnosis" in texts
    # what the tiny model's card measured about its maps, under the heatmap
    trust = card_section(tiny_model_dir / "README.md", TRUST_HEADING)
    assert trust.startswith("Measured on") and trust in texts


def test_a_model_whose_card_measured_nothing_gets_a_plain_warning_and_no_labels(tmp_path):
    service = Service.start(Settings(model_dir=str(tmp_path / "no-model-here")))
    assert service.model is None
    assert page.trust_note(service) == page.NO_TRUST_NOTE
    assert [label for label, _ in page.method_choices(service)] == list(METHODS)


@pytest.mark.parametrize("name,data,expected", [c for c in CASES if c[2]], ids=[c[0] for c in CASES if c[2]])
def test_bad_uploads_get_their_message_and_the_server_keeps_serving(client, photo, tmp_path, name, data,
                                                                   expected):
    path = tmp_path / "upload.jpg"
    path.write_bytes(data)
    with pytest.raises(AppError, match=expected):
        client.predict(handle_file(str(path)), 3, api_name="/predict")
    labels, _ = client.predict(handle_file(photo), 1, api_name="/predict")
    assert len(labels["confidences"]) == 1


def test_missing_photo_is_explained(client):
    with pytest.raises(AppError, match="No photo yet"):
        client.predict(None, 3, api_name="/predict")


def test_concurrent_identical_requests_all_get_their_heatmap(app_url, photo):
    """Identical answers share one cached file; it must never be rewritten while served."""
    from concurrent.futures import ThreadPoolExecutor

    def user(_):
        client = Client(app_url, verbose=False)
        return [open(client.predict(handle_file(photo), "Grad-CAM", "Most likely class", 0.45, 3, "coarse",
                                    api_name="/explain")[1], "rb").read() for _ in range(3)]

    with ThreadPoolExecutor(4) as pool:
        heatmaps = [data for result in pool.map(user, range(4)) for data in result]
    assert len(heatmaps) == 12 and len(set(heatmaps)) == 1  # every copy whole and identical, none truncated
    picture = Image.open(io.BytesIO(heatmaps[0]))
    picture.load()  # decodes every byte: a truncated JPEG raises here
    assert picture.size == (512, 512)


def answers(host: str, port: int) -> bool:
    """Whether something serves HTTP at host:port (127.0.0.2 is this machine too, but not 127.0.0.1)."""
    try:
        urllib.request.urlopen(f"http://{host}:{port}/", timeout=5)
        return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def default_app(tiny_model_dir):
    """The app as `python app.py` starts it, no host set, with a 100 kB upload limit."""
    process, url = launch_app({"SKIN_MODEL_DIR": str(tiny_model_dir), "SKIN_HOST": "", "GRADIO_SERVER_NAME": "",
                               "SYSTEM": "", "SKIN_MAX_UPLOAD_BYTES": "100000"}, ARTIFACTS / "app_default_host.log")
    yield url
    process.terminate()
    process.wait(timeout=30)


def test_the_app_serves_this_machine_only_by_default(default_app):
    port = int(default_app.rsplit(":", 1)[1].strip("/"))
    assert answers("127.0.0.1", port) and not answers("127.0.0.2", port)


def test_uploads_over_the_byte_limit_are_refused(default_app, tmp_path):
    """SKIN_MAX_UPLOAD_BYTES holds for every upload. Gradio's own limit is it rounded up to whole MiB
    (so the upload box shows a round figure): above that, gradio_client refuses before sending and the
    server answers a raw upload with 413; between the two, the library refuses with its own message."""
    import uuid

    rng = np.random.default_rng(0)
    huge, big, small = tmp_path / "huge.jpg", tmp_path / "big.jpg", tmp_path / "small.jpg"
    Image.fromarray(rng.integers(0, 255, (1000, 1000, 3), dtype=np.uint8)).save(huge, quality=95)
    noise = rng.integers(0, 255, (400, 400, 3), dtype=np.uint8)
    Image.fromarray(noise).save(big, quality=95)
    Image.fromarray(noise[:150, :150]).save(small, quality=95)
    assert huge.stat().st_size > 2**20 > big.stat().st_size > 100_000 > small.stat().st_size
    client = Client(default_app, verbose=False)
    with pytest.raises(ValueError, match=f"exceeds the maximum file size of {2**20} bytes"):
        client.predict(handle_file(str(huge)), 3, api_name="/predict")
    with pytest.raises(AppError, match="the limit is 0.1 MB"):
        client.predict(handle_file(str(big)), 3, api_name="/predict")
    boundary = uuid.uuid4().hex
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="huge.jpg"\r\n'
            f"Content-Type: image/jpeg\r\n\r\n").encode() + huge.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(default_app + "gradio_api/upload", data=body,
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    with pytest.raises(urllib.error.HTTPError, match="413"):
        urllib.request.urlopen(request)
    assert len(client.predict(handle_file(str(small)), 3, api_name="/predict")[0]["confidences"]) == 3


def test_gradios_own_server_variables_and_a_space_are_honoured(tiny_model_dir, monkeypatch):
    """GRADIO_SERVER_PORT works as in any Gradio app, and on a Space (SYSTEM=spaces) the app serves every
    interface; SKIN_HOST / SKIN_PORT win over GRADIO_SERVER_NAME / GRADIO_SERVER_PORT."""
    process, url = launch_app({"SKIN_MODEL_DIR": str(tiny_model_dir), "SKIN_PORT": "", "SKIN_HOST": "",
                               "GRADIO_SERVER_NAME": "", "SYSTEM": "spaces"}, ARTIFACTS / "app_space.log",
                              port_variable="GRADIO_SERVER_PORT")
    try:
        port = int(url.rsplit(":", 1)[1].strip("/"))
        assert answers("127.0.0.1", port) and answers("127.0.0.2", port)  # 0.0.0.0
        assert Client(url, verbose=False).predict(api_name="/model_info")["name"] == "tiny-test-model"
    finally:
        process.terminate()
        process.wait(timeout=30)
    for name in ("SKIN_HOST", "SKIN_PORT", "SYSTEM"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GRADIO_SERVER_NAME", "0.0.0.0")
    monkeypatch.setenv("GRADIO_SERVER_PORT", "9001")
    assert (Settings.from_env().host, Settings.from_env().port) == ("0.0.0.0", 9001)
    monkeypatch.setenv("SKIN_HOST", "127.0.0.2")
    monkeypatch.setenv("SKIN_PORT", "9002")
    assert (Settings.from_env().host, Settings.from_env().port) == ("127.0.0.2", 9002)
    for name in ("SKIN_HOST", "SKIN_PORT", "GRADIO_SERVER_NAME", "GRADIO_SERVER_PORT"):
        monkeypatch.delenv(name)
    assert (Settings.from_env().host, Settings.from_env().port) == ("127.0.0.1", 7860)


def test_an_app_without_a_model_starts_and_says_why_in_every_answer(tmp_path):
    missing = tmp_path / "no-model-here"
    process, url = launch_app({"SKIN_MODEL_DIR": str(missing)}, ARTIFACTS / "app_no_model.log")
    try:
        client = Client(url, verbose=False)
        status = client.predict(api_name="/model_info")
        assert not status["available"] and f"folder model at {missing} has no model.keras" in status["error"]
        assert status["text"].startswith("No model is available.")
        photo = handle_file(str(ROOT / "examples" / "psoriasis.jpg"))
        calls = {"/predict": (photo, 3),
                 "/explain": (photo, "Grad-CAM", "Most likely class", 0.45, 3, "coarse"),
                 "/compare": (photo, "Most likely class", 0.45, "coarse")}
        for api_name, args in calls.items():
            with pytest.raises(AppError, match="has no model.keras. A model folder needs model.keras"):
                client.predict(*args, api_name=api_name)
        config = json.loads(urllib.request.urlopen(url + "config").read())
        page = " ".join(str(c.get("props", {}).get("value", "")) for c in config["components"])
        assert "No model is available" in page
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.mark.parametrize("name,data", [(c[0], c[1]) for c in CASES if c[2] is None], ids=[c[0] for c in CASES
                                                                                         if c[2] is None])
def test_odd_but_valid_files_are_answered_as_the_library_reads_them(client, classifier, tmp_path, name, data):
    """CMYK, 16-bit, EXIF-rotated, animated, multi-page TIFF...: the API answers exactly what the
    library computes from the same bytes (first frame, rotation applied)."""
    from explain.images import load_photo

    path = tmp_path / "upload.jpg"  # the name says nothing: the bytes decide
    path.write_bytes(data)
    labels, verdict = client.predict(handle_file(str(path)), 3, api_name="/predict")
    prediction = classifier.predict(load_photo(data, 20_000_000, 40_000_000))
    expected = page.label_value(prediction, 3)["confidences"]  # none under "another condition" or "not skin"
    assert verdict["kind"] == prediction.verdict
    assert [c["label"] for c in labels.get("confidences") or []] == list(expected)
    for row in labels.get("confidences") or []:
        assert row["confidence"] == pytest.approx(expected[row["label"]], abs=1e-4)


def test_no_analytics_no_flagging_and_the_log_never_carries_the_photo(app_url, client, tmp_path):
    config = json.loads(urllib.request.urlopen(app_url + "config").read())
    assert config.get("analytics_enabled") is False
    assert not [c for c in config["components"] if "flag" in json.dumps(c).lower()]
    private = tmp_path / "jane-doe-rash-photo.jpg"
    private.write_bytes((ROOT / "examples" / "psoriasis.jpg").read_bytes())
    client.predict(handle_file(str(private)), 3, api_name="/predict")
    client.predict(handle_file(str(private)), "Grad-CAM", "Most likely class", 0.45, 3, "coarse", api_name="/explain")
    bad = tmp_path / "jane-doe-notes.jpg"
    bad.write_bytes(b"%PDF-1.4 private notes")
    with pytest.raises(AppError):
        client.predict(handle_file(str(bad)), 3, api_name="/predict")
    log = (ARTIFACTS / "app_under_test.log").read_text(errors="replace")
    assert "jane-doe" not in log and "private notes" not in log
    head = private.read_bytes()[200:260]
    assert head.hex() not in log and str(head)[2:40] not in log


def test_only_two_modules_reach_below_gradios_public_api():
    """`gradio.<module>` imports and a component's GRADIO_CACHE are Gradio's internals: an upgrade may move
    them, so they stay in explain/components.py and explain/temp_folder.py, where a failure points."""
    import ast

    fenced = {"explain/components.py", "explain/temp_folder.py"}
    reaching = set()
    for path in [ROOT / "app.py", *sorted((ROOT / "explain").glob("*.py"))]:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            module = node.module if isinstance(node, ast.ImportFrom) else None
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [module or ""]
            if any(name.startswith("gradio.") for name in names) or \
                    (isinstance(node, ast.Attribute) and node.attr == "GRADIO_CACHE"):
                reaching.add(str(path.relative_to(ROOT)))
    assert reaching == fenced

"""The app launched as a real process on 127.0.0.1, called the way developers will call it."""

import json
import re
import subprocess
import sys
import urllib.request

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from bad_inputs import CASES
from conftest import ARTIFACTS, ROOT, launch_app
from explain.settings import Settings

PHOTO = str(ROOT / "examples" / "astronaut-face.jpg")


def readme_snippets() -> list[str]:
    """The Python blocks README marks with <!-- api-snippet -->, exactly as written there."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.findall(r"<!-- api-snippet -->\s*```python\n(.*?)```", text, flags=re.DOTALL)


@pytest.fixture(scope="module")
def client(app_url):
    return Client(app_url, verbose=False)


def test_readme_snippets_run_against_the_app(app_url):
    snippets = readme_snippets()
    assert len(snippets) == 2
    for snippet in snippets:
        code = snippet.replace("http://127.0.0.1:7860/", app_url)
        result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        assert "Most likely" in result.stdout or "Uncertain" in result.stdout


def test_predict_returns_top_k_label_data(client):
    labels, verdict = client.predict(handle_file(PHOTO), 2, api_name="/predict")
    assert len(labels["confidences"]) == 2
    assert labels["label"] == labels["confidences"][0]["label"]
    assert "Not a diagnosis" in verdict or "Uncertain" in verdict


def test_probabilities_over_all_classes_sum_to_one(client):
    labels, _ = client.predict(handle_file(PHOTO), 3, api_name="/predict")
    assert {c["label"] for c in labels["confidences"]} == {"Dots", "Rings", "Stripes"}
    assert sum(c["confidence"] for c in labels["confidences"]) == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("method", ["Grad-CAM", "Score-CAM"])
def test_explain_returns_a_jpeg_overlay_of_the_photo(client, method):
    labels, overlay_path, verdict = client.predict(handle_file(PHOTO), method, "Rings", 0.5, 3, api_name="/explain")
    overlay = Image.open(overlay_path)
    assert overlay.format == "JPEG" and overlay.size == (512, 512)  # the 512x512 photo, at most 512 a side
    assert f"what drove **Rings** ({method})" in verdict
    assert len(labels["confidences"]) == 3


def test_the_api_says_which_model_answers(app_url, client):
    assert "tiny-test-model" in client.predict(api_name="/model_info")


def test_the_page_carries_the_disclaimer_and_model(app_url):
    config = json.loads(urllib.request.urlopen(app_url + "config").read())
    texts = " ".join(str(c.get("props", {}).get("value", "")) for c in config["components"])
    assert "tiny-test-model" in texts and "folder model at" in texts
    assert "This is not a diagnosis" in texts


@pytest.mark.parametrize("name,data,expected", [c for c in CASES if c[2]], ids=[c[0] for c in CASES if c[2]])
def test_bad_uploads_get_their_message_and_the_server_keeps_serving(client, tmp_path, name, data, expected):
    path = tmp_path / "upload.jpg"
    path.write_bytes(data)
    with pytest.raises(AppError, match=expected):
        client.predict(handle_file(str(path)), 3, api_name="/predict")
    labels, _ = client.predict(handle_file(PHOTO), 1, api_name="/predict")
    assert len(labels["confidences"]) == 1


def test_missing_photo_is_explained(client):
    with pytest.raises(AppError, match="No photo yet"):
        client.predict(None, 3, api_name="/predict")


def test_concurrent_identical_requests_all_get_their_heatmap(app_url):
    """Identical answers share one cached file; it must never be rewritten while served."""
    from concurrent.futures import ThreadPoolExecutor

    def user(_):
        client = Client(app_url, verbose=False)
        return [Image.open(client.predict(handle_file(PHOTO), "Grad-CAM", "Most likely class", 0.45, 3,
                                          api_name="/explain")[1]).size for _ in range(3)]

    with ThreadPoolExecutor(4) as pool:
        sizes = [size for result in pool.map(user, range(4)) for size in result]
    assert sizes == [(512, 512)] * 12


def test_gradios_own_server_variables_are_honoured(tiny_model_dir, monkeypatch):
    """GRADIO_SERVER_NAME / GRADIO_SERVER_PORT work as in any Gradio app; SKIN_HOST / SKIN_PORT win over them."""
    process, url = launch_app({"SKIN_MODEL_DIR": str(tiny_model_dir), "SKIN_PORT": "", "SKIN_HOST": "",
                               "GRADIO_SERVER_NAME": "127.0.0.1"}, ARTIFACTS / "app_gradio_port.log",
                              port_variable="GRADIO_SERVER_PORT")
    try:
        assert "tiny-test-model" in Client(url, verbose=False).predict(api_name="/model_info")
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
    monkeypatch.setenv("SYSTEM", "spaces")
    assert Settings.from_env().host == "0.0.0.0"

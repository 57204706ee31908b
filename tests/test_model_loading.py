"""Finding and loading a model folder: local, from a Hub on 127.0.0.1, from an offline cache."""

import json
import shutil
import socket
import threading
import time
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest
from conftest import ARTIFACTS, ROOT, launch_app
from hub_server import FakeHub, fetch

from explain import resolve as resolve_module
from explain.errors import ModelFormatError, ModelNotConfiguredError
from explain.model import LoadedModel, ModelSource, load_model_folder, write_model_folder
from explain.model_config import ModelConfig
from explain.resolve import resolve_model
from explain.settings import Settings

REPO = "skin-demo/tiny-model"


def folder_files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def hub(tiny_model_dir, tmp_path_factory):
    """A Hub on 127.0.0.1 holding the tiny model at two commits: the first with other labels."""
    server = FakeHub().start()
    files = folder_files(tiny_model_dir)
    first = server.commit(REPO, {**files, "labels.json": json.dumps(["Old1", "Old2", "Old3"]).encode()})
    second = server.commit(REPO, files)
    home = tmp_path_factory.mktemp("hf_home")
    env = {"HF_ENDPOINT": server.url, "HF_HOME": str(home), "HF_HUB_DISABLE_TELEMETRY": "1"}
    yield server, env, first, second
    server.stop()


def test_loads_a_local_folder(tiny_model_dir):
    loaded = load_model_folder(tiny_model_dir, ModelSource("folder", str(tiny_model_dir)))
    assert loaded.labels == ["Dots", "Rings", "Stripes"]
    assert loaded.config.image_size == 96 and loaded.keras_model.output_shape == (None, 3)
    assert "not a diagnosis" in loaded.disclaimer.lower()


def test_settings_pick_the_local_folder(tiny_model_dir):
    loaded = resolve_model(Settings(model_dir=str(tiny_model_dir), model_repo="ignored/when-a-folder-is-set"))
    assert loaded.source.kind == "folder"


def test_no_model_anywhere_says_how_to_configure_one(monkeypatch, tmp_path):
    monkeypatch.setattr(resolve_module, "BUNDLED_MODEL_DIR", tmp_path / "no_model_here")
    with pytest.raises(ModelNotConfiguredError, match="SKIN_MODEL_DIR"):
        resolve_model(Settings())


@pytest.mark.parametrize("remove,expected", [("labels.json", "has no labels.json"), ("model.keras", "has no model.keras")])
def test_incomplete_folder_is_refused(tiny_model_dir, tmp_path, remove, expected):
    copy = shutil.copytree(tiny_model_dir, tmp_path / "model")
    (copy / remove).unlink()
    with pytest.raises(ModelFormatError, match=expected):
        load_model_folder(copy, ModelSource("folder", str(copy)))


def test_label_count_must_match_outputs(tiny_model_dir, tmp_path):
    copy = shutil.copytree(tiny_model_dir, tmp_path / "model")
    (copy / "labels.json").write_text(json.dumps(["A", "B"]))
    with pytest.raises(ModelFormatError, match="3 outputs but labels.json names 2"):
        load_model_folder(copy, ModelSource("folder", str(copy)))


@pytest.mark.parametrize("change,expected", [
    ({"remove_readout": True}, "sets a skin threshold but its skin_readout.npy is missing or unreadable"),
    ({"readout": lambda r: r[:5]}, r"has shape \(5,\); it needs one finite weight per channel of the CAM layer "
                                   r"'out_relu' \(\d+\), then the bias"),
    ({"readout": lambda r: np.stack([r, r])}, r"has shape \(2, \d+\)"),
    ({"readout": lambda r: r * np.nan}, "one finite weight"),
    ({"remove_means": True}, "sets a similarity threshold but its class_means.npy is missing or unreadable"),
    ({"means": lambda m: m[:2]}, r"has shape \(2, \d+\); it needs one non-zero row per class \(3\)"),
    ({"means": lambda m: m[:, :5]}, r"has shape \(3, 5\); .* one column per channel of the CAM layer"),
    ({"means": lambda m: m * [[1], [0], [1]]}, "non-zero row"),
    ({"abstain_score": "feature_similarity"}, r"unknown key\(s\) abstain_score"),  # an older model's config
    ({"cam_layer": "no_such_layer"}, "names cam_layer 'no_such_layer', which the model does not have"),
    ({"cam_layer": "logits"}, "a CAM needs a 4-D"),
    ({"abstain_treshold": 0.5}, r"unknown key\(s\) abstain_treshold; config.json may hold name, image_size"),
    ({"preprocessing": "resnet50"}, "says preprocessing 'resnet50' but the model has no ResNet50Preprocess layer"),
    ({"preprocessing": "vgg16"}, "preprocessing 'vgg16' is not one of mobilenet_v2, resnet50"),
    ({"image_size": None}, "missing key"),
    ({"thresholds": {"skinn": 1.0}}, r"thresholds must map scores \(skin, energy, similarity, top_probability\)"),
    ({"shortlist": {"score": "raps", "threshold": 0.9}}, r"shortlist needs a score \(lac, aps\)"),
])
def test_folder_contract_is_checked_with_a_fix(tiny_model_dir, tmp_path, change, expected):
    copy = shutil.copytree(tiny_model_dir, tmp_path / "model")
    config = json.loads((copy / "config.json").read_text())
    assert config["thresholds"]["skin"] is not None  # what the pipeline publishes for the tiny model
    config_change = {k: v for k, v in change.items() if k not in ("remove_readout", "readout", "remove_means", "means")}
    if config_change:
        config = {k: v for k, v in {**config, **config_change}.items() if v is not None}
        (copy / "config.json").write_text(json.dumps(config))
    if change.get("remove_readout"):
        (copy / "skin_readout.npy").unlink()
    if "readout" in change:
        np.save(copy / "skin_readout.npy", change["readout"](np.load(copy / "skin_readout.npy")))
    if change.get("remove_means"):
        (copy / "class_means.npy").unlink()
    if "means" in change:
        np.save(copy / "class_means.npy", change["means"](np.load(copy / "class_means.npy")))

    with pytest.raises(ModelFormatError, match=expected):
        load_model_folder(copy, ModelSource("folder", str(copy)))


def test_a_folder_from_before_the_thresholds_mapping_is_read(tiny_model_dir, tmp_path):
    """A model folder published with one key per threshold (`skin_threshold`, ...) still loads, the same."""
    copy = shutil.copytree(tiny_model_dir, tmp_path / "model")
    config = json.loads((copy / "config.json").read_text())
    old = {k: v for k, v in config.items() if k not in ("thresholds", "shortlist")}
    (copy / "config.json").write_text(json.dumps(old | {f"{k}_threshold": v for k, v in config["thresholds"].items()}))
    loaded = load_model_folder(copy, ModelSource("folder", str(copy)))
    assert loaded.config.thresholds == config["thresholds"] and loaded.config.shortlist is None


def test_a_folder_written_from_memory_loads_back_the_same(tiny_model_dir, tmp_path):
    """write_model_folder and load_model_folder are the two halves of one contract."""
    original = load_model_folder(tiny_model_dir, ModelSource("folder", str(tiny_model_dir)))
    folder = write_model_folder(tmp_path / "model", original.keras_model, original.labels, original.config,
                                (tiny_model_dir / "README.md").read_text(),
                                np.load(tiny_model_dir / "skin_readout.npy"), np.load(tiny_model_dir / "class_means.npy"))
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in tiny_model_dir.iterdir())
    # stored compressed (a Space takes files under 10 MB without LFS): smaller than Keras's own archive
    original.keras_model.save(tmp_path / "plain.keras")
    with zipfile.ZipFile(folder / "model.keras") as archive:
        assert {item.compress_type for item in archive.infolist()} == {zipfile.ZIP_DEFLATED}
    assert (folder / "model.keras").stat().st_size < 0.95 * (tmp_path / "plain.keras").stat().st_size
    copy = load_model_folder(folder, ModelSource("folder", str(folder)))
    assert copy.config == original.config and copy.labels == original.labels and copy.cam_layer == "out_relu"
    np.testing.assert_allclose(copy.skin_readout, original.skin_readout, atol=1e-6)
    np.testing.assert_allclose(copy.class_means, original.class_means, atol=1e-6)
    pixels = np.random.default_rng(0).uniform(0, 255, (2, 96, 96, 3)).astype("float32")
    np.testing.assert_allclose(copy.keras_model.predict(pixels, verbose=0),
                               original.keras_model.predict(pixels, verbose=0), atol=1e-6)
    assert json.loads((folder / "config.json").read_text()) == json.loads((tiny_model_dir / "config.json").read_text())


def test_a_model_in_memory_is_checked_like_a_folder(tiny_model_dir):
    original = load_model_folder(tiny_model_dir, ModelSource("folder", str(tiny_model_dir)))
    with pytest.raises(ModelFormatError, match="skin_readout.npy of memory model at test has shape"):
        LoadedModel.from_keras(original.keras_model, original.labels, original.config, ModelSource("memory", "test"))
    plain = ModelConfig(original.config.name, 96, "mobilenet_v2")
    loaded = LoadedModel.from_keras(original.keras_model, original.labels, plain, ModelSource("memory", "test"))
    assert loaded.cam_layer == "out_relu" and loaded.skin_readout is None and "not a diagnosis" in loaded.disclaimer


def test_truncated_model_file_is_refused(tiny_model_dir, tmp_path):
    copy = shutil.copytree(tiny_model_dir, tmp_path / "model")
    data = (copy / "model.keras").read_bytes()
    (copy / "model.keras").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFormatError, match="damaged or truncated"):
        load_model_folder(copy, ModelSource("folder", str(copy)))


def test_a_model_with_python_code_is_refused(tiny_model_dir, tmp_path):
    """A Lambda layer holds pickled Python code: loading it would run that code."""
    copy = shutil.copytree(tiny_model_dir, tmp_path / "model")
    inputs = keras.Input((96, 96, 3))
    x = keras.layers.Lambda(lambda t: t * 2.0)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(x))
    outputs = keras.layers.Activation("softmax")(keras.layers.Dense(3)(x))
    keras.Model(inputs, outputs).save(copy / "model.keras")
    with pytest.raises(ModelFormatError, match="contains Python code"):
        load_model_folder(copy, ModelSource("folder", str(copy)))


def test_hub_download_honours_a_pinned_revision(hub):
    server, env, first, second = hub
    latest = fetch(env, REPO, None)
    pinned = fetch(env, REPO, first)
    assert latest["commit"] == second and pinned["commit"] == first
    assert json.loads((Path(pinned["folder"]) / "labels.json").read_text()) == ["Old1", "Old2", "Old3"]
    loaded = load_model_folder(Path(latest["folder"]), ModelSource("hub", REPO, latest["commit"]))
    assert loaded.labels == ["Dots", "Rings", "Stripes"]
    assert f"revision {second}" in loaded.source.describe()
    assert "/models--skin-demo--tiny-model/snapshots/" in latest["folder"]  # the standard cache


def test_the_app_serves_a_pinned_hub_revision_and_then_works_offline(hub, tmp_path):
    """What a Space does: SKIN_MODEL_REPO + SKIN_MODEL_REVISION, answered by the app, then the same from
    the cache with HF_HUB_OFFLINE=1 and no Hub at all."""
    from gradio_client import Client, handle_file

    _, env, first, _ = hub
    env = {**env, "HF_HOME": str(tmp_path / "hf_home"), "SKIN_MODEL_DIR": "", "SKIN_MODEL_REPO": REPO,
           "SKIN_MODEL_REVISION": first}
    photo = handle_file(str(ROOT / "examples" / "psoriasis.jpg"))
    offline = {**env, "HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9"}  # nothing listens on port 9
    for round_env, log in ((env, "app_hub.log"), (offline, "app_hub_offline.log")):
        process, url = launch_app(round_env, ARTIFACTS / log)
        try:
            client = Client(url, verbose=False)
            assert f"Hub repo {REPO} at revision {first}" in client.predict(api_name="/model_info")["text"]
            labels, _ = client.predict(photo, 3, api_name="/predict")
            assert {c["label"] for c in labels["confidences"]} == {"Old1", "Old2", "Old3"}  # the pinned commit's labels
        finally:
            process.terminate()
            process.wait(timeout=30)


@pytest.mark.parametrize("repo,revision,expected", [
    ("skin-demo/no-such-model", None, "was not found on the Hub"),
    (REPO, "0" * 40, "does not exist in skin-demo/tiny-model"),
    (REPO, "no-such-branch", "does not exist in skin-demo/tiny-model"),
])
def test_hub_failures_name_the_repo_and_the_fix(hub, repo, revision, expected):
    _, env, _, _ = hub
    result = fetch(env, repo, revision)
    assert result["error"] == "ModelDownloadError" and expected in result["message"]


def test_a_repo_without_the_model_file_is_refused_at_load(hub, tiny_model_dir):
    server, env, _, _ = hub
    server.commit("skin-demo/incomplete", {"labels.json": b'["A"]', "config.json": b"{}"})
    result = fetch(env, "skin-demo/incomplete", None)
    with pytest.raises(ModelFormatError, match="Hub repo skin-demo/incomplete .* has no model.keras"):
        load_model_folder(Path(result["folder"]), ModelSource("hub", "skin-demo/incomplete", result["commit"]))


def test_offline_cache_serves_what_was_downloaded(hub):
    server, env, first, second = hub
    fetch(env, REPO, first)
    fetch(env, REPO, None)
    offline = {**env, "HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9"}  # nothing listens there
    assert fetch(offline, REPO, first)["commit"] == first
    assert fetch(offline, REPO, None)["commit"] == second
    missing = fetch(offline, "skin-demo/never-downloaded", None)
    assert "not in the local Hugging Face cache" in missing["message"]


@pytest.fixture()
def silent_hub():
    """A "Hub" on 127.0.0.1 that accepts every connection and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held = []

    def accept():
        while True:
            try:
                held.append(server.accept()[0])
            except OSError:  # closed
                return

    threading.Thread(target=accept, daemon=True).start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    server.close()
    for connection in held:
        connection.close()


def test_a_hub_that_refuses_or_never_answers_fails_fast(hub, silent_hub, tmp_path):
    """Without a bound, huggingface_hub waits forever on a Hub that accepts and never answers."""
    _, env, _, _ = hub
    for endpoint in ("http://127.0.0.1:9", silent_hub):  # nothing listens on port 9: refused at once
        started = time.monotonic()
        result = fetch({**env, "HF_HOME": str(tmp_path), "HF_ENDPOINT": endpoint}, REPO, None, timeout=2)
        elapsed = time.monotonic() - started
        assert result["error"] == "ModelDownloadError" and REPO in result["message"]
        assert "the Hub cannot be reached (offline, or no answer within 2 s)" in result["message"]
        assert elapsed < 20, elapsed  # a fresh Python (TensorFlow imports: about 6 s) plus two 2-s tries


def test_corrupted_cached_model_is_refused_with_a_fix(hub, tmp_path):
    _, env, first, _ = hub
    folder = Path(fetch({**env, "HF_HOME": str(tmp_path / "own_cache")}, REPO, first)["folder"])  # not the shared cache
    blob = (folder / "model.keras").resolve()
    blob.write_bytes(blob.read_bytes()[:1000])
    with pytest.raises(ModelFormatError, match="Hugging Face cache"):
        load_model_folder(folder, ModelSource("hub", REPO, first))

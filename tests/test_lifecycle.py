"""Stops and restarts as a Space meets them: SIGTERM on a rebuild, kill -9 under load and in the
middle of a model download, and a request that fails inside the server (127.0.0.1 only)."""

import json
import shutil
import signal
import threading
import time

import numpy as np
import pytest
from conftest import ARTIFACTS, ROOT, files_under, launch_app, start_app
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from gradio_client.utils import Status
from hub_server import FakeHub
from PIL import Image

from explain.temp_folder import LOCK, PREFIX

BUNDLED = {"SKIN_MODEL_DIR": "", "SKIN_MODEL_REPO": ""}
REPO = "skin-demo/slow-model"


@pytest.fixture()
def visitor_photo(tmp_path):
    """An example photo under a name no example has, so its copies in the temp folder can be told apart."""
    path = tmp_path / "visitor.jpg"
    shutil.copy(ROOT / "examples" / "psoriasis.jpg", path)
    return str(path)


def stop(process) -> None:
    if process.poll() is None:
        process.terminate()
        process.wait(timeout=30)


def test_sigterm_lets_the_running_request_finish_and_exits_cleanly(tmp_path, visitor_photo):
    """SIGTERM lands during a Compare (about a second on the bundled model; one request at a time): that
    answer arrives, the request queued behind it is told to come back, and the process exits 0 within
    15 s, leaving no temp file."""
    temp, log = tmp_path / "gradio", ARTIFACTS / "app_sigterm.log"
    process, url = launch_app({**BUNDLED, "GRADIO_TEMP_DIR": str(temp), "SKIN_CONCURRENCY": "1"}, log)
    try:
        client = Client(url, verbose=False)
        running = client.submit(handle_file(visitor_photo), "Most likely class", 0.45, "fine", api_name="/compare")
        deadline = time.monotonic() + 60
        while running.status().code != Status.PROCESSING and time.monotonic() < deadline:
            time.sleep(0.01)
        waiting = client.submit(handle_file(visitor_photo), 3, api_name="/predict")
        time.sleep(0.2)  # in the queue behind the Compare
        process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        gallery, numbers = running.result(timeout=30)
        assert len(gallery) >= 4 and len(numbers["methods"]) == 4
        with pytest.raises(AppError, match="restarting and takes no new photos"):
            waiting.result(timeout=30)
        assert process.wait(timeout=30) == 0
        assert time.monotonic() - signalled < 15
    finally:
        if process.poll() is None:
            process.kill()
    text = log.read_text()
    assert "SIGTERM received" in text and "1 request(s) were running, 0 did not finish in time" in text, text[-800:]
    assert files_under(temp) == 0


def test_kill_9_under_load_then_a_restart_answers_as_before(tiny_model_dir, tmp_path, visitor_photo):
    """Killed with SIGKILL while four clients ask for maps: the next start serves the same answers, and
    deletes the folder of uploads and heatmaps the killed process left behind (no one holds its lock)."""
    temp = tmp_path / "gradio"
    env = {"SKIN_MODEL_DIR": str(tiny_model_dir), "GRADIO_TEMP_DIR": str(temp), "SKIN_CACHE_SWEEP": "2",
           "SKIN_CACHE_MAX_AGE": "5"}
    process, url = launch_app(env, ARTIFACTS / "app_kill9.log")
    before = Client(url, verbose=False).predict(handle_file(visitor_photo), 3, api_name="/predict")[0]
    answered, lock = [0], threading.Lock()

    def user():
        client = Client(url, verbose=False)
        while True:
            try:
                client.predict(handle_file(visitor_photo), "Grad-CAM", "Most likely class", 0.45, 3, "fine",
                               api_name="/explain")
            except Exception:  # the server is gone
                return
            with lock:
                answered[0] += 1

    users = [threading.Thread(target=user, daemon=True) for _ in range(4)]
    for thread in users:
        thread.start()
    deadline = time.monotonic() + 120
    while answered[0] < 12 and time.monotonic() < deadline:
        time.sleep(0.05)
    process.kill()
    assert process.wait(timeout=30) == -signal.SIGKILL
    left = {p.name for p in temp.rglob("*") if p.is_file()}
    assert answered[0] >= 12 and {"visitor.jpg", "heatmap.jpg"} <= left, (answered, left)

    process, url = launch_app(env, ARTIFACTS / "app_kill9_restart.log")
    try:
        client = Client(url, verbose=False)
        assert client.predict(handle_file(visitor_photo), 3, api_name="/predict")[0] == before
        label, heatmap, *_ = client.predict(handle_file(visitor_photo), "Grad-CAM", "Most likely class", 0.45, 3,
                                            "fine", api_name="/explain")
        assert label["confidences"] == before["confidences"] and Image.open(heatmap).size[0] > 0
        examples = {p.name for p in (ROOT / "examples").iterdir()} | {LOCK}
        deadline = time.monotonic() + 60
        while {p.name for p in temp.rglob("*") if p.is_file()} - examples and time.monotonic() < deadline:
            time.sleep(1)
        assert not {p.name for p in temp.rglob("*") if p.is_file()} - examples  # only the examples' copies
    finally:
        stop(process)
    for thread in users:
        thread.join(timeout=30)


def test_two_apps_on_one_machine_each_delete_only_their_own_files(tiny_model_dir, tmp_path, visitor_photo):
    """Two copies of the app share Gradio's temp folder, as replicas or a developer's second copy do: the
    second sweeps often, answers a photo and is stopped with SIGTERM; every file of the first (its
    examples among them) is still there and served, and the first goes on answering."""
    import urllib.request

    temp = tmp_path / "gradio"
    env = {"SKIN_MODEL_DIR": str(tiny_model_dir), "GRADIO_TEMP_DIR": str(temp), "SKIN_CACHE_SWEEP": "1",
           "SKIN_CACHE_MAX_AGE": "2"}
    first, first_url = launch_app(env, ARTIFACTS / "app_first_copy.log")
    second = None
    try:
        (own,) = temp.glob(PREFIX + "*")  # beside what Gradio itself makes there
        kept = sorted(p for p in own.rglob("*") if p.is_file())
        assert any(p.suffix == ".jpg" for p in kept)  # the examples' copies Gradio serves
        second, second_url = launch_app(env, ARTIFACTS / "app_second_copy.log")
        Client(second_url, verbose=False).predict(handle_file(visitor_photo), 3, api_name="/predict")
        time.sleep(4)  # the second copy sweeps every second for files older than 2 s
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=30) == 0
        assert list(temp.glob(PREFIX + "*")) == [own]  # the stopped copy removed its own folder only
        assert sorted(p for p in own.rglob("*") if p.is_file()) == kept
        for path in (p for p in kept if p.suffix == ".jpg"):
            with urllib.request.urlopen(f"{first_url}gradio_api/file={path}") as response:
                assert response.status == 200 and len(response.read()) == path.stat().st_size
        answer = Client(first_url, verbose=False).predict(handle_file(visitor_photo), 3, api_name="/predict")
        assert answer[0]["confidences"]
    finally:
        for process in (first, second):
            if process is not None:
                stop(process)


def test_kill_9_mid_download_never_loads_a_half_written_model(tiny_model_dir, tmp_path, visitor_photo):
    """The model file comes from the Hub stand-in slowly and the app is killed a third of the way in.
    Offline, the next start says the download was cut off and the bundled model answers; online, it
    downloads the file whole and serves the pinned revision."""
    hub = FakeHub().start()
    files = {str(p.relative_to(tiny_model_dir)): p.read_bytes() for p in tiny_model_dir.rglob("*") if p.is_file()}
    revision = hub.commit(REPO, files)
    size = len(files["model.keras"])
    hub.bytes_per_second["model.keras"] = size / 30  # half a minute for the whole file
    cache = tmp_path / "hf_home"
    env = {"HF_ENDPOINT": hub.url, "HF_HOME": str(cache), "SKIN_MODEL_DIR": "", "SKIN_MODEL_REPO": REPO,
           "SKIN_MODEL_REVISION": revision}
    try:
        process, _ = start_app(env, ARTIFACTS / "app_download_killed.log")
        deadline = time.monotonic() + 120
        while hub.sent.get("model.keras", 0) < size / 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        process.kill()
        process.wait(timeout=30)
        assert size / 3 <= hub.sent["model.keras"] < size
        snapshot = next(cache.rglob(f"snapshots/{revision}"))
        assert (snapshot / "labels.json").is_file() and not (snapshot / "model.keras").exists()
        assert list(cache.rglob("*.incomplete"))  # the half-written file, never linked into the snapshot

        offline = {**env, "HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9", "SKIN_MODEL_FALLBACK": "1"}
        process, url = launch_app(offline, ARTIFACTS / "app_download_killed_offline.log")
        try:
            status = Client(url, verbose=False).predict(api_name="/model_info")["text"]
        finally:
            stop(process)
        assert "bundled model answers instead" in status and "only partly in the local Hugging Face cache" in status
        assert "a download was interrupted" in status, status

        del hub.bytes_per_second["model.keras"]
        process, url = launch_app(env, ARTIFACTS / "app_download_resumed.log")
        try:
            client = Client(url, verbose=False)
            assert f"Hub repo {REPO} at revision {revision}" in client.predict(api_name="/model_info")["text"]
            labels, _ = client.predict(handle_file(visitor_photo), 3, api_name="/predict")
        finally:
            stop(process)
        assert {c["label"] for c in labels["confidences"]} <= set(json.loads(files["labels.json"]))
        # huggingface_hub 2.4 downloads the file again from its start (each process writes its own
        # .incomplete), so the killed one's partial blob stays in the cache, never linked
        assert (snapshot / "model.keras").read_bytes() == files["model.keras"]
    finally:
        hub.stop()


def bright_photo(path) -> str:
    pixels = np.random.default_rng(0).integers(225, 255, (120, 160, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, quality=90)
    return str(path)


def test_a_request_that_fails_inside_gets_a_clear_error_and_the_others_go_on(tiny_model_dir, tmp_path, visitor_photo):
    """tests/faulty_app.py adds a CAM method that fails inside TensorFlow on bright photos. Its requests
    get a plain error while three other clients are answered throughout; the log has the traceback,
    never the photo."""
    log = ARTIFACTS / "app_fault.log"
    process, url = launch_app({"SKIN_MODEL_DIR": str(tiny_model_dir)}, log, script=ROOT / "tests" / "faulty_app.py")
    bright = bright_photo(tmp_path / "jane-doe-bright.jpg")
    expected = Client(url, verbose=False).predict(handle_file(visitor_photo), 3, api_name="/predict")[0]
    answers, stop_users = [], threading.Event()

    def user():
        client = Client(url, verbose=False)
        while not stop_users.is_set():
            try:
                answers.append(client.predict(handle_file(visitor_photo), 3, api_name="/predict")[0] == expected)
            except Exception as err:
                answers.append(err)

    users = [threading.Thread(target=user) for _ in range(3)]
    try:
        for thread in users:
            thread.start()
        client = Client(url, verbose=False)
        for _ in range(3):
            with pytest.raises(AppError, match="Something went wrong on our side; please try again"):
                client.predict(handle_file(bright), "Fails on bright photos", "Most likely class", 0.45, 3, "coarse",
                               api_name="/explain")
        label, *_ = client.predict(handle_file(visitor_photo), "Fails on bright photos", "Most likely class", 0.45, 3,
                                   "coarse", api_name="/explain")
        assert label["confidences"] == expected["confidences"]  # the same method on a darker photo works
        stop_users.set()
        for thread in users:
            thread.join(timeout=60)
    finally:
        stop_users.set()
        stop(process)
    assert len(answers) >= 3 and all(a is True for a in answers), [a for a in answers if a is not True][:3]
    text = log.read_text(errors="replace")
    assert text.count("Request failed") == 3 and "a fault planted by the test" in text
    assert "jane-doe" not in text

"""Shared fixtures: generated photos, a tiny model trained by the real pipeline, a launched app.

The tiny model is a MobileNetV2 (alpha 0.35, 96x96) trained from scratch on generated
photos by `python -m training all`; every library, API and browser test uses it.
"""

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from synthetic import tiny_config, write_dataset  # noqa: E402

from explain.verdicts import VERDICTS  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("SKIN_SHARED_DIR", ROOT.parent / "shared"))
ARTIFACTS = ROOT / "artifacts"  # screenshots and logs a person can look at after a run
def map_alone(method: str, keras_model, layer: str, pixels, class_index: int):
    """A CAM method's map computed on its own, traced by itself, outside the classifier's fused pass."""
    import tensorflow as tf

    from explain.cams import METHODS, activations_and_logits, normalize

    outputs = activations_and_logits(keras_model, layer)
    alone = tf.function(lambda x, index: METHODS[method].run(outputs, x, index)[1])
    return normalize(alone(tf.constant(pixels, tf.float32), tf.constant(class_index, tf.int32)).numpy())


# how the text of each verdict begins (explain.page.verdict) for the tiny model, which knows 3 classes
VERDICT_OPENINGS = tuple(verdict.summary.split("{")[0].format(n=3) for verdict in VERDICTS.values())


# The fast tier (`python -m pytest -q -m fast`, README "Tests"): every test that needs neither the tiny
# model the pipeline trains, nor the shipped model's long runs, nor a browser, nor a test marked slow (one that
# trains for minutes on its own). CI runs every test.
SLOW_MODULES = {"test_shipped_model.py", "test_browser.py", "test_benchmarks.py"}


def pytest_configure(config):
    config.addinivalue_line("markers", "fast: needs no trained tiny model, shipped-model run or browser")
    config.addinivalue_line("markers", "slow: trains for minutes on its own, so it stays out of the fast tier")


def pytest_collection_modifyitems(items):
    for item in items:
        if ("pipeline_run" not in item.fixturenames and item.path.name not in SLOW_MODULES
                and item.get_closest_marker("slow") is None):
            item.add_marker(pytest.mark.fast)


def pytest_sessionstart(session):
    """The tests on real photos skip where ../shared is missing, but CI must never skip them silently."""
    if os.environ.get("CI") == "true" and not SHARED.is_dir():
        pytest.exit(f"CI=true but the shared data is not at {SHARED}: put ../shared beside the project "
                    "(or set SKIN_SHARED_DIR) so the tests on real photos run.", returncode=3)


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("synthetic"))


@pytest.fixture(scope="session")
def pipeline_run(synthetic_root) -> Path:
    """Every pipeline step on the generated photos, then the explanations study (so the tiny model's
    card says which CAM methods fail the sanity checks, as the shipped one does); returns the run folder."""
    from training.__main__ import main

    config = tiny_config(synthetic_root, synthetic_root / "run")
    assert main(["all", "--config", str(config), "--dry-run"]) == 0
    assert main(["explanations", "--config", str(config)]) == 0
    return synthetic_root / "run"


@pytest.fixture(scope="session")
def tiny_model_dir(pipeline_run) -> Path:
    return pipeline_run / "model"


@pytest.fixture(scope="session")
def classifier(tiny_model_dir):
    from explain.classifier import Classifier
    from explain.model import ModelSource, load_model_folder

    return Classifier(load_model_folder(tiny_model_dir, ModelSource("folder", str(tiny_model_dir))))


@pytest.fixture(scope="session")
def test_photos(pipeline_run) -> list[tuple[str, str]]:
    """(path, true class) of the tiny model's held-out test photos."""
    from training.data.tables import read_rows

    return [(r["path"], r["target_class"]) for r in read_rows(pipeline_run / "split.csv")
            if r["split"] == "test" and r["target_class"]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(env_overrides: dict, log_path: Path, port_variable: str = "SKIN_PORT",
              script: Path = ROOT / "app.py") -> tuple[subprocess.Popen, str]:
    """Start `python app.py` (or `script`) on a free 127.0.0.1 port (given in `port_variable`), with a
    Gradio temp folder of its own unless GRADIO_TEMP_DIR is given (as a Space's container has)."""
    port = free_port()
    env = {**os.environ, "SKIN_HOST": "127.0.0.1", port_variable: str(port),
           "GRADIO_TEMP_DIR": tempfile.mkdtemp(prefix="gradio-"), **env_overrides}
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "w")
    process = subprocess.Popen([sys.executable, str(script)], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    return process, f"http://127.0.0.1:{port}/"


def launch_app(env_overrides: dict, log_path: Path, timeout: float = 180, port_variable: str = "SKIN_PORT",
               script: Path = ROOT / "app.py") -> tuple[subprocess.Popen, str]:
    """`start_app`, then wait until it answers."""
    import urllib.request

    process, url = start_app(env_overrides, log_path, port_variable, script)
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{script.name} exited with {process.returncode}; see {log_path}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return process, url
        except OSError:
            time.sleep(0.5)
    process.kill()
    raise TimeoutError(f"{script.name} did not answer within {timeout} s; see {log_path}")


@pytest.fixture(scope="session")
def app_url(tiny_model_dir, tmp_path_factory):
    """The app, serving the tiny model, launched as a real process on 127.0.0.1."""
    ARTIFACTS.mkdir(exist_ok=True)
    gradio_tmp = tmp_path_factory.mktemp("gradio_tmp")
    process, url = launch_app({"SKIN_MODEL_DIR": str(tiny_model_dir), "GRADIO_TEMP_DIR": str(gradio_tmp)},
                              ARTIFACTS / "app_under_test.log")
    yield url
    process.terminate()
    process.wait(timeout=30)


def files_under(folder) -> int:
    return sum(len(files) for _, _, files in os.walk(folder))


def photo_bytes(image, fmt: str = "JPEG", **save_args) -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, fmt, **save_args)
    return buffer.getvalue()

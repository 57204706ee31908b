"""What every benchmark shares: the header naming the machine, the table printer, launching the app,
median timings, a test photo, and random-weight models (speed does not depend on the weights)."""

import datetime
import io
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the project's packages, however the benchmark was started


def header() -> None:
    import gradio
    import keras
    import tensorflow as tf

    keras.utils.disable_interactive_logging()  # as the app does: no progress bars from Score-CAM's predict

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    print(f"\n{datetime.date.today().isoformat()} | {cpu} | {os.cpu_count()} cores | Python {platform.python_version()}"
          f" | TF {tf.__version__} | Keras {keras.__version__} | Gradio {gradio.__version__}\n")


def table(header_row: list[str], rows: list[list]) -> None:
    print("| " + " | ".join(header_row) + " |")
    print("|" + "---|" * len(header_row))
    for row in rows:
        print("| " + " | ".join(str(c) for c in row) + " |")
    print()


def launch(script: str, env: dict, log: Path | None = None) -> tuple[subprocess.Popen, str, float]:
    """Start a Gradio app (its output to `log`, else discarded); returns the process, its URL and
    seconds until it answered HTTP."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.perf_counter()
    output = open(log, "w") if log else subprocess.DEVNULL
    process = subprocess.Popen([sys.executable, script], cwd=ROOT, env={**os.environ, **env, "SKIN_PORT": str(port)},
                               stdout=output, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            return process, url, time.perf_counter() - started
        except OSError:
            if process.poll() is not None or time.perf_counter() - started > 300:
                raise RuntimeError(f"{script} did not start")
            time.sleep(0.2)


CLASSES = [f"Class{i:02d}" for i in range(14)]  # the random models' classes


def median_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def compiled_forward(model, x: np.ndarray):
    """The baseline every ratio divides by: the model's forward pass as one traced tf.function."""
    import tensorflow as tf

    return tf.function(lambda t: model(t, training=False), input_signature=[tf.TensorSpec(x.shape, tf.float32)])


def interleaved_medians_ms(fns: dict, repeats: int) -> dict[str, float]:
    """Median of each function, all called in turn in every round, so a machine that gets busier
    or quieter during the run moves every figure alike and their ratios stay fair."""
    times = {name: [] for name in fns}
    for round_ in range(repeats + 1):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            if round_:  # the first round warms up
                times[name].append(time.perf_counter() - start)
    return {name: 1000 * statistics.median(t) for name, t in times.items()}


def photo_jpeg(size: tuple[int, int] = (448, 448)) -> bytes:
    photo = Image.open(ROOT / "examples" / "astronaut-face.jpg").convert("RGB").resize(size)
    buffer = io.BytesIO()
    photo.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def model_folder(backbone: str, folder: Path) -> Path:
    """A model folder with random weights, 14 classes, 224x224 (for the app and API benchmarks)."""
    from explain.model import write_model_folder

    return write_model_folder(folder, random_model(backbone), CLASSES, random_model_config(backbone), "")


def random_model(backbone: str):
    from training.model.backbones import build_classifier

    return build_classifier(backbone, len(CLASSES), 224)


def random_model_config(backbone: str):
    from explain.model_config import ModelConfig
    from training.model.backbones import cam_layer_of, preprocessing_of

    return ModelConfig(f"random-{backbone}", 224, preprocessing_of(backbone), cam_layer_of(backbone))


def random_service(backbone: str):
    """A service around a random-weight model held in memory, warmed up."""
    from explain.classifier import Classifier
    from explain.model import LoadedModel, ModelSource
    from explain.service import Service
    from explain.settings import Settings

    classifier = Classifier(LoadedModel.from_keras(random_model(backbone), CLASSES, random_model_config(backbone),
                                         ModelSource("memory", f"random {backbone}")))
    classifier.warm_up()
    return Service(Settings(), classifier)

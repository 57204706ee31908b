"""Benchmarks: `python -m benchmarks.bench WHAT`, WHAT one of inprocess, methods, api, startup, restart,
input, resize, models, soak or all (every one but `models` and the hour-long `soak`); each prints a table.

Ratios are taken within one run on one machine; absolute figures depend on the machine,
which the header names. Models have random weights (speed does not depend on them).
"""

import argparse
import io
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.common import ROOT, header, launch, table

sys.path.insert(0, str(ROOT))
CLASSES = [f"Class{i:02d}" for i in range(14)]


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
    from training.backbones import build_classifier

    return build_classifier(backbone, len(CLASSES), 224)


def random_model_config(backbone: str):
    from explain.model import ModelConfig
    from training.backbones import CAM_LAYERS

    return ModelConfig(f"random-{backbone}", 224, backbone, CAM_LAYERS[backbone])


def inprocess(backbones: list[str], repeats: int) -> None:
    from tf_keras_vis.gradcam import Gradcam
    from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
    from tf_keras_vis.utils.scores import CategoricalScore

    from explain.overlay import jpeg_bytes
    from explain.page import DEFAULT_OPACITY

    data = photo_jpeg()
    rows, services = [], {}
    for backbone in backbones:
        service = services[backbone] = random_service(backbone)
        classifier = service.classifier
        model = classifier.keras_model
        x = classifier.pixels(service.read(data))
        forward = compiled_forward(model, x)

        def whole_path(encode=jpeg_bytes):
            _, heatmap, _ = service.explain(data, opacity=DEFAULT_OPACITY)  # with the faithfulness sentence
            encode(heatmap)  # as the app's HeatmapOutput writes it

        def png_path():
            whole_path(lambda heatmap: heatmap.save(io.BytesIO(), "PNG", compress_level=1))

        vis = Gradcam(model, model_modifier=ReplaceToLinear(), clone=True)

        def naive():
            index = int(np.argmax(model.predict(x, verbose=0)))
            Gradcam(model, model_modifier=ReplaceToLinear(), clone=True)(CategoricalScore([index]), x,
                                                                          penultimate_layer=classifier.cam_layer)

        slow_repeats = max(3, repeats // 6)
        t = interleaved_medians_ms({
            "forward": lambda: forward(x),
            "one pass": lambda: classifier.explain_pixels(x),
            "path": whole_path,
            "png path": png_path,
        }, 3 * repeats)
        t |= {
            "predict": median_ms(lambda: model.predict(x, verbose=0), repeats),
            "vis once": median_ms(lambda: vis(CategoricalScore([0]), x, penultimate_layer=classifier.cam_layer),
                                  slow_repeats),
            "naive": median_ms(naive, slow_repeats),
        }
        rows.append([backbone, *(f"{t[k]:.0f} ms" for k in t), f"{t['path'] / t['forward']:.2f}x",
                     f"{t['png path'] / t['forward']:.2f}x", f"{t['naive'] / t['path']:.1f}x"])
    print("In-process request path (448x448 JPEG in, overlay JPEG out as the app sends it, with the faithfulness\n"
          "sentence's two masked copies; batch 1, medians; forward, one pass and both paths measured in turn\n"
          "within each round)\n")
    table(["model", "compiled forward", "one pass: probs + Grad-CAM", "whole request path",
           "same path, PNG out (zlib 1)", "model.predict", "tf-keras-vis Gradcam (built once)",
           "predict + new tf-keras-vis Gradcam", "path / forward", "PNG path / forward", "naive / path"], rows)
    path_steps(services[backbones[0]], data, 3 * repeats)
    uploads(services[backbones[0]], repeats)
    input_sizes(repeats)


def random_service(backbone: str):
    """A service around a random-weight model held in memory, warmed up."""
    from explain.classifier import Classifier
    from explain.model import ModelSource, loaded_model
    from explain.service import Service
    from explain.settings import Settings

    classifier = Classifier(loaded_model(random_model(backbone), CLASSES, random_model_config(backbone),
                                         ModelSource("memory", f"random {backbone}")))
    classifier.warm_up()
    return Service(Settings(), classifier)


def methods(backbones: list[str], repeats: int) -> None:
    """Each CAM method and resolution through the classifier's compiled passes, against the forward
    pass and tf-keras-vis (the reference, built once); the map with its faithfulness sentence; the
    Compare view. Random weights, on a clinical example photo (`examples/psoriasis.jpg`)."""
    from tf_keras_vis.gradcam import Gradcam
    from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus
    from tf_keras_vis.layercam import Layercam
    from tf_keras_vis.scorecam import Scorecam
    from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
    from tf_keras_vis.utils.scores import CategoricalScore

    from explain import faithfulness
    from explain.cams import METHODS
    from explain.page import DEFAULT_OPACITY

    references = {"Grad-CAM": Gradcam, "Grad-CAM++": GradcamPlusPlus, "LayerCAM": Layercam, "Score-CAM": Scorecam}
    data = (ROOT / "examples" / "psoriasis.jpg").read_bytes()
    rows, view_rows = [], []
    for backbone in backbones:
        service = random_service(backbone)
        classifier = service.classifier
        x = classifier.pixels(service.read(data))
        forward = compiled_forward(classifier.keras_model, x)
        for resolution in classifier.layers:
            for name, method in METHODS.items():
                explanation = classifier.explain_pixels(x, name, None, resolution)
                vis = references[name](classifier.keras_model, model_modifier=ReplaceToLinear(), clone=True)
                options = {"max_N": method.channels} if name == "Score-CAM" else {}
                t = interleaved_medians_ms({
                    "forward": lambda: forward(x),
                    "map": lambda: classifier.explain_pixels(x, name, None, resolution),
                    "map + sentence": lambda: faithfulness.check(
                        classifier, x, classifier.explain_pixels(x, name, None, resolution)),
                }, repeats)
                t["vis"] = median_ms(lambda: vis(CategoricalScore([explanation.target_index]), x,
                                                 penultimate_layer=classifier.layers[resolution],
                                                 seek_penultimate_conv_layer=False, expand_cam=False, **options),
                                     max(3, repeats // 6))
                rows.append([backbone, name, classifier.grid(resolution), f"{t['forward']:.1f} ms",
                             f"{t['map']:.1f} ms", f"{t['map'] / t['forward']:.2f}x",
                             f"{t['map + sentence'] / t['forward']:.2f}x", f"{t['vis']:.0f} ms",
                             f"{t['vis'] / t['map']:.0f}x"])
        compare = {f"Compare view, {r}": (lambda r=r: service.compare(data, opacity=DEFAULT_OPACITY, resolution=r))
                   for r in classifier.layers}
        t = interleaved_medians_ms({"forward": lambda: forward(x), **compare}, max(5, repeats // 3))
        view_rows += [[backbone, name, f"{t[name]:.0f} ms", f"{t[name] / t['forward']:.1f}x"] for name in compare]
    print("CAM methods in the app's compiled passes (the photo: examples/psoriasis.jpg at the model input;\n"
          "random weights; batch 1, medians; forward, map and map + sentence measured in turn)\n")
    table(["model", "method", "map", "forward", "map (probabilities, score and map)", "map / forward",
           "map + faithfulness sentence / forward", "tf-keras-vis, built once", "tf-keras-vis / ours"], rows)
    print("Compare view (4 methods, their deletion curves and the random mask's, 3 classes' maps, 7 overlays)\n")
    table(["model", "view", "median", "x forward"], view_rows)


def path_steps(service, data: bytes, repeats: int) -> None:
    """Where the request path's time goes: each step timed inside the path, next to a forward pass."""
    from explain import faithfulness
    from explain.overlay import jpeg_bytes, overlay
    from explain.page import DEFAULT_OPACITY

    classifier = service.classifier
    x = classifier.pixels(service.read(data))
    forward = compiled_forward(classifier.keras_model, x)
    steps = {name: [] for name in ("compiled forward (for scale)", "decode the upload", "resize to the model input",
                                   "one pass: probs + Grad-CAM", "faithfulness sentence: 2 masked copies, one batch",
                                   "overlay", "JPEG encode")}
    for round_ in range(repeats + 1):
        marks = [time.perf_counter()]
        forward(x)
        marks.append(time.perf_counter())
        picture = service.read(data)
        marks.append(time.perf_counter())
        pixels = classifier.pixels(picture)
        marks.append(time.perf_counter())
        explanation = classifier.explain_pixels(pixels)
        marks.append(time.perf_counter())
        faithfulness.check(classifier, pixels, explanation)
        marks.append(time.perf_counter())
        heatmap = overlay(picture, explanation.cam, DEFAULT_OPACITY)
        marks.append(time.perf_counter())
        jpeg_bytes(heatmap)
        marks.append(time.perf_counter())
        if round_:
            for name, start, end in zip(steps, marks, marks[1:]):
                steps[name].append(1000 * (end - start))
    medians = {name: statistics.median(times) for name, times in steps.items()}
    forward_ms = medians.pop("compiled forward (for scale)")
    print(f"Inside the request path ({classifier.config.name}, 448x448 JPEG): median of each step\n")
    table(["step", "median", "x forward pass"],
          [[name, f"{ms:.2f} ms", f"{ms / forward_ms:.3f}"] for name, ms in medians.items()]
          + [["compiled forward pass alone", f"{forward_ms:.2f} ms", "1.000"]])


def input_sizes(repeats: int) -> None:
    """What a higher input resolution would cost each request (the ablation's resolution rows)."""
    from training.backbones import build_classifier

    rows, base = [], None
    for size in (224, 288, 352):
        x = np.zeros((1, size, size, 3), np.float32)
        forward = compiled_forward(build_classifier("mobilenet_v2", len(CLASSES), size), x)
        cost = median_ms(lambda: forward(x), repeats)
        base = base or cost
        rows.append([f"{size}x{size}", f"{cost:.0f} ms", f"{cost / base:.2f}x"])
    print("MobileNetV2 compiled forward pass by input size\n")
    table(["input", "forward", "x 224"], rows)


def uploads(service, repeats: int) -> None:
    """What the size of the upload costs: JPEGs are decoded scaled down to what the model and the
    heatmap need (explain.images.decode_photo's `at_least`)."""
    from explain.images import decode_photo
    from explain.page import DEFAULT_OPACITY
    from explain.overlay import MAX_SIDE, jpeg_bytes

    rows = []
    for size in ((448, 448), (1600, 1200), (4032, 3024)):
        data = photo_jpeg(size)
        full = median_ms(lambda: decode_photo(data, 10**9), max(3, repeats // 3))
        scaled = median_ms(lambda: decode_photo(data, 10**9, at_least=MAX_SIDE), repeats)
        path = median_ms(lambda: jpeg_bytes(service.explain(data, opacity=DEFAULT_OPACITY)[1]), repeats)
        rows.append([f"{size[0]}x{size[1]} JPEG ({len(data) // 1024} KB)", f"{full:.1f} ms", f"{scaled:.1f} ms",
                     f"{path:.0f} ms"])
    print(f"Upload size (model: {service.classifier.config.name})\n")
    table(["upload", "decode in full", "decode scaled (as served)", "whole request path"], rows)


def resize_filters(photos: int) -> None:
    """What a cheaper resize to the model input would cost in answers: the shipped model on real
    photos (../shared), each resize's time and how often its top answer stays the trained input's."""
    from explain.images import decode_photo, fit_to_model, read_bytes
    from explain.service import Service
    from training.config import expand

    service = Service.start()
    size = service.classifier.config.image_size
    bilinear = Image.Resampling.BILINEAR
    resizes = {
        "Pillow bilinear, whole photo (as trained and served)": lambda p: fit_to_model(p, size),
        "box filter first (reducing_gap=1.0), then bilinear": lambda p: np.asarray(
            p.resize((size, size), bilinear, reducing_gap=1.0), np.float32),
    }
    paths = sorted(Path(expand("${SHARED}/data")).glob("*-subset/images/*/*.jpg"))
    if not paths:
        print(f"No photos under {expand('${SHARED}/data')}: set SKIN_SHARED_DIR to compare resizes.\n")
        return
    paths = [paths[i] for i in np.random.default_rng(0).choice(len(paths), min(photos, len(paths)), replace=False)]
    pictures = [decode_photo(read_bytes(p, 10**9), 10**9) for p in paths]
    top, costs = {}, {}
    for name, resize in resizes.items():
        costs[name] = median_ms(lambda: [resize(p) for p in pictures[:50]], 5) / min(50, len(pictures))
        top[name] = np.array([service.classifier.predict_pixels(resize(p)[None]).top_index for p in pictures])
    trained = top[next(iter(resizes))]
    print(f"Resize to the model input ({service.classifier.config.name}, {len(pictures)} real photos)\n")
    table(["resize", "per photo", "same top answer as the trained input"],
          [[name, f"{costs[name]:.2f} ms", f"{np.mean(top[name] == trained):.1%}"] for name in resizes])


def round_trips(url: str, api_name: str, args_for, clients: int, per_client: int) -> tuple[list[float], float]:
    """Latencies of `clients` concurrent gradio_client users, and requests per second."""
    from gradio_client import Client

    latencies, lock = [], threading.Lock()

    def user():
        client = Client(url, verbose=False)
        client.predict(*args_for(), api_name=api_name)  # warm this client up
        for _ in range(per_client):
            start = time.perf_counter()
            client.predict(*args_for(), api_name=api_name)
            with lock:
                latencies.append(time.perf_counter() - start)

    threads = [threading.Thread(target=user) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, len(latencies) / (time.perf_counter() - started)


def api(requests: int) -> None:
    from gradio_client import handle_file

    photo = Path(tempfile.mkdtemp()) / "photo.jpg"
    photo.write_bytes(photo_jpeg())
    folder = model_folder("mobilenet_v2", Path(tempfile.mkdtemp()) / "mobilenet_v2")
    noop, noop_url, _ = launch("benchmarks/noop_app.py", {})
    noop_ms = 1000 * statistics.median(round_trips(noop_url, "/noop", lambda: [handle_file(str(photo))], 1, requests)[0])
    noop.terminate()

    from explain.overlay import jpeg_bytes
    from explain.page import DEFAULT_OPACITY
    from explain.service import Service
    from explain.settings import Settings

    service = Service.start(Settings(model_dir=str(folder)))
    path_ms = median_ms(lambda: jpeg_bytes(service.explain(photo, opacity=DEFAULT_OPACITY)[1]), requests)
    rows = []
    for concurrency in (1, 2):
        app, url, _ = launch("app.py", {"SKIN_MODEL_DIR": str(folder), "SKIN_CONCURRENCY": str(concurrency)})
        for clients in (1, 4, 8):
            latencies, throughput = round_trips(
                url, "/explain", lambda: [handle_file(str(photo)), "Grad-CAM", "Most likely class", 0.45, 3, "coarse"],
                clients, max(2, requests // clients))
            p50, p95 = 1000 * np.percentile(latencies, 50), 1000 * np.percentile(latencies, 95)
            rows.append([concurrency, clients, f"{p50:.0f} ms", f"{p95:.0f} ms", f"{throughput:.1f}/s"])
        app.terminate()
    print("Through the API with gradio_client on 127.0.0.1 (MobileNetV2, /explain, 448x448 JPEG)\n")
    table(["do-nothing Gradio round trip", "in-process path", "budget: 1.2 x (sum)", "ours, 1 client (p50)",
           "ratio to the sum"],
          [[f"{noop_ms:.0f} ms", f"{path_ms:.0f} ms", f"{1.2 * (noop_ms + path_ms):.0f} ms", rows[0][2],
            f"{float(rows[0][2].split()[0]) / (noop_ms + path_ms):.2f}"]])
    table(["SKIN_CONCURRENCY", "clients", "p50", "p95", "throughput"], rows)


def startup(requests: int) -> None:
    """Process start to first answered API request, the first Compare against a warm one (the warm-up
    should have traced every method), and peak resident memory of the app process."""
    import psutil
    from gradio_client import Client, handle_file

    photo = ROOT / "examples" / "astronaut-face.jpg"
    rows = []
    setups = [("bundled default model", {})] if (ROOT / "default_model" / "model.keras").is_file() else []
    setups += [(f"random {b}", {"SKIN_MODEL_DIR": str(model_folder(b, Path(tempfile.mkdtemp()) / b))})
               for b in ("mobilenet_v2", "resnet50")]
    for name, env in setups:
        started = time.perf_counter()
        process, url, _ = launch("app.py", env)
        peak, stop = [0], threading.Event()

        def watch():
            while not stop.is_set():
                try:
                    peak[0] = max(peak[0], psutil.Process(process.pid).memory_info().rss)
                except psutil.Error:
                    pass
                time.sleep(0.05)

        threading.Thread(target=watch, daemon=True).start()
        client = Client(url, verbose=False)
        client.predict(handle_file(str(photo)), 3, api_name="/predict")
        cold = time.perf_counter() - started
        compare = [handle_file(str(photo)), "Most likely class", 0.45, "fine"]
        start = time.perf_counter()
        client.predict(*compare, api_name="/compare")
        first_compare = 1000 * (time.perf_counter() - start)
        warm_compare = median_ms(lambda: client.predict(*compare, api_name="/compare"), 3)  # after one more call
        for _ in range(requests):
            client.predict(handle_file(str(photo)), "Grad-CAM", "Most likely class", 0.45, 3, "coarse",
                           api_name="/explain")
        stop.set()
        process.terminate()
        rows.append([name, f"{cold:.1f} s", f"{first_compare:.0f} ms", f"{warm_compare:.0f} ms",
                     f"{first_compare / warm_compare:.2f}", f"{peak[0] / 2**30:.2f} GB"])
    print("Cold start (process start to first answered /predict), the first /compare after it against a warm "
          f"one (fine maps), and peak RSS over {requests} /explain calls\n")
    table(["model", "cold start", "first /compare", "warm /compare (median of 3)", "first / warm",
           "peak resident memory"], rows)


def restart(clients: int, seconds: float) -> None:
    """The bundled model's app killed with SIGKILL under load, then started again on the same temp
    folder: process start to first answered /predict, against the same for its first start."""
    from gradio_client import Client, handle_file

    photo = handle_file(str(ROOT / "examples" / "psoriasis.jpg"))
    env = {"SKIN_MODEL_DIR": "", "SKIN_MODEL_REPO": "", "GRADIO_TEMP_DIR": tempfile.mkdtemp(prefix="restart-")}

    def start() -> tuple:
        started = time.perf_counter()
        process, url, _ = launch("app.py", env)
        client = Client(url, verbose=False)
        answer = client.predict(photo, 3, api_name="/predict")[0]
        return process, url, time.perf_counter() - started, answer

    process, url, cold, before = start()
    answered = [0]

    def user():
        client = Client(url, verbose=False)
        while True:
            try:
                client.predict(photo, "Grad-CAM", "Most likely class", 0.45, 3, "fine", api_name="/explain")
            except Exception:  # killed
                return
            answered[0] += 1

    users = [threading.Thread(target=user, daemon=True) for _ in range(clients)]
    for thread in users:
        thread.start()
    time.sleep(seconds)
    process.kill()
    process.wait()
    for thread in users:
        thread.join(timeout=60)
    process, _, again, after = start()
    process.terminate()
    process.wait(timeout=60)
    print(f"kill -9 under load ({clients} clients asking for fine Grad-CAM maps for {seconds:.0f} s, "
          f"{answered[0]} answered), then a start on the same temp folder\n")
    table(["first start: to first answered /predict", "after kill -9: to first answered /predict",
           "same answer after the restart"],
          [[f"{cold:.1f} s", f"{again:.1f} s", "yes" if after == before else f"no: {after} against {before}"]])


def training_input(batches: int) -> None:
    """Images per second of the tf.data input alone against one training step alone."""
    import keras

    from training.config import ExperimentConfig, Source
    from training.data import dataset
    from training.backbones import set_trainable
    from training.train import new_model

    folder = Path(tempfile.mkdtemp())
    rng = np.random.default_rng(0)
    rows_ = []
    for i in range(64 * 4):
        path = folder / f"{i}.jpg"
        Image.fromarray(rng.integers(0, 255, (336, 448, 3), dtype=np.uint8)).save(path, quality=90)
        rows_.append({"path": str(path), "source": "bench", "target_class": CLASSES[i % 3]})
    config = ExperimentConfig(sources=[Source("bench", str(folder), "")], imagenet_weights=None, batch_size=32)
    names = CLASSES[:3]
    ds = dataset(rows_, names, config, shuffle=True)
    for _ in ds:  # first epoch decodes and fills the cache
        pass
    start = time.perf_counter()
    seen = sum(int(x.shape[0]) for x, _ in ds.repeat().take(batches))
    cached_rate = seen / (time.perf_counter() - start)
    fresh = dataset(rows_, names, config, shuffle=True)
    start = time.perf_counter()
    seen = sum(int(x.shape[0]) for x, _ in fresh.take(batches))
    first_rate = seen / (time.perf_counter() - start)
    model = new_model(config, len(names))
    set_trainable(model, config.unfrozen)  # as in fine-tuning (stage 2), the costlier stage
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    x, y = next(iter(ds))
    step_ms = median_ms(lambda: model.train_on_batch(x, y), 5)
    step_rate = 32 / (step_ms / 1000)
    print("Training input (MobileNetV2, 224x224, batch 32, online augmentation in the model, last 30 layers trainable)\n")
    table(["tf.data, first epoch (decode)", "tf.data, cached epochs", "training step alone", "input starves the model?"],
          [[f"{first_rate:.0f} img/s", f"{cached_rate:.0f} img/s", f"{step_rate:.0f} img/s",
            "no" if min(first_rate, cached_rate) > step_rate else "yes"]])
    keras.backend.clear_session()


def models(folders: list[str], repeats: int) -> None:
    """Trained model folders side by side (e.g. the shipped model and its predecessor): a prediction
    and the whole /explain request (Grad-CAM, faithfulness check, overlay) at each map resolution,
    interleaved in one run; ratios against the first folder's."""
    from explain.classifier import Classifier
    from explain.model import ModelSource, load_model_folder
    from explain.service import Service
    from explain.settings import Settings

    photo = Path(tempfile.mkdtemp()) / "photo.jpg"
    photo.write_bytes(photo_jpeg())
    services = {}
    for folder in folders:
        classifier = Classifier(load_model_folder(Path(folder), ModelSource("folder", folder)))
        classifier.warm_up()
        services[folder] = Service(Settings(), classifier)
    fns = {}
    for folder, service in services.items():
        fns[(folder, "prediction")] = lambda s=service: s.predict(photo)
        for resolution in service.classifier.layers:
            fns[(folder, f"/explain request, {resolution} map")] = lambda s=service, r=resolution: s.explain(
                photo, "Grad-CAM", None, opacity=0.45, resolution=r)
    times = interleaved_medians_ms(fns, repeats)
    first = folders[0]
    rows = [[folder, what, f"{ms:.1f}", f"{ms / times[(first, what)]:.2f}x"] for (folder, what), ms in times.items()]
    print(f"Model folders compared ({repeats} interleaved rounds, medians; ratio against {first}):\n")
    table(["model folder", "what", "ms", "ratio"], rows)


def soak(minutes: float, clients: int, window_minutes: float, plot_path: Path) -> None:
    """The bundled model's app under `clients` clients for `minutes` (see benchmarks/soak.py)."""
    from benchmarks import soak as soak_run
    from explain.settings import Settings

    workdir = Path(tempfile.mkdtemp(prefix="soak-"))
    temp, log = workdir / "gradio", workdir / "app.log"
    process, url, _ = launch("app.py", {"SKIN_MODEL_DIR": "", "SKIN_MODEL_REPO": "", "GRADIO_TEMP_DIR": str(temp)}, log)
    settings = Settings.from_env()
    sweep_bound = settings.cache_max_age_seconds + settings.cache_sweep_seconds
    try:
        result = soak_run.run(url, process.pid, temp, minutes, clients, 60 * window_minutes, 2 * sweep_bound, workdir,
                              progress=lambda line: print(line, flush=True))
    finally:
        process.terminate()
        process.wait(timeout=60)
    app_log = log.read_text(errors="replace")
    bad = [o for o in result.outcomes if o.kind == "bad upload"]
    print(f"\nSoak: bundled model, {clients} clients, {minutes:g} minutes, windows of {window_minutes:g} minutes; "
          f"the app's log: {log}\n")
    table(soak_run.ROW_HEADER, soak_run.rows(result))
    table(["figure", "measured", "target"], [
        ["valid requests failed", f"{len(result.failures) - sum(o.failure is not None for o in bad)} of "
                                  f"{len(result.outcomes) - len(bad)}", "0"],
        ["bad uploads refused with their message", f"{sum(o.failure is None for o in bad)} of {len(bad)}", "all"],
        ["resident memory growth after the first window", f"{100 * result.memory_growth:+.1f}%", "< 5%"],
        ["p95, last window against the first", f"{100 * result.p95_drift:+.1f}%", "within 20%"],
        ["temp files and fds back to their start after the load", f"{result.settle_seconds:.0f} s "
         f"({result.baseline.temp_files} files, {result.baseline.fds} fds)",
         f"within max age + one sweep ({sweep_bound} s)"],
        ["tracebacks in the app's log", app_log.count("Traceback"), "0"],
    ])
    if result.failures:
        print("First failures:", *result.failures[:5], sep="\n  ")
    print(f"Plot: {soak_run.plot(result, plot_path)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("what", choices=["inprocess", "methods", "api", "startup", "restart", "input", "resize",
                                         "models", "soak", "all"])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--backbones", nargs="+", default=["mobilenet_v2", "resnet50"])
    parser.add_argument("--model-dirs", nargs="+", default=[], help="model folders for `models` (first: the baseline)")
    parser.add_argument("--minutes", type=float, default=60, help="soak: how long the load lasts")
    parser.add_argument("--clients", type=int, default=8, help="soak: concurrent clients")
    parser.add_argument("--window", type=float, default=5, help="soak: minutes per row of the table")
    parser.add_argument("--plot", type=Path, default=ROOT / "docs" / "soak.png", help="soak: where the plot goes")
    args = parser.parse_args()
    header()
    if args.what in ("inprocess", "all"):
        inprocess(args.backbones, args.repeats)
    if args.what in ("methods", "all"):
        methods(args.backbones, args.repeats)
    if args.what in ("api", "all"):
        api(args.repeats)
    if args.what in ("startup", "all"):
        startup(20)
    if args.what in ("restart", "all"):
        restart(4, 20)
    if args.what in ("input", "all"):
        training_input(20)
    if args.what in ("resize", "all"):
        resize_filters(900)
    if args.what == "models":
        models(args.model_dirs, args.repeats)
    if args.what == "soak":
        soak(args.minutes, args.clients, args.window, args.plot)


if __name__ == "__main__":
    main()

"""In-process speed: the classifier's passes, each CAM method, the request path's steps, photo
input sizes and decoding, resize filters, and model folders against each other.
"""

import io
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.common import (
    CLASSES,
    ROOT,
    compiled_forward,
    interleaved_medians_ms,
    median_ms,
    photo_jpeg,
    random_service,
    table,
)


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
            heatmap = service.explain_photo(data, opacity=DEFAULT_OPACITY).overlay  # with the faithfulness sentence
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
    from training.model.backbones import build_classifier

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
    from explain.overlay import MAX_SIDE, jpeg_bytes
    from explain.page import DEFAULT_OPACITY

    rows = []
    for size in ((448, 448), (1600, 1200), (4032, 3024)):
        data = photo_jpeg(size)
        full = median_ms(lambda: decode_photo(data, 10**9), max(3, repeats // 3))
        scaled = median_ms(lambda: decode_photo(data, 10**9, at_least=MAX_SIDE), repeats)
        path = median_ms(lambda: jpeg_bytes(service.explain_photo(data, opacity=DEFAULT_OPACITY).overlay), repeats)
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
            fns[(folder, f"/explain request, {resolution} map")] = lambda s=service, r=resolution: s.explain_photo(
                photo, "Grad-CAM", None, opacity=0.45, resolution=r)
    times = interleaved_medians_ms(fns, repeats)
    first = folders[0]
    rows = [[folder, what, f"{ms:.1f}", f"{ms / times[(first, what)]:.2f}x"] for (folder, what), ms in times.items()]
    print(f"Model folders compared ({repeats} interleaved rounds, medians; ratio against {first}):\n")
    table(["model folder", "what", "ms", "ratio"], rows)

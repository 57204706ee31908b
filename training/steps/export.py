"""Step 6, export: the inference graph as .keras, TFLite (float32 and dynamic-range int8) and ONNX.

The augmentation layers are left out (they break exports and do nothing at inference);
each export is checked against the Keras model on real test photos, and the maximum
absolute difference and top-1 agreement go into `report.json`.
"""

import json
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from explain import layers  # noqa: F401  (registers the preprocessing layers for loading)
from training.config import ExperimentConfig
from training.data.photos import load_pixels
from training.data.tables import read_rows
from training.model.backbones import classifier_for, copy_weights_by_name, head_settings
from training.steps import already_done

PARITY_PHOTOS = 32


def inference_model(trained: keras.Model, config: ExperimentConfig) -> keras.Model:
    """The same network without augmentation layers, weights copied by layer name."""
    model = classifier_for(config.model, trained.output_shape[-1], **head_settings(trained))
    copy_weights_by_name(trained, model)
    return model


def tflite_bytes(model: keras.Model, quantize: bool) -> bytes:
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if quantize:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]  # dynamic-range: int8 weights
    return converter.convert()


def run_tflite(content: bytes, pixels: np.ndarray) -> np.ndarray:
    interpreter = tf.lite.Interpreter(model_content=content)
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    results = []
    for photo in pixels:
        interpreter.set_tensor(inp["index"], photo[None].astype(np.float32))
        interpreter.invoke()
        results.append(interpreter.get_tensor(out["index"])[0])
    return np.stack(results)


def onnx_file(model: keras.Model, path: Path) -> None:
    import tf2onnx

    signature = (tf.TensorSpec((None, *model.input_shape[1:]), tf.float32, name="pixels"),)
    model.output_names = ["probs"]  # tf2onnx reads this attribute
    tf2onnx.convert.from_keras(model, input_signature=signature, opset=17, output_path=str(path))


def run_onnx(path: Path, pixels: np.ndarray) -> np.ndarray:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: pixels.astype(np.float32)})[0]


def parity(reference: np.ndarray, other: np.ndarray, path: Path) -> dict:
    return {
        "file": path.name,
        "size_mb": round(path.stat().st_size / 1e6, 2),
        "max_abs_diff": float(np.abs(reference - other).max()),
        "top1_agreement": float(np.mean(reference.argmax(1) == other.argmax(1))),
    }


def export_all(trained: keras.Model, config: ExperimentConfig, pixels: np.ndarray, out: Path) -> dict:
    """Write every format into `out` and return each one's parity with the Keras model."""
    out.mkdir(parents=True, exist_ok=True)
    model = inference_model(trained, config)
    model.save(out / "model.keras")
    reloaded = keras.saving.load_model(out / "model.keras", safe_mode=True, compile=False)
    reference = model.predict(pixels.astype(np.float32), verbose=0)
    results = {"photos": len(pixels), "keras": parity(reference, reloaded.predict(pixels.astype(np.float32), verbose=0),
                                                       out / "model.keras")}
    for name, quantize in (("tflite_float32", False), ("tflite_dynamic_range", True)):
        path = out / f"model_{name.removeprefix('tflite_')}.tflite"
        path.write_bytes(tflite_bytes(model, quantize))
        results[name] = parity(reference, run_tflite(path.read_bytes(), pixels), path)
    onnx_file(model, out / "model.onnx")
    results["onnx"] = parity(reference, run_onnx(out / "model.onnx", pixels), out / "model.onnx")
    return results


def run(config: ExperimentConfig, force: bool = False) -> Path:
    out = config.out / "export"
    report_path = config.out / "report.json"
    report = json.loads(report_path.read_text(encoding="utf-8"))
    if "export" in report and already_done("export", out / "model.keras", force):
        return out
    trained = keras.saving.load_model(config.out / "train" / "model.keras", safe_mode=True, compile=False)
    test_rows = [r for r in read_rows(config.out / "split.csv") if r["split"] == "test"][:PARITY_PHOTOS]
    report["export"] = export_all(trained, config, load_pixels(test_rows, config), out)
    report_path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    for name, result in report["export"].items():
        if isinstance(result, dict):
            print(f"{name:22s} {result['size_mb']:7.2f} MB  max |diff| {result['max_abs_diff']:.2e}  "
                  f"top-1 agreement {result['top1_agreement']:.3f}")
    return out

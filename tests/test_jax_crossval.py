"""The cross-validation for a GPU machine (training.steps.jax_crossval): packed here with TensorFlow,
fine-tuned by Keras on JAX in a process that cannot import TensorFlow (as on that machine), reported here."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from explain.images import fit_to_model, load_photo
from training.config import AugmentSettings
from training.model.augmentation_numpy import augment_photo

ROOT = Path(__file__).resolve().parent.parent


def test_the_numpy_augmentation_does_what_the_tensorflow_one_does(synthetic_root):
    """Each op, on its own, is fixed by its seed and changes the photo about as much as
    training.model.augmentation_tf.augment's (within a factor of two, averaged over 40 seeds)."""
    import tensorflow as tf

    from training.model.augmentation_tf import augment

    photo = np.asarray(load_photo(next((synthetic_root / "photos" / "Rings").glob("*.jpg")), 10**7, 10**8)
                       .resize((96, 96)))
    plain = {"crop_min": 1.0, "flip": False, "brightness": 0.0, "contrast": 0.0, "saturation": 0.0,
             "hue": 0.0, "white_balance": 0.0, "jpeg_quality_min": 0, "erase": 0.0}
    served = fit_to_model(Image.fromarray(photo), 96)
    np.testing.assert_array_equal(augment_photo(photo, np.random.default_rng(0), AugmentSettings(**plain), 96), served)
    strong = {"crop_min": 0.55, "flip": True, "brightness": 0.2, "contrast": 0.2, "saturation": 0.5, "hue": 0.05,
              "white_balance": 0.1, "jpeg_quality_min": 40, "erase": 1.0, "blur": 1.0}
    for name, value in strong.items():
        settings = AugmentSettings(**{**plain, name: value})
        ours = [augment_photo(photo, np.random.default_rng([s, 1]), settings, 96) for s in range(40)]
        theirs = [augment(tf.constant(photo), tf.constant([s, 1], tf.int64), settings, 96).numpy() for s in range(40)]
        np.testing.assert_array_equal(ours[0], augment_photo(photo, np.random.default_rng([0, 1]), settings, 96))
        assert ours[0].dtype == np.uint8 and ours[0].shape == (96, 96, 3), name
        change = [np.mean([np.abs(v.astype(np.float32) - served).mean() for v in views]) for views in (ours, theirs)]
        assert change[0] > 0.5 and 0.5 < change[0] / change[1] < 2.0, (name, change)


def test_the_gpu_cross_validation_runs_on_jax_and_its_model_loads_under_tensorflow(pipeline_run, tiny_model_dir,
                                                                                    tmp_path):
    """pack -> run (KERAS_BACKEND=jax, TensorFlow not importable) -> report: every photo held out once,
    each fold fine-tuned from its own stage 1 with a history per epoch, both cross-validations
    aggregated, the first fold's model, saved by JAX, giving JAX's logits under TensorFlow, and the figures in
    a model card."""
    from training.steps import jax_crossval

    run = tmp_path / "run"
    run.mkdir()
    for name in ("curated.csv", "split.csv"):  # the tiny pipeline's photos and folds, as curated and split
        shutil.copy(pipeline_run / name, run / name)
    config = tmp_path / "config.json"
    config.write_text((pipeline_run / "config.json").read_text(encoding="utf-8"), encoding="utf-8")
    pack, out = tmp_path / "pack", tmp_path / "out"
    assert jax_crossval.main(["pack", "--config", str(config), "--output-dir", str(run), "--folds", "2",
                              "--pack", str(pack)]) == 0
    manifest = json.loads((pack / "manifest.json").read_text(encoding="utf-8"))
    held = sorted(i for fold in manifest["folds"] for i in fold["held"])
    assert held == list(range(len(manifest["labels"]))) and len(held) > 40

    no_tensorflow = tmp_path / "no_tensorflow" / "tensorflow"
    no_tensorflow.mkdir(parents=True)
    (no_tensorflow / "__init__.py").write_text("raise ImportError('not on the GPU machine')\n")
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": os.pathsep.join([str(no_tensorflow.parent), str(ROOT)])}
    done = subprocess.run([sys.executable, "-m", "training.steps.jax_crossval", "run", "--pack", str(pack),
                           "--out", str(out), "--epochs", "2"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "epoch 2/2" in done.stdout and "CpuDevice" in done.stdout

    folds = json.loads((out / "folds.json").read_text(encoding="utf-8"))
    for k, fold in enumerate(manifest["folds"]):
        logits = np.array(folds[str(k)]["logits"])
        assert logits.shape == (len(fold["held"]), len(manifest["names"]))
        assert [h["epoch"] for h in folds[str(k)]["history"]] == [0, 1]
        assert not np.allclose(logits, fold["frozen_logits"], atol=1e-3)  # the fine-tune changed the model
    result = jax_crossval.report(pack, out)
    assert result["fold0_tensorflow_vs_jax"]["same_top_class"] == 1.0
    assert result["fold0_tensorflow_vs_jax"]["max_abs_logit_difference"] < 1e-3
    for name in ("frozen", "frozen, photos as packed", "fine-tuned, photos as packed"):
        assert result[name]["folds"] == 2 and 0.0 <= result[name]["accuracy"]["mean"] <= 1.0

    # the report's figures go into a model card (`python -m training card`), once however often it runs
    from training.__main__ import main

    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    for _ in range(2):
        assert main(["card", "--config", str(config), "--output-dir", str(run), "--model-dir", str(folder),
                     "--crossval", str(out / "crossval.json")]) == 0
    card = (folder / "README.md").read_text(encoding="utf-8")
    assert card.count("## Cross-validation of the fine-tune") == 1 and card.count("## Backbones") == 1
    tuned = result["fine-tuned, photos as packed"]["accuracy"]
    assert f"| fine-tuned, the same photos through WebP | {tuned['mean']:.1%} ± {100 * tuned['std']:.1f} |" in card
    assert "| mobilenet_v2 | none: random initial weights |  |" in card  # the tiny model starts from scratch
    assert card.startswith((tiny_model_dir / "README.md").read_text(encoding="utf-8").split("## Backbones")[0])


def test_a_pack_of_the_runs_own_split_holds_its_test_photos_out_at_the_size_asked(pipeline_run, tmp_path):
    """--folds 0: one fold, trained on the split's train photos, its epoch chosen on validation, its test
    photos held out; --image-size packs the photos (and builds stage 1) at another input size."""
    from training.data.tables import read_rows
    from training.steps import jax_crossval

    run = tmp_path / "run"
    run.mkdir()
    for name in ("curated.csv", "split.csv"):
        shutil.copy(pipeline_run / name, run / name)
    pack = tmp_path / "pack"
    assert jax_crossval.main(["pack", "--config", str(pipeline_run / "config.json"), "--output-dir", str(run),
                              "--folds", "0", "--image-size", "64", "--webp-quality", "80", "--pack", str(pack)]) == 0
    config, manifest, photos = jax_crossval.read_pack(pack)
    rows = [r for r in read_rows(run / "split.csv") if r["target_class"]]
    [fold] = manifest["folds"]
    for part, split in (("fit", "train"), ("val", "val"), ("held", "test")):
        assert fold[part] == [i for i, r in enumerate(rows) if r["split"] == split], part
    assert config.model.image_size == 64 and photos.shape == (len(rows), 64, 64, 3)
    assert np.array(fold["frozen_logits"]).shape == (len(fold["held"]), len(manifest["names"]))
    assert jax_crossval.rebuild(pack, 0).input_shape == (None, 64, 64, 3)


@pytest.mark.slow
def test_the_pipelines_fine_tune_resumes_under_jax_to_the_weights_of_a_run_never_stopped(tmp_path):
    """The one fine-tune loop (Keras's fit) on JAX, in a process that cannot import TensorFlow: stopped as
    its third epoch begins and resumed from its checkpoint, it ends with the weights of a run never
    stopped, the moving average of the weights included, and those differ from where it started."""
    no_tensorflow = tmp_path / "no_tensorflow" / "tensorflow"
    no_tensorflow.mkdir(parents=True)
    (no_tensorflow / "__init__.py").write_text("raise ImportError('not on the GPU machine')\n")
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(no_tensorflow.parent)}

    def tiny_finetune(out: Path, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(ROOT / "tests" / "tiny_finetune.py"), str(out), *args], cwd=ROOT,
                              env=env, capture_output=True, text=True, timeout=600, check=False)

    straight = tiny_finetune(tmp_path / "straight")
    assert straight.returncode == 0, straight.stdout + straight.stderr
    stopped = tiny_finetune(tmp_path / "stopped", "--stop-at", "2")
    assert stopped.returncode == 3, stopped.stdout + stopped.stderr
    assert "fine-tune epoch 2/3" in stopped.stdout and "fine-tune epoch 3/3" not in stopped.stdout
    resumed = tiny_finetune(tmp_path / "stopped", "--resume")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resuming after epoch 2 of 3" in resumed.stdout
    with np.load(tmp_path / "straight" / "weights.npz") as a, np.load(tmp_path / "stopped" / "weights.npz") as b:
        assert len(a.files) == len(b.files) > 100
        for name in a.files:
            np.testing.assert_array_equal(a[name], b[name])
        with np.load(tmp_path / "straight" / "start.npz") as start:
            assert any(not np.array_equal(a[name], start[name]) for name in a.files)
    history = (tmp_path / "stopped" / "history.csv").read_text().splitlines()
    assert len(history) == 4 and history[0].startswith("stage,epoch,loss,accuracy,learning_rate,val_loss")

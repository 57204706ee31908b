"""Grouped k-fold cross-validation of the fine-tune on a machine with an accelerator and no TensorFlow.

On these 2 CPU cores one fine-tune takes about 23 minutes, so the five of a cross-validation take two
hours; a GPU does them in minutes. Three commands, `python -m training.steps.jax_crossval`:

1. `pack --config FILE --folds 5 --pack DIR` (here, TensorFlow): the run's grouped folds (the
   pipeline's curate and split; `--folds 0`: its own train/validation/test split as one fold); stage 1
   of each fold, trained by `training.model.fitting` as in the pipeline's own cross-validation, whose
   held-out predictions are the frozen model's cross-validation;
   the head of each and the ImageNet backbone they share (stage 1 leaves it as it is); every photo
   resized whole to the input as the app does, stored as WebP (quality 90 unless told) so the folder
   travels in under 64 MiB.
2. `run --pack DIR --out DIR` (the GPU machine, `KERAS_BACKEND=jax`): stage 2 of each fold by the
   pipeline's own fine-tune (`training.model.finetune`: Keras's `fit`, the same optimizer, checkpoints and
   best epoch on the fold's validation slice), with the augmentation of `training.model.augmentation_tf`
   made in NumPy and Pillow (`training.model.augmentation_numpy`). Writes each fold's held-out logits and
   history (`folds.json`) and the first fold's model; a fold cut off part way resumes from its checkpoint.
3. `report --pack DIR --out DIR` (here): the frozen cross-validation (on the photos as decoded, and on
   the packed WebP photos) and the fine-tuned one (on the packed photos) side by side, and the first
   fold's `.keras`, loaded under TensorFlow, checked against the logits JAX computed.

What differs from the pipeline's fine-tune: random crops are cut from the 224-pixel photo, not from
a 256-pixel copy; the random draws are NumPy's, not TensorFlow's; the photos went through WebP.
"""

import argparse
import io
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import keras
import numpy as np
from PIL import Image

import explain.layers  # noqa: F401  (registers the model's own layers before a model is rebuilt)
from training.config import ExperimentConfig
from training.data.tables import read_rows
from training.evaluation import metrics
from training.model.augmentation_numpy import AugmentingPool
from training.model.backbones import HEAD_LAYERS, cam_layer_of
from training.model.finetune import CHECKPOINT, FineTuneData, finetune

# ---- pack (here, with TensorFlow) ----

def pack(config: ExperimentConfig, folder: Path, webp_quality: int = 90) -> None:
    """Stage 1 of every fold and every photo, into `folder`, for `run` on another machine. With
    cv_folds 0, one fold: the run's own split (train; validation to choose the epoch; test held out)."""
    from training.data.photos import load_pixels
    from training.data.tables import class_names
    from training.evaluation.crossval import grouped_slice
    from training.model.fitting import balanced_class_weights, fit
    from training.model.served import cam_features_and_logits
    from training.steps import curate, split

    config.save()
    curate.run(config)
    split.run(config)
    rows = [r for r in read_rows(config.out / "split.csv") if r["target_class"]]
    names = class_names(rows)
    folder.mkdir(parents=True, exist_ok=True)
    index = {r["path"]: i for i, r in enumerate(rows)}
    frozen = config.changed(training={"finetune_epochs": 0})
    folds, backbone = [], None
    for fold in range(config.data.cv_folds or 1):
        if config.data.cv_folds:
            train_rows = [r for r in rows if r["fold"] != str(fold)]
            held = [r for r in rows if r["fold"] == str(fold)]
            fit_rows, val_rows = grouped_slice(train_rows, [r["target_class"] for r in train_rows], config)
        else:
            fit_rows, val_rows, held = ([r for r in rows if r["split"] == s] for s in ("train", "val", "test"))
        print(f"fold {fold + 1}/{config.data.cv_folds or 1}: stage 1 on {len(fit_rows)} photos "
              f"({len(val_rows)} to choose the epoch), {len(held)} held out")
        out = config.out / ("cv" if config.data.cv_folds else "split") / f"fold{fold}"
        if (out / "model.keras").is_file():  # an interrupted pack goes on from the folds it finished
            model = keras.saving.load_model(out / "model.keras", safe_mode=True, compile=False)
        else:
            model = fit(frozen, fit_rows, val_rows, names, out, resume=True)
        frozen_logits = cam_features_and_logits(model, cam_layer_of(config.model.backbone), load_pixels(held, config),
                                                config.evaluation.tta)[1]
        weights = {layer.name: layer.get_weights() for layer in model.layers if layer.get_weights()}
        head = {name: w for name, w in weights.items() if name in HEAD_LAYERS}
        rest = {name: w for name, w in weights.items() if name not in HEAD_LAYERS}
        if backbone is None:
            backbone = rest
        elif any(not np.array_equal(a, b) for name in rest for a, b in zip(rest[name], backbone[name])):
            _save_layers(folder / f"fold{fold}_backbone.npz", rest)  # BatchNorm set from this fold's photos
        _save_layers(folder / f"fold{fold}_head.npz", head)
        (folder / f"fold{fold}_model.json").write_text(model.to_json(), encoding="utf-8")
        class_weights = balanced_class_weights(fit_rows, names) if config.training.class_weights else None
        folds.append({"fit": [index[r["path"]] for r in fit_rows], "val": [index[r["path"]] for r in val_rows],
                      "held": [index[r["path"]] for r in held],
                      "class_weights": None if class_weights is None else [class_weights[i] for i in range(len(names))],
                      "frozen_logits": frozen_logits.tolist()})
    _save_layers(folder / "backbone.npz", backbone)
    pixels = load_pixels(rows, config)
    np.savez(folder / "photos.npz", *[np.frombuffer(_webp(p, webp_quality), np.uint8) for p in pixels])
    manifest = {"config": config.as_dict(), "names": names, "folds": folds,
                "labels": [names.index(r["target_class"]) for r in rows], "sources": [r["source"] for r in rows]}
    (folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    size = sum(f.stat().st_size for f in folder.iterdir()) / 2**20
    print(f"packed {len(rows)} photos and {len(folds)} fold(s) into {folder} ({size:.1f} MiB)")


def _webp(pixels: np.ndarray, quality: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "WEBP", quality=quality)
    return buffer.getvalue()


def _save_layers(path: Path, layers: dict[str, list]) -> None:
    np.savez(path, **{f"{name}/{i}": w for name, ws in layers.items() for i, w in enumerate(ws)})


def _load_layers(path: Path) -> dict[str, list]:
    layers: dict[str, list] = {}
    with np.load(path) as saved:
        for key in sorted(saved.files, key=lambda k: (k.rsplit("/", 1)[0], int(k.rsplit("/", 1)[1]))):
            layers.setdefault(key.rsplit("/", 1)[0], []).append(saved[key])
    return layers


def read_pack(folder: Path) -> tuple[ExperimentConfig, dict, np.ndarray]:
    """The pack's config, manifest and photos (uint8, n x size x size x 3)."""
    if not (folder / "manifest.json").is_file():
        raise SystemExit(f"{folder} is not a pack (no manifest.json): make one with `pack` first.")
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    config = ExperimentConfig.from_dict(manifest["config"], str(folder / "manifest.json"))
    with np.load(folder / "photos.npz") as saved:
        photos = np.stack([np.asarray(Image.open(io.BytesIO(saved[f"arr_{i}"].tobytes())).convert("RGB"))
                           for i in range(len(saved.files))])
    return config, manifest, photos


# ---- run (the GPU machine, Keras on JAX) ----

def rebuild(folder: Path, fold: int) -> keras.Model:
    """Fold `fold`'s stage-1 model: its architecture, the shared backbone and its own head."""
    model = keras.models.model_from_json((folder / f"fold{fold}_model.json").read_text(encoding="utf-8"))
    own = folder / f"fold{fold}_backbone.npz"  # a backbone of its own where stage 1 changed it (no ImageNet weights)
    weights = {**_load_layers(own if own.is_file() else folder / "backbone.npz"),
               **_load_layers(folder / f"fold{fold}_head.npz")}
    for layer in model.layers:
        if layer.name in weights:
            layer.set_weights(weights[layer.name])
    return model


def run(folder: Path, out: Path, folds: list[int] | None = None, epochs: int | None = None) -> None:
    """Fine-tune every fold of the pack (or `folds`); `epochs` shortens the recipe (a smoke test)."""
    import jax

    if keras.backend.backend() != "jax":
        raise SystemExit("run needs Keras on JAX: set KERAS_BACKEND=jax before starting Python.")
    config, manifest, photos = read_pack(folder)
    if epochs is not None:
        config = config.changed(training={"finetune_epochs": epochs})
    labels = np.array(manifest["labels"])
    out.mkdir(parents=True, exist_ok=True)
    pool = AugmentingPool(photos, len(os.sched_getaffinity(0)), manifest["sources"], config)  # forked before JAX
    # folds whose models have the same shapes compile once
    jax.config.update("jax_compilation_cache_dir", str(Path(tempfile.gettempdir()) / "jax_cache"))
    print(f"{len(photos)} photos, {len(manifest['folds'])} folds, devices {jax.devices()}", flush=True)
    done = {}
    try:
        for k in folds if folds is not None else range(len(manifest["folds"])):
            fold, started = manifest["folds"][k], time.time()
            print(f"fold {k + 1}: fine-tuning on {len(fold['fit'])} photos, {config.training.finetune_epochs} epochs",
                  flush=True)
            model = rebuild(folder, k)
            history = finetune(model, config, fold_data(pool, photos, labels, len(manifest["names"]), fold, config),
                               out / f"fold{k}", resume=True, verbose=2)
            with jax.default_matmul_precision("float32"):
                logits = held_out_logits(model, photos[fold["held"]], config.training.batch_size)
            done[str(k)] = {"logits": logits.tolist(), "history": history}
            (out / "folds.json").write_text(json.dumps(done), encoding="utf-8")  # each fold kept if the run is cut off
            shutil.rmtree(out / f"fold{k}" / CHECKPOINT)  # tens of MB a fold, needed only to resume it
            if k == 0:
                model.save(out / "fold0.keras")
            top1 = metrics.top_k_accuracy(logits, labels[fold["held"]], 1)
            print(f"fold {k + 1}: held-out top-1 {top1:.3f} ({time.time() - started:.0f} s)", flush=True)
    finally:
        pool.close()


def fold_data(pool: AugmentingPool, photos: np.ndarray, labels: np.ndarray, num_classes: int, fold: dict,
              config: ExperimentConfig) -> FineTuneData:
    """The fine-tune's input for one fold: each epoch's views of its photos made by the pool while the epoch
    before trains, and its validation photos as they are."""
    fit, val = np.array(fold["fit"]), np.array(fold["val"])
    epochs, size = config.training.finetune_epochs, config.training.batch_size
    targets = keras.utils.to_categorical(labels, num_classes)
    weights = np.array(fold["class_weights"] or [1.0] * num_classes, np.float32)[labels]

    def batches(first_epoch: int):
        orders = [fit[np.random.default_rng([config.seed, epoch]).permutation(len(fit))] for epoch in range(epochs)]
        coming = pool.views(orders[first_epoch], config, first_epoch, fit) if first_epoch < epochs else None
        for epoch in range(first_epoch, epochs):
            views = np.stack(coming.get())
            if epoch + 1 < epochs:
                coming = pool.views(orders[epoch + 1], config, epoch + 1, fit)
            for start in range(0, len(fit), size):
                chosen = orders[epoch][start:start + size]
                yield views[start:start + size].astype(np.float32), targets[chosen], weights[chosen]

    return FineTuneData(batches, len(fit), photos[val].astype(np.float32), labels[val])


def held_out_logits(model: keras.Model, photos: np.ndarray, batch_size: int) -> np.ndarray:
    """The model's logits, as served (no augmentation), at full float32 precision."""
    logits_model = keras.Model(model.inputs, model.get_layer("logits").output)
    return np.concatenate([np.asarray(logits_model(photos[s:s + batch_size].astype(np.float32), training=False))
                           for s in range(0, len(photos), batch_size)])


# ---- report (here) ----

def report(folder: Path, out: Path) -> dict:
    """Frozen and fine-tuned cross-validation from the pack and `run`'s logits, and the first fold's
    model under TensorFlow against JAX's logits; written to `out/crossval.json` and printed."""
    from training.evaluation.crossval import aggregate_folds

    config, manifest, photos = read_pack(folder)
    names, labels = manifest["names"], np.array(manifest["labels"])
    sources = np.array(manifest["sources"])
    if not (out / "folds.json").is_file():
        raise SystemExit(f"no {out / 'folds.json'}: run `run` first")
    fine_tuned = {int(k): np.array(fold["logits"]) for k, fold in
                  json.loads((out / "folds.json").read_text(encoding="utf-8")).items()}
    done = sorted(fine_tuned)
    result = {}
    rows = {"frozen": lambda k: np.array(manifest["folds"][k]["frozen_logits"]),  # the pipeline's own CV
            "frozen, photos as packed": lambda k: held_out_logits(rebuild(folder, k),
                                                                  photos[manifest["folds"][k]["held"]],
                                                                  config.training.batch_size),
            "fine-tuned, photos as packed": fine_tuned.get}
    for name, logits_of in rows.items():
        summaries = []
        for k in done:
            held = manifest["folds"][k]["held"]
            summaries.append(metrics.summarize(logits_of(k), labels[held], names, list(sources[held]),
                                               config.evaluation.top_k))
        result[name] = aggregate_folds(summaries, config.changed(data={"cv_folds": len(done)}), names)
    model = keras.saving.load_model(out / "fold0.keras", safe_mode=True, compile=False)
    held = manifest["folds"][0]["held"]
    jax_logits = fine_tuned[0]
    tf_logits = held_out_logits(model, photos[held], config.training.batch_size)
    result["fold0_tensorflow_vs_jax"] = {
        "max_abs_logit_difference": float(np.abs(tf_logits - jax_logits).max()),
        "same_top_class": float(np.mean(tf_logits.argmax(1) == jax_logits.argmax(1)))}
    (out / "crossval.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    if config.data.cv_folds:
        print(f"grouped {len(done)}-fold cross-validation, {len(labels)} photos (mean ± std over folds):")
    else:
        print(f"the run's test split, {len(manifest['folds'][0]['held'])} photos:")
    print("| model | top-1 | top-3 | macro-F1 |\n| --- | --- | --- | --- |")
    for name in rows:
        r = result[name]
        print(f"| {name} | " + " | ".join(f"{r[k]['mean']:.3f} ± {r[k]['std']:.3f}"
                                         for k in ("accuracy", "top3_accuracy", "macro_f1")) + " |")
    parity = result["fold0_tensorflow_vs_jax"]
    print(f"fold 1's model under TensorFlow: same top class on {parity['same_top_class']:.1%} of its held-out photos, "
          f"largest logit difference {parity['max_abs_logit_difference']:.2e}")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.steps.jax_crossval", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    packing = sub.add_parser("pack", help="stage 1 of each fold and the photos, into one folder (TensorFlow)")
    packing.add_argument("--config", required=True, help="experiment JSON (see configs/)")
    packing.add_argument("--output-dir", help="the run folder (default: the config's, with -cv appended)")
    packing.add_argument("--folds", type=int, default=5, help="grouped folds; 0: the run's own train/val/test split")
    packing.add_argument("--image-size", type=int, help="another input size than the config's")
    packing.add_argument("--webp-quality", type=int, default=90, help="of the packed photos (default 90)")
    running = sub.add_parser("run", help="fine-tune each fold (KERAS_BACKEND=jax)")
    running.add_argument("--fold", type=int, action="append", help="only this fold, from 0 (repeatable)")
    running.add_argument("--epochs", type=int, help="fewer epochs than the config's (a smoke test)")
    reporting = sub.add_parser("report", help="both cross-validations and the TensorFlow check")
    for part in (packing, running, reporting):
        part.add_argument("--pack", required=True, type=Path, help="the packed folder")
    for part in (running, reporting):
        part.add_argument("--out", required=True, type=Path, help="the folder run writes the folds' results to")
    args = parser.parse_args(argv)
    if args.command == "pack":
        config = ExperimentConfig.load(args.config, data={"cv_folds": args.folds},
                                       model={"image_size": args.image_size})
        config = config.changed(output_dir=args.output_dir or f"{config.output_dir}-cv")
        pack(config, args.pack, args.webp_quality)
    elif args.command == "run":
        run(args.pack, args.out, args.fold, args.epochs)
    else:
        report(args.pack, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

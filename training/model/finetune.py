"""Stage 2 of training, fine-tune: the backbone trained end to end on augmented photos, BatchNorm frozen.

Photos are decoded once by the app's decoder (whole photo resized to a little over the model's input),
kept in memory as uint8 and augmented in `tf.data` by stateless random ops seeded by (seed, epoch,
photo): an epoch's batches are the same whether or not the run was interrupted, so a resumed run
reaches the result an uninterrupted one would. Validation photos are resized whole to the input, as
the app does. Two AdamW optimizers, the backbone at a lower rate than the head, each warmed up then
cosine-decayed, optionally keeping a moving average of the weights (finetune_ema) that is what is
validated and kept. Every epoch appends a line to `history.csv` and writes a checkpoint (all weights,
both optimizers, the epoch, the best epoch so far); the weights of the best epoch on validation top-1
are what the stage returns.
"""

import contextlib
import csv
import json
import math
import os
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from tqdm import tqdm

from training.config import BLUR_SIGMA, AugmentSettings, ExperimentConfig
from training.data.logo import logo_swapper
from training.data.photos import load_pixels
from training.model.backbones import set_trainable, unfrozen_layers
from training.model.optimizers import backbone_and_head, finetune_optimizers

CHECKPOINT = "finetune_checkpoint"  # folder inside the stage's output folder
BLUR_KERNEL_HALF_WIDTH = 6  # pixels each side of the blur's kernel: 3 sigmas of the widest


class CheckpointError(RuntimeError):
    """A checkpoint exists that this run may not silently overwrite or cannot continue."""


def decode_size(image_size: int) -> int:
    """Side of the in-memory training copies: room for random crops, resized back to the input."""
    return round(image_size * 8 / 7)


def augment(image: tf.Tensor, seed: tf.Tensor, settings: AugmentSettings, size: int) -> tf.Tensor:
    """One random view of a uint8 photo: a square crop of crop_min..100% of the side resized to the
    input, the 8 flips and quarter turns, brightness, contrast, saturation and hue jitter, per-channel
    gains (another camera's white balance), a blur (an out-of-focus camera), JPEG re-compression and a
    randomly erased rectangle (so no patch, a logo or a blank, can decide the class). Returns float32
    pixels in [0, 255]."""
    seeds = tf.unstack(tf.random.experimental.stateless_split(seed, 12))
    uniform = tf.random.stateless_uniform
    side = uniform([], seeds[0], settings.crop_min, 1.0)
    y0, x0 = tf.unstack(uniform([2], seeds[1]) * (1.0 - side))
    x = tf.image.crop_and_resize(tf.cast(image, tf.float32)[None] / 255.0, [[y0, x0, y0 + side, x0 + side]], [0],
                                 [size, size])[0]
    if settings.flip:
        x = tf.image.stateless_random_flip_left_right(x, seeds[2])
        x = tf.image.rot90(x, tf.random.stateless_uniform([], seeds[3], 0, 4, dtype=tf.int32))
    if settings.brightness:
        x = tf.image.stateless_random_brightness(x, settings.brightness, seeds[4])
    if settings.contrast:
        x = tf.image.stateless_random_contrast(x, 1 - settings.contrast, 1 + settings.contrast, seeds[5])
    if settings.saturation:
        x = tf.image.stateless_random_saturation(x, 1 - settings.saturation, 1 + settings.saturation, seeds[6])
    if settings.hue:
        x = tf.image.stateless_random_hue(x, settings.hue, seeds[7])
    if settings.white_balance:
        x = x * (1.0 + uniform([3], seeds[8], -settings.white_balance, settings.white_balance))
    x = tf.clip_by_value(x, 0.0, 1.0)
    if settings.blur:  # its own seed, so the other ops draw what they drew before blur existed
        x = _blur(x, tf.random.experimental.stateless_fold_in(seed, 12), settings.blur)
    if settings.jpeg_quality_min:
        x = tf.image.stateless_random_jpeg_quality(x, settings.jpeg_quality_min, 100, seeds[9])
    if settings.erase:
        x = _erase(x, seeds[10], seeds[11], settings.erase)
    return x * 255.0


def _blur(x: tf.Tensor, seed: tf.Tensor, probability: float) -> tf.Tensor:
    """With `probability`, a Gaussian blur of a random sigma in BLUR_SIGMA (edges reflected), one axis at a time."""
    sigma, coin = tf.unstack(tf.random.stateless_uniform([2], seed))
    half = BLUR_KERNEL_HALF_WIDTH
    offsets = tf.range(-half, half + 1, dtype=tf.float32)
    kernel = tf.exp(-offsets**2 / (2 * (BLUR_SIGMA[0] + (BLUR_SIGMA[1] - BLUR_SIGMA[0]) * sigma) ** 2))
    kernel = kernel / tf.reduce_sum(kernel)
    padded = tf.pad(x, [[half, half], [half, half], [0, 0]], "REFLECT")[None]
    for shape in ([-1, 1, 1, 1], [1, -1, 1, 1]):
        padded = tf.nn.depthwise_conv2d(padded, tf.tile(tf.reshape(kernel, shape), [1, 1, 3, 1]), [1, 1, 1, 1],
                                        "VALID")
    return tf.where(coin < probability, padded[0], x)


def _erase(x: tf.Tensor, where: tf.Tensor, fill: tf.Tensor, probability: float) -> tf.Tensor:
    """With `probability`, a rectangle of 2-20% of the photo at a random place becomes random noise."""
    size = tf.cast(tf.shape(x)[0], tf.float32)
    area, aspect, cy, cx, coin = tf.unstack(tf.random.stateless_uniform([5], where))
    area, aspect = 0.02 + 0.18 * area, tf.exp((aspect - 0.5) * 2 * math.log(3.0))
    h, w = tf.sqrt(area * aspect) * size, tf.sqrt(area / aspect) * size
    rows = tf.range(size)[:, None]
    cols = tf.range(size)[None, :]
    inside = ((tf.abs(rows - cy * size) < h / 2) & (tf.abs(cols - cx * size) < w / 2) & (coin < probability))
    return tf.where(inside[..., None], tf.random.stateless_uniform(tf.shape(x), fill), x)


def epoch_batches(pixels: np.ndarray, targets: np.ndarray, weights: np.ndarray, config: ExperimentConfig,
                  epoch: int) -> tf.data.Dataset:
    """The epoch's shuffled, augmented batches: order and every random draw fixed by (seed, epoch)."""
    order = np.random.default_rng([config.seed, epoch]).permutation(len(pixels))
    seeds = np.stack([np.full(len(order), config.seed * 1000 + epoch), order], axis=1)
    ds = tf.data.Dataset.from_tensor_slices((order, seeds))
    settings, size = config.augment, config.model.image_size
    ds = ds.map(lambda i, s: (augment(tf.gather(pixels, i), s, settings, size), tf.gather(targets, i),
                              tf.gather(weights, i)), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(config.training.batch_size).prefetch(2)


def training_step(model: keras.Model, label_smoothing: float, optimizers: list, groups: tuple[list, list]):
    """One traced step on a batch (pixels, one-hot targets, sample weights): the class-weighted,
    label-smoothed loss on the logits, each group of variables (backbone, head) updated by its own
    optimizer. Returns the loss and each photo's hit."""
    logits_model = keras.Model(model.inputs, model.get_layer("logits").output)
    loss_of = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=label_smoothing, reduction="none")
    backbone, head = groups

    @tf.function
    def step(x, y, w):
        with tf.GradientTape() as tape:
            logits = logits_model(x, training=True)
            loss = tf.reduce_sum(loss_of(y, logits) * w) / tf.reduce_sum(w)
        grads = tape.gradient(loss, backbone + head)
        optimizers[0].apply_gradients(zip(grads[: len(backbone)], backbone))
        optimizers[1].apply_gradients(zip(grads[len(backbone):], head))
        return loss, tf.cast(tf.argmax(logits, 1) == tf.argmax(y, 1), tf.float32)

    return step


def finetune(model: keras.Model, config: ExperimentConfig, train_rows: list[dict], val_rows: list[dict],
             names: list[str], class_weights: dict | None, out: Path, resume: bool = False) -> keras.Model:
    """Fine-tune `model` (stage 1's) in place for finetune_epochs; returns it with its best epoch's weights."""
    folder = out / CHECKPOINT
    settings = config.weights_fingerprint()
    if (folder / "checkpoint.npz").is_file() and not resume:
        raise CheckpointError(f"{folder} holds an interrupted fine-tune: pass --resume to continue it, or --force "
                              "to start the step over.")
    set_trainable(model, unfrozen_layers(config.model.backbone, config.training.unfreeze_layers))
    backbone, head = backbone_and_head(model, model.trainable_variables)
    steps = math.ceil(len(train_rows) / config.training.batch_size)
    optimizers = finetune_optimizers(config.training, len(train_rows), (backbone, head))
    train_step = training_step(model, config.training.label_smoothing, optimizers, (backbone, head))
    state = {"epoch": 0, "best_epoch": -1, "best_top1": -1.0, "history": [], "settings": settings}
    if resume and (folder / "checkpoint.npz").is_file():
        state = _restore(folder, model, optimizers, settings)
        print(f"fine-tune: resuming after epoch {state['epoch']} of {config.training.finetune_epochs} from {folder}")
        _write_history(out / "history.csv", state["history"])
    pixels = load_pixels(train_rows, config, decode_size(config.model.image_size))
    shown = logo_swapper(pixels, train_rows, config.data.sources, config.augment.logo_swap, config.seed)
    targets = keras.utils.to_categorical([names.index(r["target_class"]) for r in train_rows], len(names))
    weights = np.array([class_weights[names.index(r["target_class"])] if class_weights else 1.0 for r in train_rows],
                       dtype=np.float32)
    val_pixels = load_pixels(val_rows, config).astype(np.float32)
    val_labels = np.array([names.index(r["target_class"]) for r in val_rows])
    started, first = time.time(), state["epoch"]
    for epoch in range(first, config.training.finetune_epochs):
        losses, hits = [], []
        batches = tqdm(epoch_batches(shown(epoch), targets, weights, config, epoch), total=steps, unit="batch",
                       desc=f"fine-tune epoch {epoch + 1}/{config.training.finetune_epochs}")
        for x, y, w in batches:
            loss, hit = train_step(x, y, w)
            losses.append(float(loss))
            hits.append(hit.numpy())
            batches.set_postfix(loss=f"{np.mean(losses):.3f}")
        with _averaged(optimizers, (backbone, head)):  # the weights' moving average where finetune_ema is set
            val = _validate(model, val_pixels, val_labels, config)
            if val["val_accuracy"] > state["best_top1"]:
                _save_variables(folder / "best.npz", model.variables)
        row = {"stage": 2, "epoch": epoch, "loss": float(np.mean(losses)),
               "accuracy": float(np.concatenate(hits).mean()), "learning_rate": float(optimizers[0].learning_rate),
               **val}
        state["history"].append(row)
        _write_history(out / "history.csv", state["history"])
        if val["val_accuracy"] > state["best_top1"]:
            state.update(best_epoch=epoch, best_top1=float(val["val_accuracy"]))
        state["epoch"] = epoch + 1
        _checkpoint(folder, model, optimizers, state)
        per_epoch = (time.time() - started) / (epoch + 1 - first)
        print(f"fine-tune epoch {epoch + 1}/{config.training.finetune_epochs}: loss {row['loss']:.3f}, train top-1 "
              f"{row['accuracy']:.3f}, val top-1 {val['val_accuracy']:.3f} (best {state['best_top1']:.3f} at epoch "
              f"{state['best_epoch'] + 1}), {per_epoch:.0f} s an epoch, ETA "
              f"{per_epoch * (config.training.finetune_epochs - epoch - 1) / 60:.1f} min", flush=True)
    _load_variables(folder / "best.npz", model.variables).close()
    print(f"fine-tune: kept epoch {state['best_epoch'] + 1} (validation top-1 {state['best_top1']:.3f})")
    return model


@contextlib.contextmanager
def _averaged(optimizers: list, groups: tuple):
    """Inside, each group of variables holds its optimizer's moving average (its trained values
    where the optimizer keeps none); after, the trained values again, so training goes on from them."""
    trained = [[v.numpy() for v in group] for group in groups]
    for optimizer, group in zip(optimizers, groups):
        optimizer.finalize_variable_values(group)
    try:
        yield
    finally:
        for group, values in zip(groups, trained):
            for variable, value in zip(group, values):
                variable.assign(value)


def _validate(model: keras.Model, pixels: np.ndarray, labels: np.ndarray, config: ExperimentConfig) -> dict:
    """Validation loss, top-1 and top-3 of the model as served (no augmentation, no dropout)."""
    probs = model.predict(pixels, batch_size=config.training.batch_size, verbose=0)
    truth = keras.utils.to_categorical(labels, probs.shape[1])
    return {"val_loss": float(keras.losses.categorical_crossentropy(truth, probs).numpy().mean()),
            "val_accuracy": _top_k(probs, labels, 1), "val_top3": _top_k(probs, labels, 3)}


def _top_k(probs: np.ndarray, labels: np.ndarray, k: int) -> float:
    return float(np.mean(keras.metrics.sparse_top_k_categorical_accuracy(labels, probs, k=k)))


def _write_history(path: Path, stage2: list[dict]) -> None:
    """Stage 1's lines (its Keras log) then one per fine-tune epoch, numbered after stage 1's, in one table."""
    stage1 = [r for r in csv.DictReader(path.open(encoding="utf-8")) if r.get("stage") != "2"] if path.is_file() else []
    stage2 = [{**r, "epoch": len(stage1) + r["epoch"]} for r in stage2]
    fields = list(dict.fromkeys([*(stage1[0] if stage1 else {}), *(stage2[0] if stage2 else {})]))
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fields, restval="")
        writer.writeheader()
        writer.writerows(stage1 + [{k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()}
                                   for r in stage2])


def _save_variables(path: Path, variables: list, **extra) -> None:
    """All values in one file, written beside it and renamed over it: a kill never leaves half a file,
    nor weights of one epoch with the state of another."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial.npz")
    np.savez(partial, *[v.numpy() for v in variables], **extra)
    os.replace(partial, path)


def _load_variables(path: Path, variables: list) -> np.lib.npyio.NpzFile:
    saved = np.load(path)
    for i, variable in enumerate(variables):
        variable.assign(saved[f"arr_{i}"])
    return saved


def _checkpoint(folder: Path, model: keras.Model, optimizers: list, state: dict) -> None:
    """Weights, both optimizers' state (their step counts included) and the run's state, in one file."""
    variables = [*model.variables, *(v for optimizer in optimizers for v in optimizer.variables)]
    _save_variables(folder / "checkpoint.npz", variables, state=np.array(json.dumps(state)))


def _restore(folder: Path, model: keras.Model, optimizers: list, settings: dict) -> dict:
    variables = [*model.variables, *(v for optimizer in optimizers for v in optimizer.variables)]
    with np.load(folder / "checkpoint.npz") as saved:
        state = json.loads(str(saved["state"]))
    changed = sorted(k for k in settings if state["settings"].get(k) != settings[k])
    if changed:
        raise CheckpointError(f"{folder} was written with other settings ({', '.join(changed)}): it cannot be "
                              "continued; use --force to start the step over.")
    _load_variables(folder / "checkpoint.npz", variables).close()
    return state

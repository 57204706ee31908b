"""Stage 2 of training, fine-tune: the backbone trained end to end on augmented photos, BatchNorm frozen,
by Keras's own `fit`, so the one loop runs under TensorFlow here and under JAX on a machine with an
accelerator (`training.steps.jax_crossval`).

What differs between the two is where the views come from (`FineTuneData`): `tf.data` here
(`training.model.augmentation_tf`), a pool of processes there (`training.model.augmentation_numpy`).
The optimizer (`training.model.optimizers`) trains the backbone at a lower rate than the head and may
keep a moving average of the weights (finetune_ema), which is what is validated and kept. Every epoch
appends a line to `history.csv` and writes a checkpoint (all weights, the optimizer's state, the epoch,
the best epoch so far); the weights of the best epoch on validation top-1 are what the stage leaves in
the model.
"""

import contextlib
import csv
import dataclasses
import json
import math
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import keras
import numpy as np

from training.config import ExperimentConfig
from training.model.backbones import set_trainable, unfrozen_layers
from training.model.optimizers import finetune_optimizer

CHECKPOINT = "finetune_checkpoint"  # folder inside the stage's output folder


class CheckpointError(RuntimeError):
    """A checkpoint exists that this run may not silently overwrite or cannot continue."""


@dataclasses.dataclass
class FineTuneData:
    """What a fine-tune reads. `batches(first_epoch)` yields (float32 pixels, one-hot targets, weights) for
    every epoch from `first_epoch` on, train_photos an epoch, each epoch's draws fixed by (seed, epoch,
    photo) so that a resumed run sees what an uninterrupted one would; the validation photos as served
    (float32) and their labels."""
    batches: Callable[[int], Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]]
    train_photos: int
    val_pixels: np.ndarray
    val_labels: np.ndarray


def trainable_logits(model: keras.Model, config: ExperimentConfig, train_photos: int) -> keras.Model:
    """What `fit` trains (and the benchmark steps): a model to `model`'s logits sharing its layers, the
    config's layers unfrozen, compiled with the class-weighted, label-smoothed loss and the fine-tune's
    optimizer (built) for finetune_epochs over `train_photos`."""
    set_trainable(model, unfrozen_layers(config.model.backbone, config.training.unfreeze_layers))
    logits_model = keras.Model(model.inputs, model.get_layer("logits").output)
    optimizer = finetune_optimizer(config.training, train_photos)
    logits_model.compile(optimizer=optimizer, metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
                         loss=keras.losses.CategoricalCrossentropy(from_logits=True,
                                                                   label_smoothing=config.training.label_smoothing,
                                                                   reduction="mean_with_sample_weight"))
    optimizer.build(logits_model.trainable_variables)
    return logits_model


def finetune(model: keras.Model, config: ExperimentConfig, data: FineTuneData, out: Path, resume: bool = False,
             verbose: int | str = "auto") -> list[dict]:
    """Fine-tune `model` (stage 1's) in place for finetune_epochs and leave its best epoch's weights in it;
    returns a row per epoch (loss, top-1 in training, learning rate, validation loss, top-1, top-3)."""
    folder, epochs = out / CHECKPOINT, config.training.finetune_epochs
    if (folder / "checkpoint.npz").is_file() and not resume:
        raise CheckpointError(f"{folder} holds an interrupted fine-tune: pass --resume to continue it, or --force "
                              "to start the step over.")
    logits_model = trainable_logits(model, config, data.train_photos)
    optimizer = logits_model.optimizer
    variables = [*model.variables, *optimizer.variables]
    state = {"epoch": 0, "best_epoch": -1, "best_top1": -1.0, "history": [], "settings": config.weights_fingerprint(),
             "shapes": [list(v.shape) for v in variables]}
    if resume and (folder / "checkpoint.npz").is_file():
        state = _restore(folder / "checkpoint.npz", variables, state)
        print(f"fine-tune: resuming after epoch {state['epoch']} of {epochs} from {folder}")
        _write_history(out / "history.csv", state["history"])

    started, first = time.time(), state["epoch"]

    def epoch_end(epoch: int, logs: dict) -> None:
        with _averaged(optimizer, logits_model.trainable_variables):  # the moving average, where finetune_ema is set
            val = _validate(model, data.val_pixels, data.val_labels, config)
            if val["val_accuracy"] > state["best_top1"]:
                _save_variables(folder / "best.npz", model.variables)
                state.update(best_epoch=epoch, best_top1=val["val_accuracy"])
        rates = {inner.name: float(inner.learning_rate) for inner in optimizer.optimizers}
        state["history"].append({"stage": 2, "epoch": epoch, "loss": float(logs["loss"]),
                                 "accuracy": float(logs["accuracy"]), "learning_rate": rates["backbone"], **val})
        state["epoch"] = epoch + 1
        _write_history(out / "history.csv", state["history"])
        _save_variables(folder / "checkpoint.npz", variables, state=np.array(json.dumps(state)))
        per_epoch = (time.time() - started) / (epoch + 1 - first)
        print(f"fine-tune epoch {epoch + 1}/{epochs}: loss {logs['loss']:.3f}, train top-1 {logs['accuracy']:.3f}, "
              f"val top-1 {val['val_accuracy']:.3f} (best {state['best_top1']:.3f} at epoch {state['best_epoch'] + 1}), "
              f"{per_epoch:.0f} s an epoch, ETA {per_epoch * (epochs - epoch - 1) / 60:.1f} min", flush=True)

    if state["epoch"] < epochs:
        logits_model.fit(data.batches(state["epoch"]), initial_epoch=state["epoch"], epochs=epochs,
                         steps_per_epoch=math.ceil(data.train_photos / config.training.batch_size), shuffle=False,
                         verbose=verbose, callbacks=[keras.callbacks.LambdaCallback(on_epoch_end=epoch_end)])
    _load_variables(folder / "best.npz", model.variables)
    print(f"fine-tune: kept epoch {state['best_epoch'] + 1} (validation top-1 {state['best_top1']:.3f})")
    return state["history"]


@contextlib.contextmanager
def _averaged(optimizer: keras.optimizers.Optimizer, variables: list):
    """Inside, `variables` hold the optimizer's moving average of them (their trained values where it
    keeps none); after, the trained values again, so training goes on from them."""
    trained = [v.numpy() for v in variables]
    optimizer.finalize_variable_values(variables)
    for variable in variables:  # copies: under JAX they would share the averages' buffers, which predict gives up
        variable.assign(variable.numpy())
    try:
        yield
    finally:
        for variable, value in zip(variables, trained):
            variable.assign(value)


def _validate(model: keras.Model, pixels: np.ndarray, labels: np.ndarray, config: ExperimentConfig) -> dict:
    """Validation loss, top-1 and top-3 of the model as served (no augmentation, no dropout)."""
    probs = model.predict(pixels, batch_size=config.training.batch_size, verbose=0)
    truth = keras.utils.to_categorical(labels, probs.shape[1])
    return {"val_loss": float(np.mean(keras.losses.categorical_crossentropy(truth, probs))),
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


def _load_variables(path: Path, variables: list) -> None:
    with np.load(path) as saved:
        for i, variable in enumerate(variables):
            variable.assign(saved[f"arr_{i}"])


def _restore(path: Path, variables: list, fresh: dict) -> dict:
    """The saved run's state, its values loaded into `variables`, if it was written by these settings
    for variables of these shapes (the same model and optimizer, in the same order)."""
    with np.load(path) as saved:
        state = json.loads(str(saved["state"]))
    changed = sorted(k for k in fresh["settings"] if state["settings"].get(k) != fresh["settings"][k])
    if changed:
        raise CheckpointError(f"{path.parent} was written with other settings ({', '.join(changed)}): it cannot be "
                              "continued; use --force to start the step over.")
    if state.get("shapes") != fresh["shapes"]:
        raise CheckpointError(f"{path.parent} was written for other variables (another model, or an earlier version "
                              "of the fine-tune): it cannot be continued; use --force to start the step over.")
    _load_variables(path, variables)
    return state

"""The fine-tune as a stateless JAX loop, for a machine with an accelerator and no TensorFlow
(`training.steps.jax_crossval run`): the recipe of `training.model.finetune` (frozen BatchNorm,
unfrozen layers, the optimizers and schedules of `training.model.optimizers`, class weights, label
smoothing, best epoch on validation) with the augmentation made in NumPy and Pillow by
`training.model.augmentation`'s pool of processes while the accelerator trains."""

import time

import keras
import numpy as np

from training.config import ExperimentConfig
from training.model.augmentation import AugmentingPool
from training.model.backbones import set_trainable, unfrozen_layers
from training.model.optimizers import backbone_and_head, finetune_optimizers


def finetune_fold(model: keras.Model, config: ExperimentConfig, photos: np.ndarray, labels: np.ndarray,
                  fold: dict, pool: AugmentingPool, log=print) -> tuple[keras.Model, list[dict]]:
    """Stage 2 on the fold's photos with Keras's stateless JAX API; the best epoch on the fold's
    validation slice is kept and returned with the per-epoch history."""
    import jax
    import jax.numpy as jnp

    set_trainable(model, unfrozen_layers(config.model.backbone, config.training.unfreeze_layers))
    logits_model = keras.Model(model.inputs, model.get_layer("logits").output)
    variables = logits_model.trainable_variables
    backbone, head = backbone_and_head(model, variables)
    which = [id(v) in {id(h) for h in head} for v in variables]
    fit = np.array(fold["fit"])
    optimizers = finetune_optimizers(config.training, len(fit), (backbone, head))
    loss_of = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=config.training.label_smoothing,
                                                   reduction="none")
    num_classes = logits_model.output.shape[-1]
    class_weights = np.array(fold["class_weights"] or [1.0] * num_classes, np.float32)

    def loss_fn(trainable, non_trainable, x, y, w):
        logits, non_trainable = logits_model.stateless_call(trainable, non_trainable, x, training=True)
        return jnp.sum(loss_of(y, logits) * w) / jnp.maximum(jnp.sum(w), 1e-9), (logits, non_trainable)

    @jax.jit
    def step(trainable, non_trainable, states, x, y, w):
        (loss, (logits, non_trainable)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            trainable, non_trainable, x, y, w)
        updated, states = list(trainable), list(states)
        for part, (optimizer, state) in enumerate(zip(optimizers, states)):
            ids = [i for i, is_head in enumerate(which) if is_head == bool(part)]
            new, states[part] = optimizer.stateless_apply(state, [grads[i] for i in ids], [trainable[i] for i in ids])
            for i, value in zip(ids, new):
                updated[i] = value
        return updated, non_trainable, states, loss, jnp.argmax(logits, 1) == jnp.argmax(y, 1)

    @jax.jit
    def predict(trainable, non_trainable, x):
        return logits_model.stateless_call(trainable, non_trainable, x, training=False)[0]

    def logits_of(indices, trainable, non_trainable):
        out = []
        for start in range(0, len(indices), config.training.batch_size):
            batch = photos[indices[start:start + config.training.batch_size]].astype(np.float32)
            pad = np.zeros((config.training.batch_size - len(batch), *batch.shape[1:]), np.float32)
            padded = np.concatenate([batch, pad])
            out.append(np.asarray(predict(trainable, non_trainable, padded))[: len(batch)])
        return np.concatenate(out)

    trainable = [v.value for v in variables]
    non_trainable = [v.value for v in logits_model.non_trainable_variables]
    states = [[v.value for v in optimizer.variables] for optimizer in optimizers]
    val = np.array(fold["val"])
    best, history, started = (-1.0, -1, None), [], time.time()
    orders = [fit[np.random.default_rng([config.seed, epoch]).permutation(len(fit))]
              for epoch in range(config.training.finetune_epochs)]
    coming = pool.views(orders[0], config, 0, fit)
    for epoch, order in enumerate(orders):
        views = np.stack(coming.get())
        if epoch + 1 < len(orders):  # the next epoch's views are made while this one trains
            coming = pool.views(orders[epoch + 1], config, epoch + 1, fit)
        losses, hits = [], []
        for start in range(0, len(order), config.training.batch_size):
            batch = slice(start, start + config.training.batch_size)
            n = len(order[batch])
            pad = config.training.batch_size - n
            x = np.concatenate([views[batch], np.zeros((pad, *views.shape[1:]), np.uint8)]).astype(np.float32)
            y = keras.utils.to_categorical(np.concatenate([labels[order[batch]], np.zeros(pad, int)]), num_classes)
            w = np.concatenate([class_weights[labels[order[batch]]], np.zeros(pad, np.float32)])
            trainable, non_trainable, states, loss, hit = step(trainable, non_trainable, states, x, y, w)
            losses.append(float(loss) * n)
            hits.append(np.asarray(hit)[:n])
        val_logits = logits_of(val, trainable, non_trainable)
        top1 = float(np.mean(keras.metrics.sparse_top_k_categorical_accuracy(labels[val], val_logits, k=1)))
        if top1 > best[0]:
            best = (top1, epoch, ([np.asarray(v) for v in trainable], [np.asarray(v) for v in non_trainable]))
        history.append({"epoch": epoch, "loss": sum(losses) / len(order),
                        "accuracy": float(np.concatenate(hits).mean()), "val_accuracy": top1})
        log(f"  epoch {epoch + 1}/{config.training.finetune_epochs}: loss {history[-1]['loss']:.3f}, train top-1 "
            f"{history[-1]['accuracy']:.3f}, val top-1 {top1:.3f} (best {best[0]:.3f} at epoch {best[1] + 1}), "
            f"{time.time() - started:.0f} s")
    for variable, value in zip(variables, best[2][0]):
        variable.assign(value)
    for variable, value in zip(logits_model.non_trainable_variables, best[2][1]):
        variable.assign(value)
    return model, history


def held_out_logits(model: keras.Model, photos: np.ndarray, batch_size: int) -> np.ndarray:
    """The model's logits, as served (no augmentation), at full float32 precision."""
    logits_model = keras.Model(model.inputs, model.get_layer("logits").output)
    return np.concatenate([np.asarray(logits_model(photos[s:s + batch_size].astype(np.float32), training=False))
                           for s in range(0, len(photos), batch_size)])

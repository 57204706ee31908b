"""How a model is trained: two-stage transfer learning, which the train step, cross-validation
and the ablation all call.

Stage 1 trains the head on a frozen ImageNet backbone (on cached features: `training.model.features`),
on the classes or, with `fine_labels`, on the sources' fine-grained conditions summed to the
classes; stage 2 (optional) unfreezes the backbone's last N layers at a low learning rate,
BatchNorm staying in inference mode (`training.model.finetune`).
"""

import collections
from pathlib import Path

import keras
import numpy as np

from training.config import AugmentSettings, ExperimentConfig
from training.data.photos import dataset, mirror
from training.data.tables import fine_classes
from training.model.augmentation_tf import finetune_data
from training.model.backbones import (
    FEATURES_LAYER,
    classifier_for,
    copy_backbone,
    load_imagenet_weights,
    recalibrate_batchnorm,
    set_trainable,
    unfrozen_layers,
)
from training.model.features import pooled_features
from training.model.finetune import finetune


def augmentation(settings: AugmentSettings, seed: int) -> keras.Sequential | None:
    """Online augmentation layers, active only while training; their random stream starts from `seed`."""
    layers = []
    if settings.flip:
        layers.append(keras.layers.RandomFlip("horizontal_and_vertical", seed=seed))
    if settings.rotation:
        layers.append(keras.layers.RandomRotation(settings.rotation, fill_mode="reflect", seed=seed))
    if settings.zoom:
        layers.append(keras.layers.RandomZoom(settings.zoom, fill_mode="reflect", seed=seed))
    if settings.contrast:
        layers.append(keras.layers.RandomContrast(settings.contrast, value_range=(0, 255), seed=seed))
    if settings.brightness:
        layers.append(keras.layers.RandomBrightness(settings.brightness, value_range=(0, 255), seed=seed))
    return keras.Sequential(layers, name="augmentation") if layers else None


def new_model(config: ExperimentConfig, num_classes: int) -> keras.Model:
    model = classifier_for(config.model, num_classes, augmentation=augmentation(config.augment, config.seed))
    load_imagenet_weights(model, config.model)
    return model


def balanced_class_weights(rows: list[dict], names: list[str]) -> dict[int, float]:
    counts = collections.Counter(r["target_class"] for r in rows)
    return {i: len(rows) / (len(names) * counts[name]) for i, name in enumerate(names)}


def compile_for(model: keras.Model, config: ExperimentConfig, rate: float, num_classes: int) -> None:
    model.compile(
        optimizer=keras.optimizers.Adam(rate),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.training.label_smoothing),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy"),
                 keras.metrics.TopKCategoricalAccuracy(k=min(3, num_classes), name="top3")],
    )


def callbacks(config: ExperimentConfig, out: Path, stage: int) -> list:
    return [
        keras.callbacks.EarlyStopping(patience=config.training.early_stopping_patience, restore_best_weights=True),
        keras.callbacks.ReduceLROnPlateau(factor=0.3, patience=max(1, config.training.early_stopping_patience // 2)),
        keras.callbacks.ModelCheckpoint(out / f"best_stage{stage}.keras", save_best_only=True),
        keras.callbacks.CSVLogger(out / "history.csv", append=True),
    ]


def features_and_labels(model: keras.Model, ds,
                        augment: keras.layers.Layer | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Pooled backbone features and labels of a dataset; with `augment`, of randomly augmented copies."""
    pooled = keras.Model(model.inputs, model.get_layer("pool").output)

    def view(x):
        return augment(x, training=True) if augment is not None else x

    xs, ys = zip(*[(pooled(view(x), training=False).numpy(), y.numpy()) for x, y in ds])
    return np.concatenate(xs), np.concatenate(ys)


def feature_view(model: keras.Model, ds, config: ExperimentConfig, view: int) -> np.ndarray:
    """Features of one view of the photos: 0 the photos, 1 their mirror images, 2 + k augmented
    copy k (its own random stream, so copy k is the same however many copies are asked for)."""
    if view == 0:
        return features_and_labels(model, ds)[0]
    if view == 1:
        return features_and_labels(model, ds.map(lambda x, y: (mirror(x), y)))[0]
    return features_and_labels(model, ds, augmentation(config.augment, config.seed + view - 2))[0]


def fit_head(config: ExperimentConfig, train: tuple, val: tuple, weights: dict | None, out: Path) -> tuple:
    """A dropout + softmax head on standardised pooled features; returns it and the epochs run."""
    num_classes = train[1].shape[1]
    head = keras.Sequential([keras.Input(train[0].shape[1:]), standardiser(train[0]),
                             keras.layers.Dropout(config.model.dropout),
                             keras.layers.Dense(num_classes, kernel_regularizer=l2(config), name="logits"),
                             keras.layers.Activation("softmax")])
    compile_for(head, config, config.training.head_learning_rate, num_classes)
    history = head.fit(*train, validation_data=val, epochs=config.training.head_epochs,
                       batch_size=config.training.batch_size, class_weight=weights,
                       callbacks=callbacks(config, out, 1), verbose=0)
    return head, len(history.history["loss"])


def l2(config: ExperimentConfig) -> keras.regularizers.Regularizer | None:
    """Weight decay of the head (head_l2; None: off)."""
    return keras.regularizers.L2(config.training.head_l2) if config.training.head_l2 else None


def standardiser(features: np.ndarray) -> keras.layers.Normalization:
    """Standardises features with the training photos' mean and variance (the model's `features` layer)."""
    return keras.layers.Normalization(mean=features.mean(axis=0), variance=features.var(axis=0) + 1e-6,
                                      name=FEATURES_LAYER)


def one_hot(rows: list[dict], names: list[str], column: str) -> np.ndarray:
    return keras.utils.to_categorical([names.index(r[column]) for r in rows], len(names))


def train_head_on_features(model: keras.Model, config: ExperimentConfig, train_rows: list[dict],
                           val_rows: list[dict], names: list[str], weights: dict | None, out: Path) -> keras.Model:
    """Stage 1 on features computed once (`training.model.features`): the frozen backbone's output does not
    change between epochs, so each epoch costs milliseconds instead of a full pass over the photos.
    Mirrored (and optionally augmented) photos' features enlarge the training set. Returns the model
    with its standardisation and head (fine-grained with `fine_labels`) in place."""
    views = [pooled_features(model, train_rows, config, 0), pooled_features(model, train_rows, config, 1)]
    if config.training.head_augmented_copies:
        ds = dataset(train_rows, names, config, shuffle=False)
        views += [feature_view(model, ds, config, v) for v in range(2, 2 + config.training.head_augmented_copies)]
    column, targets, parent_of = "target_class", names, None
    if config.model.fine_labels:
        column, targets = "fine_class", fine_classes(train_rows)
        parent_of = [names.index(next(r["target_class"] for r in train_rows if r["fine_class"] == f)) for f in targets]
        val_rows = [r for r in val_rows if r["fine_class"] in targets]  # a condition unseen in training: no target
    y_train = one_hot(train_rows, targets, column)
    head, _ = fit_head(config, (np.concatenate(views), np.tile(y_train, (len(views), 1))),
                       (pooled_features(model, val_rows, config, 0), one_hot(val_rows, targets, column)),
                       _fine_weights(weights, train_rows, names, targets, column), out)
    norm = head.get_layer(FEATURES_LAYER).get_config()
    trained = classifier_for(config.model, len(names), augmentation=augmentation(config.augment, config.seed),
                             parent_of=parent_of, feature_mean=norm["mean"], feature_variance=norm["variance"])
    copy_backbone(model, trained)
    trained.get_layer("fine_logits" if parent_of else "logits").set_weights(head.get_layer("logits").get_weights())
    return trained


def _fine_weights(weights: dict | None, rows: list[dict], names: list[str], targets: list[str], column: str):
    """Class weights carried over to fine-grained targets (each condition weighs as its class does)."""
    if weights is None or column == "target_class":
        return weights
    parent = {r[column]: r["target_class"] for r in rows}
    return {i: weights[names.index(parent[t])] for i, t in enumerate(targets)}


def fit(config: ExperimentConfig, train_rows: list[dict], val_rows: list[dict], names: list[str], out: Path,
        verbose: int = 2, resume: bool = False) -> keras.Model:
    """Train a fresh model on `train_rows`, early-stopped (stage 1) or best epoch chosen (stage 2) on
    `val_rows`; saves into `out`. With `resume`, an interrupted fine-tune continues from its checkpoint."""
    out.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(config.seed)
    model = new_model(config, len(names))
    train_ds = dataset(train_rows, names, config, shuffle=True)
    if config.model.imagenet_weights is None:
        recalibrate_batchnorm(model, next(iter(train_ds))[0])
    val_ds = dataset(val_rows, names, config, shuffle=False)
    weights = balanced_class_weights(train_rows, names) if config.training.class_weights else None
    (out / "history.csv").unlink(missing_ok=True)
    set_trainable(model, {})
    if config.training.head_on_features:
        print(f"stage 1: head on cached backbone features, up to {config.training.head_epochs} epochs")
        model = train_head_on_features(model, config, train_rows, val_rows, names, weights, out)
        set_trainable(model, {})
    else:
        print(f"stage 1: head on the frozen backbone, up to {config.training.head_epochs} epochs")
        compile_for(model, config, config.training.head_learning_rate, len(names))
        model.fit(train_ds, validation_data=val_ds, epochs=config.training.head_epochs, class_weight=weights,
                  callbacks=callbacks(config, out, 1), verbose=verbose)
    if config.training.finetune_epochs > 0:
        trained = unfrozen_layers(config.model.backbone, config.training.unfreeze_layers)
        print(f"stage 2: fine-tune, the last {trained} backbone layers trainable (BatchNorm frozen), "
              f"{config.training.finetune_epochs} epochs")
        finetune(model, config, finetune_data(config, train_rows, val_rows, names, weights), out, resume)
    model.save(out / "model.keras")
    return model

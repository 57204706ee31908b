"""The fine-tune's optimizers, on any Keras backend: TensorFlow here (`training.model.finetune`) and JAX on
a machine with an accelerator (`training.steps.jax_crossval`).

Two AdamW, the backbone at a lower rate than the head, each warmed up then cosine-decayed, optionally
keeping a moving average of the weights (finetune_ema).
"""

import math

import keras

from training.config import TrainingSettings
from training.model.backbones import HEAD_LAYERS


def schedule(peak: float, total_steps: int, warmup_steps: int) -> keras.optimizers.schedules.LearningRateSchedule:
    return keras.optimizers.schedules.CosineDecay(0.0, max(1, total_steps - warmup_steps), warmup_target=peak,
                                                  warmup_steps=warmup_steps)


def backbone_and_head(model: keras.Model, variables: list) -> tuple[list, list]:
    """`variables` (trainable ones of `model` or of a model sharing its layers) split into the
    backbone's and the head's, each in the order given."""
    head = {id(v) for layer in model.layers if layer.name in HEAD_LAYERS for v in layer.trainable_variables}
    return [v for v in variables if id(v) not in head], [v for v in variables if id(v) in head]


def finetune_optimizers(settings: TrainingSettings, train_photos: int, groups: tuple[list, list]) -> list:
    """(backbone's, head's) AdamW for finetune_epochs over `train_photos`, each built for its group."""
    steps = math.ceil(train_photos / settings.batch_size)
    total, warmup = steps * settings.finetune_epochs, steps * settings.finetune_warmup_epochs
    ema = {"use_ema": True, "ema_momentum": settings.finetune_ema} if settings.finetune_ema else {}
    optimizers = [keras.optimizers.AdamW(schedule(rate, total, warmup), weight_decay=settings.finetune_weight_decay,
                                         **ema)
                  for rate in (settings.finetune_learning_rate, settings.finetune_head_learning_rate)]
    for optimizer, variables in zip(optimizers, groups):
        optimizer.build(variables)
    return optimizers

"""The fine-tune's optimizer, on any Keras backend: AdamW for the backbone and another, at a higher rate, for the
head's layers (one `keras.optimizers.MultiOptimizer`), each warmed up then cosine-decayed, optionally keeping a
moving average of the weights (finetune_ema).
"""

import math

import keras

from training.config import TrainingSettings
from training.model.backbones import HEAD_LAYERS


def schedule(peak: float, total_steps: int, warmup_steps: int) -> keras.optimizers.schedules.LearningRateSchedule:
    return keras.optimizers.schedules.CosineDecay(0.0, max(1, total_steps - warmup_steps), warmup_target=peak,
                                                  warmup_steps=warmup_steps)


def finetune_optimizer(settings: TrainingSettings, train_photos: int) -> keras.optimizers.MultiOptimizer:
    """For finetune_epochs over `train_photos`; its inner optimizers are named "backbone" and "head"."""
    steps = math.ceil(train_photos / settings.batch_size)
    total, warmup = steps * settings.finetune_epochs, steps * settings.finetune_warmup_epochs
    ema = {"use_ema": True, "ema_momentum": settings.finetune_ema} if settings.finetune_ema else {}
    backbone, head = (keras.optimizers.AdamW(schedule(rate, total, warmup), weight_decay=settings.finetune_weight_decay,
                                             name=name, **ema)
                      for name, rate in (("backbone", settings.finetune_learning_rate),
                                         ("head", settings.finetune_head_learning_rate)))
    return keras.optimizers.MultiOptimizer(
        keras.optimizers.OptimizerMap(backbone, {f"{layer}/.*": head for layer in HEAD_LAYERS}), name="finetune")

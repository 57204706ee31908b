"""The training input pipeline: photos a second that decoding and augmentation can feed.
"""

import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.common import CLASSES, median_ms, table


def training_input(batches: int) -> None:
    """Images per second of the tf.data input alone against one training step alone."""
    import keras

    from training.config import DataSettings, ExperimentConfig, ModelSettings, Source, TrainingSettings
    from training.data.photos import dataset
    from training.model.backbones import set_trainable, unfrozen_layers
    from training.model.fitting import new_model

    folder = Path(tempfile.mkdtemp())
    rng = np.random.default_rng(0)
    rows_ = []
    for i in range(64 * 4):
        path = folder / f"{i}.jpg"
        Image.fromarray(rng.integers(0, 255, (336, 448, 3), dtype=np.uint8)).save(path, quality=90)
        rows_.append({"path": str(path), "source": "bench", "target_class": CLASSES[i % 3]})
    config = ExperimentConfig(data=DataSettings(sources=[Source("bench", str(folder), "")]),
                              model=ModelSettings(imagenet_weights=None), training=TrainingSettings(batch_size=32))
    names = CLASSES[:3]
    ds = dataset(rows_, names, config, shuffle=True)
    for _ in ds:  # first epoch decodes and fills the cache
        pass
    start = time.perf_counter()
    seen = sum(int(x.shape[0]) for x, _ in ds.repeat().take(batches))
    cached_rate = seen / (time.perf_counter() - start)
    fresh = dataset(rows_, names, config, shuffle=True)
    start = time.perf_counter()
    seen = sum(int(x.shape[0]) for x, _ in fresh.take(batches))
    first_rate = seen / (time.perf_counter() - start)
    model = new_model(config, len(names))
    set_trainable(model, unfrozen_layers(config))  # as in fine-tuning (stage 2), the costlier stage
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    x, y = next(iter(ds))
    step_ms = median_ms(lambda: model.train_on_batch(x, y), 5)
    step_rate = 32 / (step_ms / 1000)
    print("Training input (MobileNetV2, 224x224, batch 32, online augmentation in the model, last 30 layers trainable)\n")
    table(["tf.data, first epoch (decode)", "tf.data, cached epochs", "training step alone", "input starves the model?"],
          [[f"{first_rate:.0f} img/s", f"{cached_rate:.0f} img/s", f"{step_rate:.0f} img/s",
            "no" if min(first_rate, cached_rate) > step_rate else "yes"]])
    keras.backend.clear_session()

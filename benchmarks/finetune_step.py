"""The fine-tune's step on CPU under TensorFlow's two CPU allocators.

TensorFlow's default CPU allocator takes each tensor from malloc; the step's activations are tens of
MB each, above glibc's mmap threshold, so every step maps fresh pages and the kernel zeroes them. The
BFC allocator (TF_CPU_ALLOCATOR_USE_BFC) keeps what it freed for the next step. The allocator is
chosen when TensorFlow starts, so each row runs in a fresh process (`python -m benchmarks.finetune_step
CONFIG STEPS` prints one JSON line); models have random weights and the batch is random pixels.
"""

import json
import os
import subprocess
import sys

from benchmarks.common import ROOT, median_ms, table

ALLOCATORS = {"malloc (TensorFlow's default)": "false", "BFC (TF_CPU_ALLOCATOR_USE_BFC=true)": "true"}


def allocators(configs: list[str], steps: int) -> None:
    """Seconds a fine-tune step takes and the CPU seconds spent in the kernel, per config and allocator."""
    rows = []
    for config in configs:
        for name, flag in ALLOCATORS.items():
            done = subprocess.run([sys.executable, "-m", "benchmarks.finetune_step", config, str(steps)], cwd=ROOT,
                                  env={**os.environ, "TF_CPU_ALLOCATOR_USE_BFC": flag, "TF_CPP_MIN_LOG_LEVEL": "2"},
                                  capture_output=True, text=True, check=True)
            run = json.loads(done.stdout.splitlines()[-1])
            rows.append([config, name, f"{run['median_s']:.2f}", f"{run['batch'] / run['median_s']:.1f}",
                         f"{run['user_s']:.0f}", f"{run['system_s']:.0f}"])
    print(f"Fine-tune step, batch of the config, {steps} steps after a traced first one; CPU seconds of the whole process")
    table(["config", "allocator", "median s a step", "photos a second", "user CPU s", "kernel CPU s"], rows)


def time_steps(config_path: str, steps: int) -> dict:
    """The config's model (random weights, its trainable layers) compiled as the fine-tune compiles it
    (`training.model.finetune.trainable_logits`), stepped by Keras on one random batch."""
    import dataclasses

    import numpy as np

    from training.config import ExperimentConfig
    from training.model.finetune import trainable_logits
    from training.model.fitting import new_model

    config = ExperimentConfig.load(config_path)
    config = dataclasses.replace(config, model=dataclasses.replace(config.model, imagenet_weights=None))
    classes, batch, size = 13, config.training.batch_size, config.model.image_size
    logits_model = trainable_logits(new_model(config, classes), config, batch * (steps + 1))
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (batch, size, size, 3)).astype(np.float32)
    y = np.eye(classes, dtype=np.float32)[rng.integers(0, classes, batch)]
    w = np.ones(batch, dtype=np.float32)
    median_s = median_ms(lambda: logits_model.train_on_batch(x, y, sample_weight=w), steps) / 1000  # first call traces
    used = os.times()
    return {"median_s": median_s, "batch": batch, "user_s": used.user, "system_s": used.system}


if __name__ == "__main__":
    print(json.dumps(time_steps(sys.argv[1], int(sys.argv[2]))))

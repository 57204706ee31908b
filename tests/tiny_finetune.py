"""`python tests/tiny_finetune.py OUT [--stop-at EPOCH] [--resume]`: the pipeline's fine-tune
(`training.model.finetune`) of a tiny random-weight classifier on fixed random photos, on whichever Keras
backend the environment names; writes the weights it starts from to OUT/start.npz and those it ends
with to OUT/weights.npz. --stop-at interrupts it as that epoch begins (exit 3), as a machine taken back
part way does."""

import argparse
import sys
from pathlib import Path

import keras
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from training.config import ExperimentConfig
from training.model.backbones import classifier_for
from training.model.finetune import FineTuneData, finetune

PHOTOS, SIZE, CLASSES, EPOCHS = 40, 32, 3, 3


class Interrupted(Exception):
    pass


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--stop-at", type=int)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args()
    config = ExperimentConfig().changed(model={"image_size": SIZE, "imagenet_weights": None},
                                        training={"finetune_epochs": EPOCHS, "batch_size": 8, "finetune_ema": 0.9,
                                                  "unfreeze_layers": 1000})
    rng = np.random.default_rng(0)
    pixels = rng.uniform(0, 255, (PHOTOS, SIZE, SIZE, 3)).astype(np.float32)
    labels = rng.integers(CLASSES, size=PHOTOS)
    targets = keras.utils.to_categorical(labels, CLASSES)

    def batches(first_epoch: int):
        for epoch in range(first_epoch, EPOCHS):
            if epoch == args.stop_at:
                raise Interrupted
            order = np.random.default_rng([config.seed, epoch]).permutation(PHOTOS)
            for start in range(0, PHOTOS, 8):
                chosen = order[start:start + 8]
                yield pixels[chosen], targets[chosen], np.ones(len(chosen), np.float32)

    keras.utils.set_random_seed(1)
    model = classifier_for(config.model, CLASSES)
    args.out.mkdir(parents=True, exist_ok=True)
    np.savez(args.out / "start.npz", *[np.asarray(v) for v in model.variables])
    try:
        finetune(model, config, FineTuneData(batches, PHOTOS, pixels[:10], labels[:10]), args.out, args.resume,
                 verbose=0)
    except Exception as err:  # under TensorFlow the generator's exception arrives wrapped
        if "Interrupted" in f"{type(err).__name__} {err}":
            return 3
        raise
    np.savez(args.out / "weights.npz", *[np.asarray(v) for v in model.variables])
    return 0


if __name__ == "__main__":
    sys.exit(main())

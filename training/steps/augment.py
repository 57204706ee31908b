"""Step 3, augment (optional, as the original project did): balance classes offline.

Copies are made from TRAINING originals only, after the split, so no validation or
test photo has an augmented sibling in training. Each copy records the original it
came from (`augmented_from`). Seeded: the same config makes the same files.
"""

import collections
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance
from tqdm import tqdm

from training.config import ExperimentConfig
from training.data.photos import read_photo
from training.data.tables import read_rows, write_rows
from training.steps import already_done


def augmented_copy(photo: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A random flip, rotation, zoom/crop, brightness and contrast change of one photo."""
    if rng.random() < 0.5:
        photo = photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if rng.random() < 0.5:
        photo = photo.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
    photo = photo.rotate(float(rng.uniform(-20, 20)), resample=Image.Resampling.BILINEAR)
    keep = rng.uniform(0.75, 1.0)  # zoom in by cropping a random window
    w, h = photo.size
    cw, ch = round(w * keep), round(h * keep)
    x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    photo = photo.crop((x, y, x + cw, y + ch))
    photo = ImageEnhance.Brightness(photo).enhance(float(rng.uniform(0.8, 1.2)))
    return ImageEnhance.Contrast(photo).enhance(float(rng.uniform(0.8, 1.2)))


def balance(rows: list[dict], target: int, folder: Path, seed: int) -> list[dict]:
    """New training rows so every class has at least `target` training photos."""
    rng = np.random.default_rng(seed)
    by_class = collections.defaultdict(list)
    for row in rows:
        if row["split"] == "train" and row["target_class"]:  # not the photos of other conditions
            by_class[row["target_class"]].append(row)
    made = []
    for name, originals in sorted(by_class.items()):
        for i in tqdm(range(max(0, target - len(originals))), desc=f"augment {name}", unit="copy"):
            original = originals[i % len(originals)]
            path = folder / name / f"{Path(original['path']).stem}_aug{i:04d}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            augmented_copy(read_photo(original["path"]), rng).save(path, quality=92)
            made.append({**original, "path": str(path), "augmented_from": original["path"]})
    return made


def run(config: ExperimentConfig, force: bool = False) -> Path:
    out = config.out / "augmented.csv"
    if already_done("augment", out, force):
        return out
    made = balance(read_rows(config.out / "split.csv"), config.data.balance_to, config.out / "augmented", config.seed)
    write_rows(out, made)
    print(f"augment: {len(made)} training copies written")
    return out

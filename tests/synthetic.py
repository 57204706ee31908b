"""Generated photos for tests: three visually distinct "conditions" on skin-toned backgrounds.

Nothing is downloaded and no real clinical photo is used, so the tests run anywhere.
"""

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

CLASSES = ("Dots", "Rings", "Stripes")
OUT_OF_TAXONOMY = "Blank"
OTHER_SHAPES = ("Crosses", "Squares", "Triangles")  # drawn for the "another condition" source's conditions
# the folders that fit and measure the skin read-out: bare skin (skin, no condition) and pictures that are not skin
SKIN_FOLDERS = {"bare skin": "bare_skin", "not skin": "not_skin"}


def not_skin_picture(rng: np.random.Generator, size: int = 128) -> Image.Image:
    """A picture that is not skin: a blue, green or grey gradient crossed by a few straight bars."""
    start, end = rng.uniform([0, 40, 60], [90, 160, 230], (2, 3))
    ramp = np.linspace(0, 1, size)[:, None, None]
    pixels = start + (end - start) * ramp + rng.normal(0, 6, (size, size, 3))
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(1, 4))):
        y = int(rng.integers(0, size))
        draw.rectangle((0, y, size, y + int(rng.integers(4, 14))), fill=tuple(int(c) for c in rng.uniform(0, 90, 3)))
    return image


def make_photo(kind: str, rng: np.random.Generator, size: int = 128) -> Image.Image:
    tone = rng.uniform([170, 120, 90], [240, 200, 170])
    noise = rng.normal(0, 8, (size, size, 3))
    image = Image.fromarray(np.clip(tone + noise, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    red = tuple(int(c) for c in rng.uniform([150, 20, 20], [220, 70, 70]))
    blue = tuple(int(c) for c in rng.uniform([30, 40, 150], [70, 90, 220]))
    if kind == "Dots":
        for _ in range(int(rng.integers(14, 24))):
            x, y, r = *rng.integers(8, size - 8, 2), int(rng.integers(4, 8))
            draw.ellipse((x - r, y - r, x + r, y + r), fill=red)
    elif kind == "Rings":
        for _ in range(int(rng.integers(1, 3))):
            x, y, r = *rng.integers(30, size - 30, 2), int(rng.integers(15, 28))
            draw.ellipse((x - r, y - r, x + r, y + r), outline=blue, width=8)
    elif kind == "Stripes":
        brown = tuple(int(c) for c in rng.uniform([60, 40, 20], [100, 70, 40]))
        offset = int(rng.integers(0, 20))
        for x in range(-size + offset, size, 20):
            draw.line((x, 0, x + size, size), fill=brown, width=8)
    elif kind.split("_")[0] in OTHER_SHAPES:
        for _ in range(int(rng.integers(3, 6))):
            x, y, r = *rng.integers(16, size - 16, 2), int(rng.integers(6, 12))
            shape = {"Crosses": [(x - r, y - r), (x + r, y + r), (x, y), (x - r, y + r), (x + r, y - r)],
                     "Squares": [(x - r, y - r), (x + r, y - r), (x + r, y + r), (x - r, y + r), (x - r, y - r)],
                     "Triangles": [(x, y - r), (x + r, y + r), (x - r, y + r), (x, y - r)]}[kind.split("_")[0]]
            draw.line(shape, fill=red, width=4)
    return image


def write_dataset(root: Path, per_class: int = 24, seed: int = 0) -> Path:
    """Class folders of JPEGs plus a taxonomy file (`taxonomy.json`) mapping them."""
    rng = np.random.default_rng(seed)
    for kind in (*CLASSES, OUT_OF_TAXONOMY):
        folder = root / "photos" / kind
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class if kind != OUT_OF_TAXONOMY else 4):
            make_photo(kind, rng).save(folder / f"{kind.lower()}_{i:03d}.jpg", quality=92)
    for kind in (f"{shape}_{k}" for shape in OTHER_SHAPES for k in range(4)):  # 12 other conditions, each
        folder = root / "others" / kind  # kept whole on one side of every split
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(3):
            make_photo(kind, rng).save(folder / f"{kind.lower()}_{i:03d}.jpg", quality=92)
    drawers = {"bare_skin": lambda: make_photo(OUT_OF_TAXONOMY, rng), "not_skin": lambda: not_skin_picture(rng)}
    for name, draw in drawers.items():
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(24):
            draw().save(folder / f"{name}_{i:03d}.jpg", quality=92)
    taxonomy = {kind: kind for kind in CLASSES} | {OUT_OF_TAXONOMY: None}
    (root / "taxonomy.json").write_text(json.dumps(taxonomy), encoding="utf-8")
    return root


def tiny_config(root: Path, out: Path) -> Path:
    """An experiment config for a tiny, fast model on the generated photos."""
    config = {
        "output_dir": str(out),
        "data": {
            "sources": [{"name": "synthetic", "root": str(root / "photos"), "taxonomy": str(root / "taxonomy.json"),
                         "mask_boxes": [[0.0, 0.9, 0.1, 1.0]]},  # a corner where a logo would be (watermark check)
                        {"name": "others", "root": str(root / "others"), "taxonomy": "", "other_conditions": True}],
            "cv_folds": 2, "test_fraction": 0.2, "val_fraction": 0.2},
        "model": {"backbone": "mobilenet_v2", "alpha": 0.35, "image_size": 96, "imagenet_weights": None,
                  "fine_labels": True},
        # the fine-tune of a backbone trained from scratch learns three shapes in 12 epochs only with
        # gentle augmentation; every op of the strong one is tested on its own (test_training)
        "augment": {"flip": False, "rotation": 0.0, "zoom": 0.0, "crop_min": 0.9, "contrast": 0.0, "brightness": 0.0,
                    "saturation": 0.0, "hue": 0.0, "white_balance": 0.0, "jpeg_quality_min": 0, "erase": 0.0},
        "training": {"batch_size": 16, "head_epochs": 20, "head_learning_rate": 0.01, "finetune_epochs": 12,
                     "finetune_learning_rate": 0.001, "unfreeze_layers": 1000, "early_stopping_patience": 8},
        "evaluation": {"other_condition_coverage": 0.9, "shortlist_coverage": 0.8, "skin_coverage": 0.98,
                       "ood_folders": {name: str(root / folder) for name, folder in SKIN_FOLDERS.items()},
                       "skin_readout_folders": {"bare skin": True, "not skin": False}},
        "publish": {"model_name": "tiny-test-model"},
    }
    path = out.parent / f"{out.name}.json"
    path.write_text(json.dumps(config, indent=1), encoding="utf-8")
    return path

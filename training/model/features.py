"""Pooled backbone features of each photo, computed once and kept on disk.

While the backbone is ImageNet's and frozen, a photo's features never change: every model
of a run (the final one, each cross-validation fold, each cross-source run) reads them from
`<output_dir>/features/` instead of running the backbone again. The file name carries
everything the features depend on, so a changed setting never reads stale ones.
"""

import hashlib
import json
from pathlib import Path

import keras
import numpy as np
from tqdm import tqdm

from training.config import ExperimentConfig
from training.data.photos import mask_boxes, mirror, photo_pixels

BATCH = 32


def cache_file(config: ExperimentConfig, view: int) -> Path:
    model, data = config.model, config.data
    key = json.dumps([model.backbone, model.alpha, model.image_size, model.feature_layers, model.imagenet_weights,
                      data.blank_boxes, [s.mask_boxes for s in data.sources]])
    return config.out / "features" / f"{hashlib.sha256(key.encode()).hexdigest()[:12]}_view{view}.npz"


_LOADED: dict[Path, dict[str, np.ndarray]] = {}  # cache file -> its features by photo path, read once a process


def pooled_features(model: keras.Model, rows: list[dict], config: ExperimentConfig, view: int = 0,
                    cached: bool = True) -> np.ndarray:
    """(photos, features) of the `pool` layer for view 0 (the photo) or 1 (its mirror image).
    `cached=False` for a fine-tuned backbone; a backbone without ImageNet weights (random,
    recalibrated per model) is never cached. The cache file is read once a process, and photos it
    lacks are computed and added to it."""
    path = cache_file(config, view) if cached and config.model.imagenet_weights else None
    if path and path not in _LOADED:
        _LOADED[path] = _read(path)
    cache = _LOADED[path] if path else {}
    missing = list(dict.fromkeys(r["path"] for r in rows if r["path"] not in cache))
    if missing:
        pool = keras.Model(model.inputs, model.get_layer("pool").output)
        by_path = {r["path"]: r for r in rows}
        for start in tqdm(range(0, len(missing), BATCH), desc=f"features (view {view})", unit="batch"):
            paths = missing[start:start + BATCH]
            pixels = np.stack([photo_pixels(p, config.model.image_size, mask_boxes(config, by_path[p]["source"]))
                               for p in paths])
            pixels = (mirror(pixels) if view == 1 else pixels).astype(np.float32)
            cache.update(zip(paths, pool.predict(pixels, batch_size=BATCH, verbose=0)))
        if path:
            path.parent.mkdir(parents=True, exist_ok=True)
            np.savez(path, paths=np.array(list(cache)), features=np.stack(list(cache.values())))
    return np.stack([cache[r["path"]] for r in rows])


def _read(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        return {}
    with np.load(path, allow_pickle=False) as saved:
        return dict(zip(saved["paths"].tolist(), saved["features"]))

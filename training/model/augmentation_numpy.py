"""The fine-tune's augmentation (`training.model.augmentation_tf.augment`) in NumPy and Pillow, for a machine
without TensorFlow (`training.steps.jax_crossval`), run by a pool of processes while the accelerator trains.

It stays a hand-written twin because Keras's augmentation layers do not cover the recipe (no JPEG
re-compression, per-channel gains or quarter turns) and draw from a seed generator, not from a seed per
(seed, epoch, photo), on which a resumed run's views depend.

Neither Keras nor JAX is imported by the pool: it is forked before the accelerator is touched, and its
workers read the photos the parent held when it forked them.
"""

import io
import math
import multiprocessing

import numpy as np
from PIL import Image, ImageFilter

from training.config import BLUR_SIGMA, AugmentSettings, ExperimentConfig
from training.data.logo import logo_box, marked_photos, swap_logo

_PHOTOS: np.ndarray | None = None  # uint8 photos the workers read (inherited when forked)
_MARKED: np.ndarray | None = None  # which of them carry the logo (training.data.logo)
_LOGO_BOX: list[float] | None = None
# RGB <-> YIQ: a hue change is a rotation of the (I, Q) plane
_YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], np.float32)
_RGB = np.linalg.inv(_YIQ).astype(np.float32)


def augment_photo(image: np.ndarray, rng: np.random.Generator, settings: AugmentSettings, size: int) -> np.ndarray:
    """One random view of a uint8 photo: a square crop of crop_min..100% of the side resized to the
    input, the 8 flips and quarter turns, brightness, contrast, saturation (as in HSV) and hue (a
    rotation in YIQ) jitter, per-channel gains, a Gaussian blur, JPEG re-compression and a randomly
    erased rectangle. Returns uint8 pixels."""
    side = rng.uniform(settings.crop_min, 1.0)
    y0, x0 = rng.uniform(size=2) * (1.0 - side)
    h, w = image.shape[:2]
    box = (x0 * w, y0 * h, (x0 + side) * w, (y0 + side) * h)
    x = np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR, box=box), np.float32) / 255.0
    if settings.flip:
        x = np.rot90(x[:, ::-1] if rng.random() < 0.5 else x, rng.integers(4))
    if settings.brightness:
        x = x + np.float32(rng.uniform(-settings.brightness, settings.brightness))
    if settings.contrast:
        mean = x.mean(axis=(0, 1))
        x = (x - mean) * np.float32(rng.uniform(1 - settings.contrast, 1 + settings.contrast)) + mean
    if settings.saturation:  # HSV's saturation times a factor, at most 1: each channel's distance below the brightest
        value = x.max(axis=2, keepdims=True)
        spread = value - x.min(axis=2, keepdims=True)
        factor = np.minimum(np.float32(rng.uniform(1 - settings.saturation, 1 + settings.saturation)),
                            value / np.maximum(spread, 1e-6))
        x = value - factor * (value - x)
    if settings.hue:
        angle = rng.uniform(-settings.hue, settings.hue) * 2 * math.pi
        turn = np.array([[1, 0, 0], [0, math.cos(angle), -math.sin(angle)], [0, math.sin(angle), math.cos(angle)]],
                        np.float32)
        x = x @ (_RGB @ turn @ _YIQ).T
    if settings.white_balance:
        x = x * (1.0 + rng.uniform(-settings.white_balance, settings.white_balance, 3)).astype(np.float32)
    x = np.round(np.clip(x, 0.0, 1.0) * 255).astype(np.uint8)
    if settings.blur:
        sigma, coin = rng.uniform(size=2)
        if coin < settings.blur:
            radius = float(BLUR_SIGMA[0] + (BLUR_SIGMA[1] - BLUR_SIGMA[0]) * sigma)
            x = np.asarray(Image.fromarray(x).filter(ImageFilter.GaussianBlur(radius)))
    if settings.jpeg_quality_min:
        buffer = io.BytesIO()
        Image.fromarray(x).save(buffer, "JPEG", quality=int(rng.integers(settings.jpeg_quality_min, 101)))
        x = np.asarray(Image.open(buffer).convert("RGB"))
    if settings.erase:
        area, aspect, cy, cx, coin = rng.uniform(size=5)
        if coin < settings.erase:
            area, aspect = 0.02 + 0.18 * area, math.exp((aspect - 0.5) * 2 * math.log(3.0))
            eh, ew = math.sqrt(area * aspect) * size, math.sqrt(area / aspect) * size
            rows, cols = np.arange(size)[:, None], np.arange(size)[None, :]
            inside = (np.abs(rows - cy * size) < eh / 2) & (np.abs(cols - cx * size) < ew / 2)
            x = np.where(inside[..., None], rng.integers(0, 256, x.shape, dtype=np.uint8), x)
    return np.ascontiguousarray(x)


def _view(task: tuple) -> np.ndarray:
    index, seed, config, donors = task
    photo = _PHOTOS[index]
    # training.data.logo, the very code the TensorFlow fine-tune runs
    if config.augment.logo_swap and _LOGO_BOX is not None:
        photo = swap_logo(_PHOTOS, index, _MARKED, donors, _LOGO_BOX, config.augment.logo_swap,
                          np.random.default_rng([*seed, 7]))
    return augment_photo(photo, np.random.default_rng(seed), config.augment, config.model.image_size)


class AugmentingPool:
    """Processes that make an epoch's augmented views, each photo's draws seeded by (seed, epoch, photo)."""

    def __init__(self, photos: np.ndarray, workers: int, sources: list[str] | None = None,
                 config: ExperimentConfig | None = None):
        """`sources` (each photo's) and `config` let the views swap logos (config.augment.logo_swap)."""
        global _PHOTOS, _MARKED, _LOGO_BOX
        _PHOTOS = photos
        if config is not None and sources is not None:
            _LOGO_BOX = logo_box(config.data.sources)
            _MARKED = marked_photos(sources, config.data.sources)
        self._pool = multiprocessing.get_context("fork").Pool(workers)

    def views(self, indices: np.ndarray, config: ExperimentConfig, epoch: int, fit: np.ndarray | None = None):
        """An async result whose .get() is the uint8 views of `indices`, in order; pasted logos come from the
        marked photos among `fit` (the fold's training photos)."""
        fit = np.asarray(fit if fit is not None and _MARKED is not None else [], int)
        donors = fit[_MARKED[fit]] if len(fit) else fit
        tasks = [(int(i), [config.seed, epoch, int(i)], config, donors) for i in indices]
        return self._pool.map_async(_view, tasks, chunksize=16)

    def close(self) -> None:
        self._pool.terminate()

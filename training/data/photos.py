"""Photos to `tf.data` batches, decoded by the same code the app uses.

Decoding and resizing run in parallel (`AUTOTUNE`), are cached after the first epoch,
then shuffled, batched and prefetched so the model never waits for input.
"""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import tensorflow as tf
from PIL import Image

from explain.images import fit_to_model, load_photo
from training.config import ExperimentConfig

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"}
MAX_BYTES, MAX_PIXELS = 100 * 1024 * 1024, 100_000_000  # curated data, not uploads: generous limits
BLANK = 128  # the middle grey every blanked box gets, in every photo alike (a whole number: pixels are uint8)


def blank_boxes(pixels: np.ndarray, boxes: list[list[float]]) -> np.ndarray:
    """Fill each [x0, y0, x1, y1] box (fractions of width and height) with one grey.

    Used for watermarks: blanking the same box in EVERY photo, whatever its source,
    leaves "the logo is there" nothing to learn from.
    """
    height, width = pixels.shape[:2]
    for x0, y0, x1, y1 in boxes:
        pixels[round(y0 * height) : round(y1 * height), round(x0 * width) : round(x1 * width)] = BLANK
    return pixels


def box_mask(size: int, boxes: list[list[float]]) -> np.ndarray:
    """Boolean (size, size) map of the pixels inside any box."""
    return blank_boxes(np.zeros((size, size), dtype=np.float32), boxes) == BLANK


def mask_boxes(config: ExperimentConfig, source: str) -> list[list[float]]:
    """The boxes to blank in a photo of `source` (config.data.blank_boxes: none, its own, or every source's)."""
    data = config.data
    blanked = [s for s in data.sources if data.blank_boxes == "all" or (data.blank_boxes == "own" and s.name == source)]
    return [box for s in blanked for box in s.mask_boxes]


def mirror(pixels):
    """A batch of photos (n, height, width, 3) mirrored left to right: the second feature view and TTA."""
    return pixels[:, :, ::-1]



def read_photo(path: str) -> Image.Image:
    """A dataset photo through the app's own decoder (orientation, mode), with training's limits."""
    return load_photo(path, MAX_BYTES, MAX_PIXELS)


def photo_pixels(path: str, image_size: int, boxes: list[list[float]]) -> np.ndarray:
    """uint8 model input for one photo file, resized whole as the app does, boxes blanked: the one
    preparation of training pixels (the feature cache, the fine-tune, evaluation)."""
    pixels = fit_to_model(read_photo(path), image_size).astype(np.uint8)
    return blank_boxes(pixels, boxes)


def load_pixels(rows: list[dict], config: ExperimentConfig, size: int | None = None) -> np.ndarray:
    """All photos of `rows` as one uint8 array (n, size, size, 3), size the model's input unless given,
    decoded on two threads (Pillow decodes outside the GIL)."""
    def one(row):
        return photo_pixels(row["path"], size or config.model.image_size, mask_boxes(config, row["source"]))

    with ThreadPoolExecutor(2) as pool:
        return np.stack(list(pool.map(one, rows)))


def dataset(rows: list[dict], class_names: list[str], config: ExperimentConfig, shuffle: bool) -> tf.data.Dataset:
    """(pixels, one-hot label) batches."""
    paths = [r["path"] for r in rows]
    boxes = tf.ragged.constant([mask_boxes(config, r["source"]) or [[0.0, 0.0, 0.0, 0.0]] for r in rows],
                               ragged_rank=1, dtype=tf.float32).to_tensor()
    labels = tf.one_hot([class_names.index(r["target_class"]) for r in rows], len(class_names))

    def load(path, box, label):
        def decode(p, b):
            return photo_pixels(p.decode(), config.model.image_size, b.tolist())

        pixels = tf.numpy_function(decode, [path, box], tf.uint8)
        pixels.set_shape((config.model.image_size, config.model.image_size, 3))
        return pixels, label

    ds = tf.data.Dataset.from_tensor_slices((paths, boxes, labels))
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE).cache()
    if shuffle:
        ds = ds.shuffle(len(rows), seed=config.seed, reshuffle_each_iteration=True)
    return ds.map(lambda x, y: (tf.cast(x, tf.float32), y)).batch(config.training.batch_size).prefetch(tf.data.AUTOTUNE)

"""The fine-tune's training views under TensorFlow: photos decoded once by the app's decoder (whole photo
resized to a little over the model's input), kept in memory as uint8, their logos swapped
(`training.data.logo`) and augmented in `tf.data` by stateless random ops seeded by (seed, epoch, photo), so
an epoch's batches are the same whether or not the run was interrupted. Validation photos are resized whole
to the input, as the app does. A machine without TensorFlow makes the same views in NumPy and Pillow
(`training.model.augmentation_numpy`).
"""

import math

import keras
import numpy as np
import tensorflow as tf

from training.config import BLUR_SIGMA, AugmentSettings, ExperimentConfig
from training.data.logo import logo_swapper
from training.data.photos import load_pixels
from training.model.finetune import FineTuneData

BLUR_KERNEL_HALF_WIDTH = 6  # pixels each side of the blur's kernel: 3 sigmas of the widest


def finetune_data(config: ExperimentConfig, train_rows: list[dict], val_rows: list[dict], names: list[str],
                  class_weights: dict | None) -> FineTuneData:
    """The pipeline's fine-tune input: every epoch's augmented batches of `train_rows`, and `val_rows` as served."""
    pixels = load_pixels(train_rows, config, decode_size(config.model.image_size))
    shown = logo_swapper(pixels, train_rows, config.data.sources, config.augment.logo_swap, config.seed)
    targets = keras.utils.to_categorical([names.index(r["target_class"]) for r in train_rows], len(names))
    weights = np.array([class_weights[names.index(r["target_class"])] if class_weights else 1.0 for r in train_rows],
                       dtype=np.float32)

    def batches(first_epoch: int):
        for epoch in range(first_epoch, config.training.finetune_epochs):
            yield from epoch_batches(shown(epoch), targets, weights, config, epoch).as_numpy_iterator()

    return FineTuneData(batches, len(train_rows), load_pixels(val_rows, config).astype(np.float32),
                        np.array([names.index(r["target_class"]) for r in val_rows]))


def decode_size(image_size: int) -> int:
    """Side of the in-memory training copies: room for random crops, resized back to the input."""
    return round(image_size * 8 / 7)


def augment(image: tf.Tensor, seed: tf.Tensor, settings: AugmentSettings, size: int) -> tf.Tensor:
    """One random view of a uint8 photo: a square crop of crop_min..100% of the side resized to the
    input, the 8 flips and quarter turns, brightness, contrast, saturation and hue jitter, per-channel
    gains (another camera's white balance), a blur (an out-of-focus camera), JPEG re-compression and a
    randomly erased rectangle (so no patch, a logo or a blank, can decide the class). Returns float32
    pixels in [0, 255]."""
    seeds = tf.unstack(tf.random.experimental.stateless_split(seed, 12))
    uniform = tf.random.stateless_uniform
    side = uniform([], seeds[0], settings.crop_min, 1.0)
    y0, x0 = tf.unstack(uniform([2], seeds[1]) * (1.0 - side))
    x = tf.image.crop_and_resize(tf.cast(image, tf.float32)[None] / 255.0, [[y0, x0, y0 + side, x0 + side]], [0],
                                 [size, size])[0]
    if settings.flip:
        x = tf.image.stateless_random_flip_left_right(x, seeds[2])
        x = tf.image.rot90(x, tf.random.stateless_uniform([], seeds[3], 0, 4, dtype=tf.int32))
    if settings.brightness:
        x = tf.image.stateless_random_brightness(x, settings.brightness, seeds[4])
    if settings.contrast:
        x = tf.image.stateless_random_contrast(x, 1 - settings.contrast, 1 + settings.contrast, seeds[5])
    if settings.saturation:
        x = tf.image.stateless_random_saturation(x, 1 - settings.saturation, 1 + settings.saturation, seeds[6])
    if settings.hue:
        x = tf.image.stateless_random_hue(x, settings.hue, seeds[7])
    if settings.white_balance:
        x = x * (1.0 + uniform([3], seeds[8], -settings.white_balance, settings.white_balance))
    x = tf.clip_by_value(x, 0.0, 1.0)
    if settings.blur:  # its own seed, so the other ops draw what they drew before blur existed
        x = _blur(x, tf.random.experimental.stateless_fold_in(seed, 12), settings.blur)
    if settings.jpeg_quality_min:
        x = tf.image.stateless_random_jpeg_quality(x, settings.jpeg_quality_min, 100, seeds[9])
    if settings.erase:
        x = _erase(x, seeds[10], seeds[11], settings.erase)
    return x * 255.0


def _blur(x: tf.Tensor, seed: tf.Tensor, probability: float) -> tf.Tensor:
    """With `probability`, a Gaussian blur of a random sigma in BLUR_SIGMA (edges reflected), one axis at a time."""
    sigma, coin = tf.unstack(tf.random.stateless_uniform([2], seed))
    half = BLUR_KERNEL_HALF_WIDTH
    offsets = tf.range(-half, half + 1, dtype=tf.float32)
    kernel = tf.exp(-offsets**2 / (2 * (BLUR_SIGMA[0] + (BLUR_SIGMA[1] - BLUR_SIGMA[0]) * sigma) ** 2))
    kernel = kernel / tf.reduce_sum(kernel)
    padded = tf.pad(x, [[half, half], [half, half], [0, 0]], "REFLECT")[None]
    for shape in ([-1, 1, 1, 1], [1, -1, 1, 1]):
        padded = tf.nn.depthwise_conv2d(padded, tf.tile(tf.reshape(kernel, shape), [1, 1, 3, 1]), [1, 1, 1, 1],
                                        "VALID")
    return tf.where(coin < probability, padded[0], x)


def _erase(x: tf.Tensor, where: tf.Tensor, fill: tf.Tensor, probability: float) -> tf.Tensor:
    """With `probability`, a rectangle of 2-20% of the photo at a random place becomes random noise."""
    size = tf.cast(tf.shape(x)[0], tf.float32)
    area, aspect, cy, cx, coin = tf.unstack(tf.random.stateless_uniform([5], where))
    area, aspect = 0.02 + 0.18 * area, tf.exp((aspect - 0.5) * 2 * math.log(3.0))
    h, w = tf.sqrt(area * aspect) * size, tf.sqrt(area / aspect) * size
    rows = tf.range(size)[:, None]
    cols = tf.range(size)[None, :]
    inside = ((tf.abs(rows - cy * size) < h / 2) & (tf.abs(cols - cx * size) < w / 2) & (coin < probability))
    return tf.where(inside[..., None], tf.random.stateless_uniform(tf.shape(x), fill), x)


def epoch_batches(pixels: np.ndarray, targets: np.ndarray, weights: np.ndarray, config: ExperimentConfig,
                  epoch: int) -> tf.data.Dataset:
    """The epoch's shuffled, augmented batches: order and every random draw fixed by (seed, epoch)."""
    order = np.random.default_rng([config.seed, epoch]).permutation(len(pixels))
    seeds = np.stack([np.full(len(order), config.seed * 1000 + epoch), order], axis=1)
    ds = tf.data.Dataset.from_tensor_slices((order, seeds))
    settings, size = config.augment, config.model.image_size
    ds = ds.map(lambda i, s: (augment(tf.gather(pixels, i), s, settings, size), tf.gather(targets, i),
                              tf.gather(weights, i)), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(config.training.batch_size).prefetch(2)

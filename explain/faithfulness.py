"""How far can a map be trusted? Hide the pixels it marks most and see how far the explained
class's probability falls, against hiding as many pixels at random.

Deletion (Petsiuk et al. 2018, RISE): hide the map's top 5%, 10%, 20%, ... and follow the
class's probability down; insertion: start from the photo with everything hidden and show
the top pixels back. Hidden pixels take a blurred copy of the photo, not black (in the spirit
of ROAD, Rong et al. 2022), so what the model sees stays photo-like. The random baseline hides
16x16-pixel blocks in an order seeded by the photo itself, so a photo always gets the same
numbers. All masked copies of a photo go through the model together (`Classifier.probabilities`).
"""

import zlib
from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageFilter

from explain.overlay import upsample

SENTENCE_FRACTION = 0.2  # the share of the photo hidden for the sentence under the heatmap
CURVE_FRACTIONS = (0.05, 0.1, 0.2, 0.4, 0.7)  # the shares hidden (or shown) along a curve
BLUR_RADIUS = 12  # Gaussian, in model-input pixels
BLOCK = 16  # side of the random baseline's blocks, in model-input pixels
RANDOM_DRAWS = 1  # random masks averaged for the sentence: each costs most of a forward pass


@dataclass(frozen=True)
class Check:
    """The class's probability on the photo, with the map's top `fraction` hidden, and with a
    random `fraction` hidden (the mean over RANDOM_DRAWS masks)."""

    target: str
    fraction: float
    probability: float
    map_hidden: float
    random_hidden: float

    @property
    def beats_random(self) -> bool:
        return self.map_hidden < self.random_hidden

    def as_dict(self) -> dict:
        return {**asdict(self), "beats_random": self.beats_random}


@dataclass(frozen=True)
class Curve:
    """The class's probability against the share of the photo hidden (deletion: lower is a more
    faithful map) and, optionally, shown (insertion: higher is better), from 0 to 1."""

    shares: tuple
    deletion: tuple
    insertion: tuple | None = None

    @property
    def deletion_area(self) -> float:
        return float(np.trapezoid(self.deletion, self.shares))

    @property
    def insertion_area(self) -> float | None:
        return None if self.insertion is None else float(np.trapezoid(self.insertion, self.shares))

    def as_dict(self) -> dict:
        return {**asdict(self), "deletion_area": self.deletion_area, "insertion_area": self.insertion_area}


def check(classifier, pixels: np.ndarray, explanation, fraction: float = SENTENCE_FRACTION) -> Check:
    """The numbers for the sentence under an explanation's heatmap: the masked copies in one batch."""
    photo, soft = _photo_and_blurred(pixels)
    count = round(fraction * photo.shape[0] * photo.shape[1])
    orders = [map_order(explanation.cam, photo.shape[0])] + [random_order(photo, d) for d in range(RANDOM_DRAWS)]
    hidden = [order[:count] for order in orders]
    after = classifier.probabilities(np.stack([_hide(photo, soft, chosen) for chosen in hidden]))
    after = after[:, explanation.target_index]
    before = explanation.prediction.probabilities[explanation.target_index]
    return Check(explanation.target, fraction, float(before), float(after[0]), float(after[1:].mean()))


def curves(classifier, pixels: np.ndarray, cams: dict[str, np.ndarray], class_index: int,
           insertion: bool = True, fractions: tuple = CURVE_FRACTIONS) -> dict[str, Curve]:
    """Deletion (and insertion) curves of each map in `cams`, and of the random baseline under the
    key "random", for one class; every masked copy in one call."""
    photo, soft = _photo_and_blurred(pixels)
    orders = {name: map_order(cam, photo.shape[0]) for name, cam in cams.items()} | {"random": random_order(photo)}
    batch = [photo, soft]
    for order in orders.values():
        prefixes = [order[: round(f * len(order))] for f in fractions]
        batch += [_hide(photo, soft, chosen) for chosen in prefixes]
        if insertion:
            batch += [_hide(soft, photo, chosen) for chosen in prefixes]
    scores = classifier.probabilities(np.stack(batch))[:, class_index]
    full, none, rest = scores[0], scores[1], iter(scores[2:])
    shares = (0.0, *fractions, 1.0)
    result = {}
    for name in orders:
        deleted = (full, *(next(rest) for _ in fractions), none)
        shown = (none, *(next(rest) for _ in fractions), full) if insertion else None
        result[name] = Curve(shares, tuple(map(float, deleted)), None if shown is None else tuple(map(float, shown)))
    return result


def map_order(cam: np.ndarray, size: int) -> np.ndarray:
    """The photo's pixels (flat indices), most highlighted first, the map stretched over the photo."""
    return np.argsort(-upsample(cam, (size, size)).ravel(), kind="stable")


def random_order(photo: np.ndarray, draw: int = 0) -> np.ndarray:
    """The photo's pixels in a random order of BLOCK x BLOCK blocks, seeded by the photo and the draw."""
    rng = np.random.default_rng([zlib.crc32(photo.tobytes()), draw])
    blocks = _block_pixels(photo.shape[0])
    return blocks[np.argsort(rng.permutation(len(blocks)))].ravel()


@lru_cache(maxsize=4)
def _block_pixels(size: int) -> np.ndarray:
    """(blocks, BLOCK * BLOCK) flat pixel indices of each block of a size x size image, row by row
    (a block cut by the edge repeats its last row and column, so every block has as many entries)."""
    rows = np.minimum(np.arange(0, size, BLOCK)[:, None] + np.arange(BLOCK)[None], size - 1)  # (blocks, BLOCK)
    pixels = rows[:, None, :, None] * size + rows[None, :, None, :]  # (block row, block col, y, x)
    return pixels.reshape(-1, BLOCK * BLOCK)


def _hide(photo: np.ndarray, cover: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    """The photo with the pixels `chosen` (flat indices) taken from `cover`."""
    result = photo.reshape(-1, 3).copy()
    result[chosen] = cover.reshape(-1, 3)[chosen]
    return result.reshape(photo.shape)


def _photo_and_blurred(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    photo = np.asarray(pixels[0], dtype=np.float32)
    soft = Image.fromarray(np.clip(photo, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(BLUR_RADIUS))
    return photo, np.asarray(soft, dtype=np.float32)

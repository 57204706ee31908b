"""The logo made uninformative (training.data.logo): removal, pasting and the swap both fine-tunes run."""

import numpy as np
import pytest
from PIL import Image, ImageDraw

from training.config import AugmentSettings, DataSettings, ExperimentConfig, ModelSettings, Source
from training.data.logo import (
    MARK_CONTRAST,
    control_box,
    cut_logo,
    logo_box,
    logo_swapper,
    marked_sources,
    paste_logo,
    remove_logo,
)
from training.model.augmentation_numpy import AugmentingPool

SOURCES = [Source("marked", "r", "t", mask_boxes=[[0.05, 0.7, 0.2, 0.9], [0.05, 0.8, 0.4, 0.95]]),
           Source("marked-other", "r", "t", library="marked"), Source("phone", "r", "t")]
BOX = logo_box(SOURCES)
SIZE = 128


def skin(rng: np.random.Generator) -> np.ndarray:
    """A smooth, skin-coloured photo with a few darker blotches."""
    y, x = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    base = np.array([200, 150, 130]) + 20 * np.sin(6 * x + rng.uniform(0, 6))[..., None]
    for cy, cx in rng.uniform(0, 1, (3, 2)):
        base = base - 60 * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / 0.005)[..., None]
    return np.clip(base, 0, 255).astype(np.uint8)


def with_logo(photo: np.ndarray) -> np.ndarray:
    """White letters and a ring in the logo box, as DermNet NZ's mark looks."""
    image = Image.fromarray(photo)
    draw = ImageDraw.Draw(image)
    x0, y0, x1, y1 = (np.array(BOX) * SIZE).round().astype(int)
    draw.ellipse([x0 + 3, y0 + 2, x0 + 16, y0 + 15], outline="white", width=2)
    draw.text((x0 + 4, y0 + 17), "DermNet", fill="white")
    return np.asarray(image)


def logo_marks(photo: np.ndarray) -> int:
    """How many pixels of the logo box stand out as white marks."""
    return int((cut_logo(photo, BOX)[..., 3] > 0).sum())


def test_the_logo_box_covers_every_mask_and_each_library_carrying_it():
    assert BOX == [0.05, 0.7, 0.4, 0.95]
    assert marked_sources(SOURCES) == {"marked", "marked-other"}
    assert logo_box([Source("plain", "r", "t")]) is None
    x0, y0, x1, y1 = control_box(BOX)
    assert (x1 - x0, y1 - y0) == pytest.approx((0.35, 0.25)) and x0 > 0.5 and y1 < 0.5  # opposite corner


def test_removal_blurs_the_box_past_reading_and_nothing_else():
    photo = with_logo(skin(np.random.default_rng(0)))
    assert logo_marks(photo) > 40
    removed = remove_logo(photo, BOX)
    changed = np.any(removed != photo, axis=2)
    rows, cols = np.nonzero(changed)
    assert rows.min() >= round(BOX[1] * SIZE) and cols.max() < round(BOX[2] * SIZE)  # only inside the box
    assert logo_marks(removed) == 0  # no white mark stands MARK_CONTRAST above its surroundings any more
    assert MARK_CONTRAST > 0


def test_a_pasted_logo_brings_its_marks_and_not_the_other_photos_background():
    rng = np.random.default_rng(1)
    donor, plain = with_logo(skin(rng)), skin(rng)
    pasted = paste_logo(plain, cut_logo(donor, BOX), BOX)
    marks = cut_logo(donor, BOX)[..., 3] > 0
    x0, y0, x1, y1 = (np.array(BOX) * SIZE).round().astype(int)
    inside, before, logo = pasted[y0:y1, x0:x1], plain[y0:y1, x0:x1], donor[y0:y1, x0:x1]
    assert np.array_equal(inside[marks], logo[marks]) and np.array_equal(inside[~marks], before[~marks])
    assert np.array_equal(np.delete(pasted, np.s_[y0:y1], axis=0), np.delete(plain, np.s_[y0:y1], axis=0))


def test_after_the_swap_a_logo_says_nothing_of_the_library():
    """At rate 0.5 a logo shows on about half of each library's views, and the rest are blurred: the
    model cannot tell a library, nor through it a class, by the box. Each epoch's views are fixed."""
    rng = np.random.default_rng(2)
    photos = np.stack([with_logo(skin(rng)) for _ in range(60)] + [skin(rng) for _ in range(60)])
    rows = [{"source": "marked"}] * 30 + [{"source": "marked-other"}] * 30 + [{"source": "phone"}] * 60
    shown = logo_swapper(photos, rows, SOURCES, 0.5, seed=3)
    epoch0 = shown(0)
    has_logo = np.array([logo_marks(p) > 40 for p in epoch0])
    blurred = np.array([not np.array_equal(p, q) and logo_marks(p) == 0 for p, q in zip(epoch0, photos)])
    assert np.all(has_logo | blurred)
    marked_share, phone_share = has_logo[:60].mean(), has_logo[60:].mean()
    assert 0.3 < marked_share < 0.7 and 0.3 < phone_share < 0.7 and abs(marked_share - phone_share) < 0.25
    assert np.array_equal(shown(0), epoch0) and not np.array_equal(shown(1), epoch0)  # a resumed epoch is the same
    assert logo_swapper(photos, rows, SOURCES, 0.0, seed=3)(0) is photos  # off: the photos as they are


def test_the_jax_recipes_pool_swaps_logos_with_the_same_code():
    rng = np.random.default_rng(4)
    photos = np.stack([with_logo(skin(rng)) for _ in range(8)] + [skin(rng) for _ in range(8)])
    sources = ["marked"] * 8 + ["phone"] * 8
    off = {"crop_min": 1.0, "flip": False, "brightness": 0, "contrast": 0, "saturation": 0, "hue": 0,
           "white_balance": 0, "jpeg_quality_min": 0, "erase": 0}
    config = ExperimentConfig(data=DataSettings(sources=SOURCES), model=ModelSettings(image_size=SIZE),
                              augment=AugmentSettings(**off, logo_swap=0.5))
    pool = AugmentingPool(photos, 2, sources, config)
    try:
        views = np.stack(pool.views(np.arange(16), config, 0, np.arange(16)).get())
        off = np.stack(pool.views(np.arange(16), config.changed(augment={"logo_swap": 0.0}), 0).get())
    finally:
        pool.close()
    has_logo = np.array([logo_marks(v) > 40 for v in views])
    assert has_logo[8:].any() and (~has_logo[:8]).any()  # pasted on phone photos, removed from marked ones
    assert all(logo_marks(v) > 40 for v in off[:8]) and not any(logo_marks(v) > 40 for v in off[8:])

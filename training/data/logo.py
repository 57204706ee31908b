"""A library's logo, made to tell the model nothing: where it sits, how it is removed, pasted and swapped.

Every DermNet NZ photo carries a logo in its bottom-left corner; no visitor's photo does. A model
that can see it learns "DermNet NZ", and through that library's mix of classes, a class. Training
swaps it (`swap_logos`): in every view the logo box holds a logo or a blurred patch at the same odds
whatever the library, so neither says anything. The evaluation removes it (`remove_logo`) to score
photos as a visitor's are, and blurs a box of the same size elsewhere as the control.

Pure NumPy and Pillow, so the fine-tune's views under TensorFlow (`training.model.augmentation_tf`) and
without it (`training.model.augmentation_numpy`) run the very same code.
"""

import numpy as np
from PIL import Image, ImageFilter

BLUR_SHARE = 0.25  # the removal's Gaussian radius, as a share of the box's height: the logo's letters vanish
MARK_CONTRAST = 30  # levels above its blurred surroundings that make a pixel part of the (white) logo


def logo_box(sources) -> list[float] | None:
    """[x0, y0, x1, y1] (fractions) around every source's `mask_boxes`: where the logo sits; None without one."""
    boxes = [box for source in sources for box in source.mask_boxes]
    if not boxes:
        return None
    return [min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)]


def marked_sources(sources) -> set[str]:
    """Names of the sources whose photos carry the logo: those with mask_boxes and the others of their library."""
    libraries = {s.photo_library for s in sources if s.mask_boxes}
    return {s.name for s in sources if s.photo_library in libraries}


def marked_photos(photo_sources, sources) -> np.ndarray:
    """Which photos carry the logo, from each photo's source name."""
    return np.isin(list(photo_sources), sorted(marked_sources(sources)))


def control_box(box: list[float]) -> list[float]:
    """A box of the same size in the opposite corner: what removing any patch that size costs."""
    x0, y0, x1, y1 = box
    return [1 - x1, 1 - y1, 1 - x0, 1 - y0]


def _slices(box: list[float], height: int, width: int) -> tuple[slice, slice]:
    x0, y0, x1, y1 = box
    return slice(round(y0 * height), round(y1 * height)), slice(round(x0 * width), round(x1 * width))


def remove_logo(pixels: np.ndarray, box: list[float]) -> np.ndarray:
    """A copy of uint8 `pixels` (height, width, 3) with `box` blurred past reading (a Gaussian of
    BLUR_SHARE of its height, computed with the photo around it so the patch's edges match)."""
    rows, cols = _slices(box, *pixels.shape[:2])
    radius = max(1.0, BLUR_SHARE * (rows.stop - rows.start))
    blurred = np.asarray(Image.fromarray(pixels).filter(ImageFilter.GaussianBlur(radius)))
    out = pixels.copy()
    out[rows, cols] = blurred[rows, cols]
    return out


def cut_logo(pixels: np.ndarray, box: list[float]) -> np.ndarray:
    """The logo of a marked photo, as an RGBA patch of its box: opaque where the logo's white marks are
    (pixels well above the patch blurred), clear elsewhere, so no rectangle of another photo comes with it."""
    rows, cols = _slices(box, *pixels.shape[:2])
    patch = pixels[rows, cols]
    radius = max(1.0, BLUR_SHARE * patch.shape[0])
    background = np.asarray(Image.fromarray(patch).filter(ImageFilter.GaussianBlur(radius)), np.float32)
    marks = (patch.astype(np.float32) - background).mean(axis=2) > MARK_CONTRAST
    return np.dstack([patch, np.where(marks, 255, 0).astype(np.uint8)])


def paste_logo(pixels: np.ndarray, logo: np.ndarray, box: list[float]) -> np.ndarray:
    """A copy of `pixels` with a logo (`cut_logo`'s RGBA patch, from a photo of any size) laid into `box`."""
    rows, cols = _slices(box, *pixels.shape[:2])
    size = (cols.stop - cols.start, rows.stop - rows.start)
    logo = np.asarray(Image.fromarray(logo).resize(size, Image.BILINEAR)) if logo.shape[1::-1] != size else logo
    out = pixels.copy()
    alpha = logo[..., 3:].astype(np.float32) / 255
    out[rows, cols] = np.round(logo[..., :3] * alpha + out[rows, cols] * (1 - alpha)).astype(np.uint8)
    return out


def swap_logo(photos: np.ndarray, i: int, marked: np.ndarray, donors: np.ndarray, box: list[float], rate: float,
              rng: np.random.Generator) -> np.ndarray:
    """Photo `i` of `photos` with its logo box showing a logo with probability `rate`, blurred otherwise,
    whatever its library: a `marked` photo keeps its own logo or loses it; any other gets the logo of a
    random one of `donors` (indices of marked training photos) or a blurred box."""
    photo = photos[i]
    if rng.random() >= rate:
        return remove_logo(photo, box)
    if marked[i] or not len(donors):
        return photo
    return paste_logo(photo, cut_logo(photos[donors[rng.integers(len(donors))]], box), box)


def logo_swapper(pixels: np.ndarray, rows: list[dict], sources, rate: float, seed: int):
    """epoch -> the training photos (`pixels` of `rows`) as that epoch shows them, each photo's logo swapped
    by a random stream fixed by (seed, epoch, photo), so a resumed run sees what an uninterrupted one saw;
    the photos as they are where `rate` is 0 or no source is marked."""
    box = logo_box(sources)
    if not rate or box is None:
        return lambda epoch: pixels
    marked = marked_photos((r["source"] for r in rows), sources)
    donors = np.flatnonzero(marked)
    return lambda epoch: np.stack([swap_logo(pixels, i, marked, donors, box, rate,
                                             np.random.default_rng([seed, epoch, i, 7])) for i in range(len(pixels))])

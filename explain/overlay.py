"""Drawing a CAM over the photo with a Matplotlib colormap, tinting only where the map is warm.

Everything after the model runs in Pillow's C code on 8-bit images (the map stretched as
8-bit levels and coloured through a 256-colour palette instead of calling the colormap per
pixel), and the result is sent as JPEG, so the overlay and its file cost a small part of a model
pass (docs/performance.md has the figures).
"""

import io
from functools import lru_cache

import matplotlib
import numpy as np
from PIL import Image

from explain.errors import RequestError

DEFAULT_COLORMAP = "jet"
MAX_SIDE = 512


def display_size(photo: Image.Image, max_side: int = MAX_SIDE) -> tuple[int, int]:
    """The photo's size scaled down (never up) so its longer side is at most `max_side`."""
    scale = min(1.0, max_side / max(photo.size))
    return max(1, round(photo.width * scale)), max(1, round(photo.height * scale))


def upsample(cam: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A low-resolution [0, 1] map stretched (bilinear) over the whole photo, as the model saw it."""
    resized = Image.fromarray(np.asarray(cam, dtype=np.float32), mode="F").resize(size, Image.Resampling.BILINEAR)
    return np.clip(np.asarray(resized), 0.0, 1.0)


@lru_cache(maxsize=8)
def colour_table(colormap: str) -> np.ndarray:
    """The colormap sampled at 256 levels, as uint8 RGB."""
    return np.round(matplotlib.colormaps[colormap](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.uint8)


def checked_opacity(opacity: float) -> float:
    """`opacity` as a float, if it is one a heatmap can be drawn with."""
    value = float(opacity)
    if not 0.0 <= value <= 1.0:
        raise RequestError(f"Heatmap opacity must be between 0 and 1 (0 shows the photo alone); got {value}.")
    return value


def overlay(photo: Image.Image, cam: np.ndarray, opacity: float, colormap: str = DEFAULT_COLORMAP) -> Image.Image:
    """Tint the photo with the colourised map, each pixel as strongly as the map is high there:
    where the map is cold the photo shows untinted, and `opacity` is the tint where it is hottest
    (0 shows the photo alone)."""
    opacity = checked_opacity(opacity)
    size = display_size(photo)
    base = photo.resize(size, Image.Resampling.BILINEAR) if photo.size != size else photo
    levels = _levels(cam, size)
    strength = levels.point([round(level * opacity) for level in range(256)])
    return Image.composite(_coloured(levels, colormap), base, strength)


def heat_image(cam: np.ndarray, size: tuple[int, int], colormap: str = DEFAULT_COLORMAP) -> Image.Image:
    """The [0, 1] map as 8-bit levels, stretched (bilinear) to `size` and coloured by palette lookup."""
    return _coloured(_levels(cam, size), colormap)


def _levels(cam: np.ndarray, size: tuple[int, int]) -> Image.Image:
    levels = np.round(np.clip(cam, 0.0, 1.0) * 255).astype(np.uint8)
    return Image.fromarray(levels, "L").resize(size, Image.Resampling.BILINEAR)


def _coloured(levels: Image.Image, colormap: str) -> Image.Image:
    heat = levels.copy()
    heat.putpalette(colour_table(colormap).tobytes())  # L becomes P: each level indexes the colormap
    return heat.convert("RGB")


def jpeg_bytes(image: Image.Image) -> bytes:
    """JPEG at quality 90: a heatmap over a photo is photographic, so JPEG is the right format (faster to
    write and several times smaller than PNG; docs/performance.md)."""
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()

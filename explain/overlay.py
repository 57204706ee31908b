"""Drawing a CAM over the photo with a Matplotlib colormap."""

import matplotlib
import numpy as np
from PIL import Image

DEFAULT_COLORMAP = "jet"
MAX_SIDE = 512


def display_size(photo: Image.Image, max_side: int = MAX_SIDE) -> tuple[int, int]:
    """The photo's size scaled down (never up) so its longer side is at most `max_side`."""
    scale = min(1.0, max_side / max(photo.size))
    return max(1, round(photo.width * scale)), max(1, round(photo.height * scale))


def upsample(cam: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A low-resolution map stretched (bilinear) over the whole photo, as the model saw it."""
    resized = Image.fromarray(np.asarray(cam, dtype=np.float32), mode="F").resize(size, Image.Resampling.BILINEAR)
    return np.clip(np.asarray(resized), 0.0, 1.0)


def overlay(photo: Image.Image, cam: np.ndarray, opacity: float = 0.45, colormap: str = DEFAULT_COLORMAP) -> Image.Image:
    """Blend the colourised map over the photo; `opacity` 0 shows the photo alone."""
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity must be between 0 and 1, got {opacity}")
    size = display_size(photo)
    base = np.asarray(photo.resize(size, Image.Resampling.BILINEAR), dtype=np.float32) / 255.0
    heat = matplotlib.colormaps[colormap](upsample(cam, size))[..., :3]
    blended = (1.0 - opacity) * base + opacity * heat
    return Image.fromarray(np.round(blended * 255).astype(np.uint8), "RGB")

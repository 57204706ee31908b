"""From an uploaded file to the RGB pixels the model sees, or a refusal that says why.

One path serves the app, the API, the command line and training, so a photo is
resized exactly the way the model was trained. Limits on bytes and pixels are checked
before any pixel is decoded.
"""

import io
import os
import re
import struct
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from explain.errors import InputImageError

ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")  # JPEG includes MPO (phone photos)
ACCEPTED_HUMAN = "JPEG, PNG, WebP, BMP, GIF or TIFF"
MIN_SIDE = 16
MAX_ASPECT_RATIO = 10.0

# Magic numbers of files people upload that Pillow cannot or must not read.
_KNOWN_NON_PHOTOS = (
    (b"%PDF", "a PDF document"),
    (b"<svg", "an SVG drawing"),
    (b"<?xml", "an XML/SVG drawing"),
    (b"PK\x03\x04", "a ZIP archive (or an Office document)"),
)
_HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1", b"msf1", b"avif")


def read_bytes(source: str | os.PathLike | bytes, max_bytes: int) -> bytes:
    """Read an upload, refusing an empty or oversized file before reading it whole."""
    if isinstance(source, (bytes, bytearray)):
        data = bytes(source)
    else:
        path = Path(source)
        if not path.is_file():
            # An upload the sweeper has deleted: no path or file name in the message (it reaches logs)
            raise InputImageError("This photo is no longer on the server: please upload it again.")
        if path.stat().st_size > max_bytes:
            raise InputImageError(_too_many_bytes(path.stat().st_size, max_bytes))
        data = path.read_bytes()
    if not data:
        raise InputImageError("The file is empty (0 bytes): upload a photo.")
    if len(data) > max_bytes:
        raise InputImageError(_too_many_bytes(len(data), max_bytes))
    return data


def decode_photo(data: bytes, max_pixels: int, at_least: int | None = None) -> Image.Image:
    """Decode image bytes into an upright RGB picture.

    Refuses non-images, unsupported kinds, decompression bombs, damaged files and
    pictures too small or too elongated to be a photo of skin. Takes the first frame
    of animated or multi-page files and applies the EXIF orientation. With `at_least`,
    a JPEG is scaled down by 2, 4 or 8 while decoding, keeping both sides at least that
    long: a 12-megapixel phone photo then decodes in a fraction of the time.
    """
    _refuse_known_non_photos(data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise InputImageError(
            f"The image declares {_declared_megapixels(err)}, too many to decode safely; "
            f"the limit is {max_pixels / 1e6:.0f} megapixels. Resize it and try again."
        ) from err
    except Exception as err:  # Pillow raises many types for unreadable headers
        raise InputImageError(
            f"This file is not a photo this app can read, or it is damaged. Upload a {ACCEPTED_HUMAN} file."
        ) from err

    width, height = image.size
    if width * height > max_pixels:
        raise InputImageError(
            f"The image is {width}x{height} pixels ({width * height / 1e6:.1f} megapixels); "
            f"the limit is {max_pixels / 1e6:.0f} megapixels. Resize it and try again."
        )
    if min(width, height) < MIN_SIDE:
        raise InputImageError(
            f"The image is only {width}x{height} pixels: too small to show skin. "
            f"Upload a photo at least {MIN_SIDE} pixels on each side."
        )
    if max(width, height) / min(width, height) > MAX_ASPECT_RATIO:
        raise InputImageError(
            f"The image is {width}x{height} pixels, more than {MAX_ASPECT_RATIO:.0f} times longer "
            "than wide: crop it to the skin area and try again."
        )

    try:
        image.seek(0)  # animated GIF/WebP, multi-page TIFF: the first frame
        if at_least:
            image.draft("RGB", (at_least, at_least))  # JPEG only; other formats ignore it
        image.load()
    except Exception as err:
        raise InputImageError(
            f"The {image.format} file is damaged or truncated and cannot be decoded. "
            "Save or export the photo again and retry."
        ) from err
    return _to_rgb(_upright(image))


def fit_to_model(photo: Image.Image, image_size: int) -> np.ndarray:
    """Resize the whole photo to the model's square input (bilinear), as training does.

    Returns float32 pixels in [0, 255], shape (image_size, image_size, 3); the model's
    own preprocessing layer scales them.
    """
    resized = photo.resize((image_size, image_size), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.float32)


def load_photo(source: str | os.PathLike | bytes, max_bytes: int, max_pixels: int,
               at_least: int | None = None) -> Image.Image:
    """Read and decode an upload: `read_bytes` then `decode_photo`."""
    return decode_photo(read_bytes(source, max_bytes), max_pixels, at_least)


def _declared_megapixels(err: Exception) -> str:
    """The size a refused image declares, from Pillow's message ("Image size (N pixels) exceeds...")."""
    found = re.search(r"\((\d+) pixels\)", str(err))
    return f"{int(found.group(1)) / 1e6:.0f} megapixels" if found else "more pixels than Pillow decodes safely"


def _refuse_known_non_photos(data: bytes) -> None:
    head = data[:64].lstrip()
    for magic, what in _KNOWN_NON_PHOTOS:
        if head.startswith(magic):
            raise InputImageError(f"This file is {what}, not a photo. Upload a {ACCEPTED_HUMAN} file.")
    if data[4:8] == b"ftyp" and data[8:12] in _HEIF_BRANDS:
        raise InputImageError(
            "HEIC/HEIF/AVIF photos are not supported. On a phone, export or share the photo "
            "as JPEG (iPhone: Settings > Camera > Formats > Most Compatible) and try again."
        )


def _upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation (in place: no copy when there is none).

    A damaged EXIF block leaves the photo as stored: Pillow's EXIF parser then raises one of
    these (seen on mutated files: TypeError, struct.error; the rest on truncated or odd tags)."""
    try:
        ImageOps.exif_transpose(image, in_place=True)
    except (OSError, ValueError, TypeError, KeyError, SyntaxError, struct.error):
        pass
    return image


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit RGB; transparency is composited on white."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        pixels = np.asarray(image, dtype=np.float64)
        scale = 257.0 if image.mode != "F" else max(pixels.max(), 1.0) / 255.0
        image = Image.fromarray(np.clip(pixels / scale, 0, 255).astype(np.uint8), "L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def _too_many_bytes(size: int, max_bytes: int) -> str:
    return (
        f"The file is {size / 1e6:.1f} MB; the limit is {max_bytes / 1e6:g} MB. "
        "Upload a smaller photo (a phone's 'medium' size is plenty)."
    )

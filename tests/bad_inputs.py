"""A corpus of bad and odd uploads, generated here (never downloaded).

Each case is (name, file bytes, expected): expected is None when the photo must be
accepted, else a phrase the refusal message must contain.
"""

import struct
import zlib

import numpy as np
from conftest import photo_bytes
from PIL import Image


def _photo(size=(120, 90), mode="RGB"):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels).convert(mode)


def _png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares huge dimensions: a decompression bomb."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def _exif_rotated() -> bytes:
    """A 120x60 landscape JPEG whose EXIF orientation (6) says: rotate 90 degrees to show it."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return photo_bytes(_photo((120, 60)), "JPEG", exif=exif)


def _animated(fmt: str) -> bytes:
    frames = [_photo((64, 64)), Image.new("RGB", (64, 64), (255, 0, 0))]
    return photo_bytes(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)


def _multipage_tiff() -> bytes:
    return photo_bytes(_photo((64, 64)), "TIFF", save_all=True, append_images=[_photo((64, 64))])


def _palette_transparent() -> bytes:
    image = _photo((64, 64)).convert("P")
    return photo_bytes(image, "PNG", transparency=0)


def _sixteen_bit() -> bytes:
    pixels = (np.linspace(0, 65535, 64 * 64).reshape(64, 64)).astype(np.uint16)
    return photo_bytes(Image.fromarray(pixels), "PNG")


def _heic_header() -> bytes:
    return b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 200


SVG = b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="100" height="100"><rect width="100" height="100" fill="red"/></svg>'
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
JPEG = photo_bytes(_photo(), "JPEG")
PNG = photo_bytes(_photo(), "PNG")

CASES = [
    ("zero bytes", b"", "empty"),
    ("text named .jpg", b"just some text, not an image\n" * 10, "not a photo this app can read"),
    ("pdf named .jpg", PDF, "PDF document"),
    ("svg drawing", SVG, "SVG drawing"),
    ("svg without xml prolog", SVG[SVG.index(b"<svg"):], "SVG drawing"),
    ("heic photo", _heic_header(), "HEIC"),
    ("zip archive", b"PK\x03\x04" + b"\x00" * 100, "ZIP archive"),
    ("truncated jpeg", JPEG[: len(JPEG) // 2], "damaged or truncated"),
    ("truncated png", PNG[: len(PNG) // 2], "damaged or truncated"),
    ("jpeg header only", JPEG[:20], "not a photo this app can read"),
    ("corrupt png header", PNG[:8] + b"XXXX" + PNG[12:], "not a photo this app can read"),
    ("corrupt jpeg body", JPEG[:200] + bytes(len(JPEG) - 200), "or it is damaged"),
    ("decompression bomb", _png_declaring(100_000, 100_000), "megapixels"),
    ("declared bomb beyond pillow", _png_declaring(400_000, 400_000), "too many to decode safely"),
    ("1x1 pixel", photo_bytes(_photo((1, 1))), "too small"),
    ("15 pixels wide", photo_bytes(_photo((15, 200))), "too small"),
    ("extreme aspect ratio", photo_bytes(_photo((2000, 50))), "longer than wide"),
    ("16-bit grayscale png", _sixteen_bit(), None),
    ("cmyk jpeg", photo_bytes(_photo(mode="CMYK"), "JPEG"), None),
    ("palette with transparency", _palette_transparent(), None),
    ("LA (grey + alpha)", photo_bytes(_photo(mode="LA"), "PNG"), None),
    ("RGBA png", photo_bytes(_photo(mode="RGBA"), "PNG"), None),
    ("grayscale jpeg", photo_bytes(_photo(mode="L"), "JPEG"), None),
    ("1-bit bilevel png", photo_bytes(_photo(mode="1"), "PNG"), None),
    ("exif rotated jpeg", _exif_rotated(), None),
    ("animated gif", _animated("GIF"), None),
    ("animated webp", _animated("WEBP"), None),
    ("multi-page tiff", _multipage_tiff(), None),
    ("bmp", photo_bytes(_photo(), "BMP"), None),
    ("webp", photo_bytes(_photo(), "WEBP"), None),
    ("polyglot: jpeg with a zip appended", JPEG + b"PK\x03\x04" + b"\x00" * 64, None),
    ("polyglot: html comment in png name of jpeg", b"<html><!--" + JPEG, "not a photo this app can read"),
    ("ico icon", photo_bytes(_photo((32, 32)), "ICO"), "not a photo this app can read"),
    ("eps document", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", "not a photo this app can read"),
]

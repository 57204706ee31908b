"""Decoding and validating uploads: every odd file is either read right or refused clearly."""

from pathlib import Path

import numpy as np
import pytest
from bad_inputs import CASES, _exif_rotated, _png_declaring
from conftest import photo_bytes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from explain.errors import InputImageError
from explain.images import decode_photo, fit_to_model, load_photo, read_bytes

MAX_PIXELS = 40_000_000
MAX_BYTES = 20_000_000


def decode(data: bytes) -> Image.Image:
    return load_photo(data, MAX_BYTES, MAX_PIXELS)


@pytest.mark.parametrize("name,data,expected", CASES, ids=[c[0] for c in CASES])
def test_each_odd_file_is_read_or_refused_with_its_reason(name, data, expected):
    if expected is None:
        photo = decode(data)
        assert photo.mode == "RGB" and min(photo.size) >= 16
    else:
        with pytest.raises(InputImageError, match=expected):
            decode(data)


def test_exif_orientation_is_applied():
    photo = decode(_exif_rotated())
    assert photo.size == (60, 120)  # stored 120x60 landscape, shown as portrait


def test_first_frame_of_an_animation_is_used():
    frames = [Image.new("RGB", (64, 64), (0, 0, 255)), Image.new("RGB", (64, 64), (255, 0, 0))]
    data = photo_bytes(frames[0], "GIF", save_all=True, append_images=frames[1:])
    assert decode(data).getpixel((10, 10))[2] > 200  # blue, the first frame


def test_transparency_is_composited_on_white():
    clear = Image.new("RGBA", (32, 32), (255, 0, 0, 0))
    assert decode(photo_bytes(clear, "PNG")).getpixel((5, 5)) == (255, 255, 255)


def test_sixteen_bit_is_scaled_to_eight_bits_not_clipped():
    levels = np.tile(np.arange(256, dtype=np.uint16), (32, 1))  # every 8-bit level, as 16-bit values
    decoded = np.asarray(decode(photo_bytes(Image.fromarray(levels * 257), "PNG")))
    assert decoded.shape == (32, 256, 3)
    assert np.array_equal(decoded[5, :, 0], np.arange(256)) and np.array_equal(decoded[..., 0], decoded[..., 2])


def test_byte_limit_is_checked_before_reading(tmp_path, monkeypatch):
    big = tmp_path / "big.jpg"
    big.write_bytes(b"\xff" * 2_000_001)

    def no_reading(path):
        raise AssertionError(f"{path} was read before its size was checked")

    monkeypatch.setattr(Path, "read_bytes", no_reading)
    with pytest.raises(InputImageError, match="The file is 2.0 MB; the limit is 2 MB"):
        read_bytes(big, max_bytes=2_000_000)
    with pytest.raises(AssertionError, match="was read"):  # a file under the limit is read
        read_bytes(big, max_bytes=3_000_000)


def test_pixel_limit_is_configurable():
    data = photo_bytes(Image.new("RGB", (400, 300)))
    assert decode_photo(data, 120_000).size == (400, 300)
    with pytest.raises(InputImageError, match="0.1 megapixels"):
        decode_photo(data, 100_000)


@pytest.mark.parametrize("side, declared", [(12_000, "144 megapixels"), (20_000, "400 megapixels")])
def test_a_decompression_bomb_is_refused_with_the_size_it_declares(side, declared):
    # 144 MP is past Pillow's warning threshold (89 MP), 400 MP past its error threshold (179 MP)
    with pytest.raises(InputImageError, match=f"declares {declared}, too many to decode safely; the limit is 40"):
        decode_photo(_png_declaring(side, side), 40_000_000)


def test_missing_file_is_refused(tmp_path):
    with pytest.raises(InputImageError, match="no longer on the server"):
        load_photo(tmp_path / "gone.jpg", 10**6, 10**6)


def test_resize_squeezes_the_whole_photo_bilinearly_as_in_training():
    x = np.linspace(0, 255, 300)
    gradient = np.stack(np.broadcast_arrays(x[None, :], np.linspace(0, 255, 200)[:, None], 128.0), -1)
    picture = Image.fromarray(gradient.astype(np.uint8))
    pixels = fit_to_model(picture, 96)
    assert pixels.shape == (96, 96, 3) and pixels.dtype == np.float32
    bilinear = np.asarray(picture.resize((96, 96), Image.Resampling.BILINEAR), dtype=np.float32)
    assert np.array_equal(pixels, bilinear)
    for other in (Image.Resampling.NEAREST, Image.Resampling.BICUBIC, Image.Resampling.LANCZOS):
        assert not np.array_equal(pixels, np.asarray(picture.resize((96, 96), other), dtype=np.float32))
    # the whole photo, squeezed, not a centre crop: both ends of the gradient survive
    assert pixels[:, 0, 0].max() < 5 and pixels[:, -1, 0].min() > 250
    assert pixels[0, :, 1].max() < 5 and pixels[-1, :, 1].min() > 250


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(
    st.binary(max_size=4096),
    st.builds(lambda data, cut, junk: data[:cut] + junk,
              st.sampled_from([c[1] for c in CASES if c[1]]), st.integers(0, 5000), st.binary(max_size=64)),
))
def test_fuzz_decode_returns_rgb_or_our_error(data):
    try:
        photo = decode(data)
    except InputImageError:
        return
    pixels = fit_to_model(photo, 32)
    assert photo.mode == "RGB" and pixels.shape == (32, 32, 3)

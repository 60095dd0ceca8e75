import pytest

from curate.io.images import BadImage, ImageLimits, inspect_image
from curate.synth.broken import png_bomb
from tests.shards import image_bytes


@pytest.mark.parametrize("fmt,ext", [("JPEG", "jpg"), ("PNG", "png"), ("WEBP", "webp")])
def test_supported_formats_report_true_format_and_size(fmt, ext):
    info = inspect_image(image_bytes(size=(30, 20), fmt=fmt))
    assert (info.format, info.width, info.height) == (ext, 30, 20)


def test_truncated_jpeg_does_not_decode():
    data = image_bytes(size=(64, 64))
    with pytest.raises(BadImage, match="does not decode"):
        inspect_image(data[: len(data) // 2])


def test_garbage_and_empty_bytes_are_rejected():
    with pytest.raises(BadImage, match="does not decode"):
        inspect_image(b"definitely not an image")
    with pytest.raises(BadImage, match="empty"):
        inspect_image(b"")


def test_decompression_bomb_is_caught_from_the_header():
    with pytest.raises(BadImage, match="decompression bomb"):
        inspect_image(png_bomb())


def test_pixel_limit_is_configurable():
    data = image_bytes(size=(40, 40))
    assert inspect_image(data, ImageLimits(max_pixels=1600)).width == 40
    with pytest.raises(BadImage, match="exceeds the limit of 1599"):
        inspect_image(data, ImageLimits(max_pixels=1599))


def test_unsupported_format_is_rejected():
    with pytest.raises(BadImage, match="unsupported image format GIF"):
        inspect_image(image_bytes(fmt="GIF"))


def test_reason_has_no_memory_addresses():
    with pytest.raises(BadImage) as info:
        inspect_image(b"xx" * 100)
    assert "0x" not in str(info.value)

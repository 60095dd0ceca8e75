"""Checking that image bytes decode, without trusting their header or their file extension."""

import io
import re
import warnings
from dataclasses import dataclass

from PIL import Image

# PIL's own default: about a quarter-gigabyte of RGBA. Above it an image is treated as a decompression bomb.
DEFAULT_MAX_PIXELS = 89_478_485
SUPPORTED_FORMATS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}


class BadImage(Exception):
    """The bytes are not an image this pipeline accepts; str() is the quarantine reason."""


@dataclass(frozen=True)
class ImageInfo:
    """What a decoded image is: its real format (jpg, png, webp) and size in pixels."""

    format: str
    width: int
    height: int


def inspect_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageInfo:
    """Returns the image's format and size after decoding it fully; raises BadImage with the reason."""
    if not data:
        raise BadImage("empty image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                return _decode(im, max_pixels)
    except BadImage:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise BadImage(f"decompression bomb: {exc}") from None
    except Exception as exc:  # PIL raises many types for corrupt data; all mean "does not decode"
        # PIL's messages can name the in-memory file object by address; drop it so reruns give equal catalogs.
        message = re.sub(r"\s*<[^>]* at 0x[0-9a-fA-F]+>", "", str(exc))
        raise BadImage(f"image does not decode: {type(exc).__name__}: {message}") from None


def _decode(im: Image.Image, max_pixels: int) -> ImageInfo:
    fmt = SUPPORTED_FORMATS.get(im.format or "")
    if fmt is None:
        raise BadImage(f"unsupported image format {im.format}")
    width, height = im.size
    if width <= 0 or height <= 0:
        raise BadImage(f"invalid image size {width}x{height}")
    if width * height > max_pixels:
        raise BadImage(f"decompression bomb: {width}x{height} pixels exceeds the limit of {max_pixels}")
    if fmt == "jpg":
        # DCT-domain downscaling still entropy-decodes every block (so corruption is caught) at a fraction
        # of the cost of a full-size decode.
        im.draft("RGB", (max(1, width // 8), max(1, height // 8)))
    im.load()
    return ImageInfo(fmt, width, height)

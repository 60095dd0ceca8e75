"""Checking that image bytes decode, without trusting their header or their file extension."""

import io
import re
import warnings
from dataclasses import dataclass

from PIL import Image

# PIL's own default: about a quarter-gigabyte of RGBA. Above it an image is treated as a decompression bomb.
DEFAULT_MAX_PIXELS = 89_478_485
# A sane shape: a 1 x 300,000 strip passes any pixel cap, and resizing its short side to a model's input would
# make it gigapixels wide. Panoramas and banners stay well inside these.
DEFAULT_MAX_SIDE = 65_535
DEFAULT_MAX_ASPECT = 100.0
SUPPORTED_FORMATS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}


@dataclass(frozen=True)
class ImageLimits:
    """What an accepted image may be: at most max_pixels pixels, max_side on either side, max_aspect long side
    over short side."""

    max_pixels: int = DEFAULT_MAX_PIXELS
    max_side: int = DEFAULT_MAX_SIDE
    max_aspect: float = DEFAULT_MAX_ASPECT


class BadImage(Exception):
    """The bytes are not an image this pipeline accepts; str() is the quarantine reason."""


@dataclass(frozen=True)
class ImageInfo:
    """What a decoded image is: its real format (jpg, png, webp) and size in pixels."""

    format: str
    width: int
    height: int


def inspect_image(data: bytes, limits: ImageLimits = ImageLimits()) -> ImageInfo:
    """Returns the image's format and size after decoding it fully; raises BadImage with the reason."""
    if not data:
        raise BadImage("empty image")
    if Image.MAX_IMAGE_PIXELS is not None and limits.max_pixels > Image.MAX_IMAGE_PIXELS:
        # PIL's own bomb check fires at its default whatever the caller allows; ours (below) is the limit. Only
        # ever raised, never lowered, so concurrent checks with other limits stay correct.
        Image.MAX_IMAGE_PIXELS = limits.max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                return _decode(im, limits)
    except BadImage:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise BadImage(f"decompression bomb: {exc}") from None
    except Exception as exc:  # PIL raises many types for corrupt data; all mean "does not decode"
        # PIL's messages can name the in-memory file object by address; drop it so reruns give equal catalogs.
        message = re.sub(r"\s*<[^>]* at 0x[0-9a-fA-F]+>", "", str(exc))
        raise BadImage(f"image does not decode: {type(exc).__name__}: {message}") from None


def _decode(im: Image.Image, limits: ImageLimits) -> ImageInfo:
    fmt = SUPPORTED_FORMATS.get(im.format or "")
    if fmt is None:
        raise BadImage(f"unsupported image format {im.format}")
    width, height = im.size
    if width <= 0 or height <= 0:
        raise BadImage(f"invalid image size {width}x{height}")
    if width * height > limits.max_pixels:
        raise BadImage(f"decompression bomb: {width}x{height} pixels exceeds the limit of {limits.max_pixels}")
    if max(width, height) > limits.max_side:
        raise BadImage(f"image too large: {width}x{height}, a side over the limit of {limits.max_side}")
    if max(width, height) > limits.max_aspect * min(width, height):
        raise BadImage(f"extreme aspect ratio: {width}x{height}, over the limit of {limits.max_aspect:g}:1")
    if fmt == "jpg":
        # DCT-domain downscaling still entropy-decodes every block (so corruption is caught) at a fraction
        # of the cost of a full-size decode.
        im.draft("RGB", (max(1, width // 8), max(1, height // 8)))
    im.load()
    return ImageInfo(fmt, width, height)

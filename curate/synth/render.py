"""Image rendering with numpy + PIL: concept images on varied backgrounds, junk images, near duplicates."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from curate.synth.concepts import COLORS, concept_parts, draw_shape, luminance, max_rotation
from curate.synth.detail import add_clutter, finish, stretch, texture

JPEG_QUALITY = 90
SUPERSAMPLE = 3
MIN_CONTRAST = 0.3
JUNK_IMAGE_TYPES: tuple[str, ...] = ("solid", "noise", "tiny", "extreme_aspect")

_BACKGROUNDS = ("plain", "plain", "gradient", "stripes", "texture")


@dataclass(frozen=True)
class Rendered:
    """A rendered concept image with what a caption may truthfully say about it."""

    image: Image.Image
    background: str  # caption word for the background (never a colour name): "pale", "dark", "striped", ...
    size_word: str  # "small", "large" or ""


def encode_jpeg(image: Image.Image, quality: int = JPEG_QUALITY) -> bytes:
    """Returns baseline JPEG bytes of an RGB image (deterministic: fixed quality/subsampling, no metadata)."""
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="JPEG", quality=quality, subsampling="4:2:0", optimize=False)
    return buf.getvalue()


def _background_luma(rng: np.random.Generator, fg_luma: float) -> tuple[float, bool]:
    """Returns (background luma, is_light) at least MIN_CONTRAST away from the fill's luma."""
    choices = []
    if fg_luma - MIN_CONTRAST >= 0.04:
        choices.append((0.04, min(0.3, fg_luma - MIN_CONTRAST), False))
    if fg_luma + MIN_CONTRAST <= 0.97:
        choices.append((max(0.72, fg_luma + MIN_CONTRAST), 0.97, True))
    lo, hi, light = choices[int(rng.integers(len(choices)))]
    return float(rng.uniform(lo, hi)), light


def _tinted(rng: np.random.Generator, luma: float) -> np.ndarray:
    """Returns a low-saturation RGB colour (float, 0..255) with roughly the given luma."""
    tint = rng.normal(0.0, 12.0, 3)
    tint -= 0.299 * tint[0] + 0.587 * tint[1] + 0.114 * tint[2]
    return np.clip(luma * 255.0 + tint, 0.0, 255.0)


def _background(rng: np.random.Generator, size: int, fg_luma: float) -> tuple[np.ndarray, str]:
    """Returns (H x W x 3 float background, caption word) contrasting with a fill of luma `fg_luma`."""
    luma, light = _background_luma(rng, fg_luma)
    base = _tinted(rng, luma)
    kind = _BACKGROUNDS[int(rng.integers(len(_BACKGROUNDS)))]
    img = np.broadcast_to(base, (size, size, 3)).astype(np.float32)
    if kind == "plain":
        return img, ("pale" if luma > 0.85 else "light") if light else "dark"
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / max(size - 1, 1)
    theta = rng.uniform(0, 2 * np.pi)
    ramp = np.cos(theta) * xx + np.sin(theta) * yy
    if kind == "gradient":
        luma2, light2 = _background_luma(rng, fg_luma)
        other = _tinted(rng, luma2 if light2 == light else luma)
        t = ((ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6))[..., None]
        return img * (1 - t) + other * t, "gradient"
    if kind == "stripes":
        period = rng.uniform(4.0, 10.0) / size
        band = (np.floor(ramp / period) % 2)[..., None]
        return img + band * (-14.0 if light else 14.0), "striped"
    noise = rng.normal(0.0, 7.0, (size, size, 1)).astype(np.float32)
    return img + noise, "textured"


def render_concept(rng: np.random.Generator, concept: int, size: int, detail: bool = False) -> Rendered:
    """Returns a `size` x `size` rendering of a concept: jittered fill, random place/scale/rotation. With
    `detail`, the rendering also gets its own aspect, clutter, object texture, lighting and noise
    (curate.synth.detail); those draws come after all the others, so the plain rendering of the same rng is
    unchanged."""
    color, shape = concept_parts(concept)
    fill = np.clip(np.array(COLORS[color], dtype=np.float32) + rng.uniform(-12, 12, 3), 0, 255)
    bg, bg_word = _background(rng, size, luminance(fill))
    rel = float(rng.uniform(0.2, 0.38))
    radius = rel * size
    cx, cy = rng.uniform(radius, size - radius, 2)
    degrees = float(rng.uniform(-1.0, 1.0) * max_rotation(shape))
    ss = SUPERSAMPLE
    mask = Image.new("L", (size * ss, size * ss), 0)
    draw_shape(ImageDraw.Draw(mask), shape, cx * ss, cy * ss, radius * ss, degrees)
    if detail:
        mask = stretch(rng, mask, cx * ss, cy * ss)
    alpha = np.asarray(mask.reduce(ss), dtype=np.float32)[..., None] / 255.0
    if detail:
        bg, fill = add_clutter(rng, bg, luminance(fill)), fill + texture(rng, size)
    pixels = bg * (1.0 - alpha) + fill * alpha
    if detail:
        pixels = finish(rng, pixels)
    image = Image.fromarray(np.clip(pixels + 0.5, 0, 255).astype(np.uint8), "RGB")
    size_word = "small" if rel < 0.26 else "large" if rel > 0.32 else ""
    return Rendered(image=image, background=bg_word, size_word=size_word)


def render_junk(rng: np.random.Generator, kind: str, size: int, concept: int, detail: bool = False) -> Image.Image:
    """Returns a junk image of `kind` (see JUNK_IMAGE_TYPES); `concept` seeds the tiny thumbnails (rendered
    with `detail` when set)."""
    if kind == "solid":
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        return Image.new("RGB", (size, size), color)
    if kind == "noise":
        return Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8), "RGB")
    if kind == "tiny":
        side = int(rng.choice([4, 6, 8, 10, 12]))
        return render_concept(rng, concept, size, detail).image.resize((side, side), Image.Resampling.BOX)
    long_side = int(rng.choice([160, 200, 256, 320]))
    short_side = int(rng.choice([8, 12, 16, 20]))
    banner = rng.integers(0, 256, (1, long_side, 3)).astype(np.float32)
    banner = np.repeat(banner, short_side, axis=0) * 0.3 + rng.uniform(60, 200, 3) * 0.7
    image = Image.fromarray(banner.astype(np.uint8), "RGB")
    return image if rng.random() < 0.5 else image.transpose(Image.Transpose.ROTATE_90)


def near_duplicate(rng: np.random.Generator, jpg: bytes) -> bytes:
    """Returns JPEG bytes of a near duplicate of `jpg`: shifted and/or cropped-and-resized, re-encoded."""
    with Image.open(io.BytesIO(jpg)) as src:
        image = src.convert("RGB")
    w, h = image.size
    ops = ["shift", "crop", "both", "reencode"][int(rng.integers(4))]
    if ops in ("shift", "both"):
        dx, dy = (int(v) * int(rng.choice([-1, 1])) for v in rng.integers(1, 4, 2))
        edge = tuple(int(c) for c in np.asarray(image)[0, 0])
        image = image.transform((w, h), Image.Transform.AFFINE, (1, 0, dx, 0, 1, dy),
                                resample=Image.Resampling.NEAREST, fillcolor=edge)
    if ops in ("crop", "both"):
        frac = float(rng.uniform(0.86, 0.96))
        cw, ch = max(1, round(w * frac)), max(1, round(h * frac))
        x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        image = image.crop((x0, y0, x0 + cw, y0 + ch)).resize((w, h), Image.Resampling.BILINEAR)
    quality = int(rng.choice([60, 65, 70, 75, 80, 85, 95]))
    out = encode_jpeg(image, quality)
    return out if out != jpg else encode_jpeg(image, 50)

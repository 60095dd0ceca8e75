"""Per-instance detail for concept renderings (opt-in): what makes two photos of one kind of object differ.

Each rendering gets its own aspect (the object stretched along one axis), background clutter (muted blobs, boxes
and scribbles behind the object), a texture inside the object (stripes, spots, blotches or shading), a lighting
gradient over the whole frame and sensor noise. Two distinct renderings of one concept then differ all over the
frame, while a near copy (curate.synth.render.near_duplicate) of one rendering keeps all of its detail.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

ASPECT_RANGE = (0.8, 1.25)  # the object's width : height factor, log-uniform
CLUTTER_OBJECTS = (3, 8)  # how many clutter objects a background gets: [low, high)
MIN_FILL_CONTRAST = 0.2
TEXTURES: tuple[str, ...] = ("stripes", "spots", "blotches", "shading")
_CLUTTER_KINDS = ("blob", "box", "scribble", "scribble")


def stretch(rng: np.random.Generator, mask: Image.Image, cx: float, cy: float) -> Image.Image:
    """Returns the "L" object mask stretched about (cx, cy): x scaled by a, y by 1 / a, a drawn log-uniformly
    from ASPECT_RANGE (the same area, another aspect)."""
    a = float(np.exp(rng.uniform(*np.log(ASPECT_RANGE))))
    coeffs = (1.0 / a, 0.0, cx - cx / a, 0.0, a, cy - cy * a)  # output pixel -> input pixel
    return mask.transform(mask.size, Image.Transform.AFFINE, coeffs, resample=Image.Resampling.BILINEAR)


def _muted(rng: np.random.Generator, luma: float) -> np.ndarray:
    """Returns a partly desaturated RGB colour (float, 0..255) whose luma is near `luma` (0..1)."""
    colour = rng.uniform(0.0, 255.0, 3)
    colour = 0.65 * colour + 0.35 * colour.mean()
    shift = luma * 255.0 - (0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2])
    return np.clip(colour + shift, 0.0, 255.0)


def _clutter_mask(rng: np.random.Generator, size: int) -> np.ndarray:
    """Returns an H x W float mask (0..1) of one random clutter object: a blob, a box or a scribble."""
    mask = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(mask)
    kind = _CLUTTER_KINDS[int(rng.integers(len(_CLUTTER_KINDS)))]
    x, y = rng.uniform(0, size, 2)
    if kind == "scribble":
        points = [(float(x), float(y))]
        for _ in range(int(rng.integers(3, 8))):
            x, y = np.clip(np.array([x, y]) + rng.normal(0.0, size / 6.0, 2), 0, size - 1)
            points.append((float(x), float(y)))
        draw.line(points, fill=255, width=int(rng.integers(1, 4)), joint="curve")
    else:
        w, h = rng.uniform(0.06, 0.22, 2) * size
        box = (float(x - w), float(y - h), float(x + w), float(y + h))
        (draw.ellipse if kind == "blob" else draw.rectangle)(box, fill=255)
    return np.asarray(mask, dtype=np.float32) / 255.0


def _clutter_luma(rng: np.random.Generator, background_luma: float, fill_luma: float) -> float:
    """Returns a clutter luma within 0.3 of the background's and at least MIN_FILL_CONTRAST from the fill's."""
    luma = float(np.clip(background_luma + rng.uniform(-0.3, 0.3), 0.02, 0.98))
    if abs(luma - fill_luma) >= MIN_FILL_CONTRAST:
        return luma
    away = 1.0 if background_luma >= fill_luma else -1.0
    return float(np.clip(fill_luma + away * MIN_FILL_CONTRAST, 0.0, 1.0))


def add_clutter(rng: np.random.Generator, background: np.ndarray, fill_luma: float) -> np.ndarray:
    """Returns the H x W x 3 float background with a few muted clutter objects blended onto it, each at least
    MIN_FILL_CONTRAST in luma from the object's fill (`fill_luma`, 0..1) so the object's outline stays clear."""
    size = background.shape[0]
    luma = float((background @ np.array([0.299, 0.587, 0.114], dtype=np.float32)).mean()) / 255.0
    out = background.astype(np.float32, copy=True)
    for _ in range(int(rng.integers(*CLUTTER_OBJECTS))):
        colour = _muted(rng, _clutter_luma(rng, luma, fill_luma))
        alpha = _clutter_mask(rng, size)[..., None] * float(rng.uniform(0.6, 1.0))
        out = out * (1.0 - alpha) + colour.astype(np.float32) * alpha
    return out


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Returns an H x W float field in about [-1, 1]: a cells x cells random grid, bicubic-upsampled."""
    grid = rng.uniform(-1.0, 1.0, (cells, cells)).astype(np.float32)
    image = Image.fromarray(grid, "F").resize((size, size), Image.Resampling.BICUBIC)
    return np.clip(np.asarray(image, dtype=np.float32), -1.0, 1.0)


def texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """Returns an H x W x 1 additive pattern (0..255 units, about +-30) for the inside of the object."""
    kind = TEXTURES[int(rng.integers(len(TEXTURES)))]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    amplitude, scale = float(rng.uniform(14.0, 30.0)), size / 64.0
    if kind == "stripes":
        theta, period = rng.uniform(0, np.pi), rng.uniform(3.0, 9.0) * scale
        pattern = np.sign(np.sin(2 * np.pi * (np.cos(theta) * xx + np.sin(theta) * yy) / period))
    elif kind == "spots":
        mask = Image.new("L", (size, size), 0)
        draw = ImageDraw.Draw(mask)
        count = int(rng.integers(6, 16))
        for (cx, cy), r in zip(rng.uniform(0, size, (count, 2)), rng.uniform(1.0, 3.5, count) * scale, strict=True):
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=255)
        pattern = np.asarray(mask, dtype=np.float32) / 127.5 - 1.0
    elif kind == "blotches":
        pattern = _smooth_noise(rng, size, int(rng.integers(4, 9)))
    else:  # shading: lit from a random point, darker away from it
        lx, ly = rng.uniform(0, size, 2)
        pattern = 1.0 - 2.0 * np.hypot(xx - lx, yy - ly) / (size * np.sqrt(2))
    sign = 1.0 if rng.random() < 0.5 else -1.0
    return (sign * amplitude * pattern)[..., None].astype(np.float32)


def finish(rng: np.random.Generator, pixels: np.ndarray) -> np.ndarray:
    """Returns H x W x 3 float pixels under a random lighting gradient (gain and tint), plus sensor noise."""
    size = pixels.shape[0]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / max(size - 1, 1)
    theta = rng.uniform(0, 2 * np.pi)
    ramp = np.cos(theta) * (xx - 0.5) + np.sin(theta) * (yy - 0.5)
    gain = 1.0 + float(rng.uniform(0.15, 0.45)) * ramp[..., None]
    tint = rng.normal(0.0, 6.0, 3).astype(np.float32)
    noise = rng.normal(0.0, float(rng.uniform(1.5, 5.0)), pixels.shape).astype(np.float32)
    return pixels * gain + tint + noise

"""Visual concepts of the synthetic pool: shape x colour, shape outlines, long-tailed frequencies."""

from __future__ import annotations

import math

import numpy as np
from PIL import ImageDraw

SHAPES: tuple[str, ...] = (
    "circle", "square", "triangle", "star", "cross", "ring",
    "heart", "hexagon", "diamond", "crescent", "arrow", "pentagon",
)

# Saturated, well separated fills; the background is always chosen to contrast with them in luminance.
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "orange": (245, 140, 20),
    "yellow": (245, 225, 30),
    "green": (40, 170, 50),
    "cyan": (30, 200, 220),
    "blue": (30, 70, 220),
    "purple": (140, 50, 190),
    "pink": (245, 120, 190),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
}

# Concept index -> "colour shape"; the order is fixed (colour-major), independent of the seed.
CONCEPTS: tuple[str, ...] = tuple(f"{color} {shape}" for color in COLORS for shape in SHAPES)

ZIPF_EXPONENT = 0.8

# Largest rotation (degrees, either way) per shape; the rest rotate freely.
_MAX_ROTATION = {"heart": 30.0, "crescent": 60.0, "arrow": 180.0}


def concept_parts(concept: int) -> tuple[str, str]:
    """Returns (colour name, shape name) of a concept index."""
    return tuple(CONCEPTS[concept].split(" ", 1))  # type: ignore[return-value]


def luminance(rgb: tuple[int, int, int] | np.ndarray) -> float:
    """Returns the Rec.601 luma of an RGB colour, in [0, 1]."""
    r, g, b = (float(c) for c in rgb)
    return (0.299 * r + 0.587 * g + 0.114 * b) / 255.0


def zipf_probabilities(seed: int, exponent: float = ZIPF_EXPONENT) -> np.ndarray:
    """Returns per-concept probabilities (indexed like CONCEPTS): Zipf weights over a seeded permutation."""
    rng = np.random.default_rng([seed, 7919])
    order = rng.permutation(len(CONCEPTS))
    weights = 1.0 / np.arange(1, len(CONCEPTS) + 1, dtype=np.float64) ** exponent
    probs = np.empty(len(CONCEPTS), dtype=np.float64)
    probs[order] = weights
    return probs / probs.sum()


def max_rotation(shape: str) -> float:
    """Returns the largest rotation in degrees (either way) used when drawing `shape`."""
    return _MAX_ROTATION.get(shape, 180.0)


def _regular(n: int, radius: float = 1.0, offset: float = -90.0) -> list[tuple[float, float]]:
    angles = [math.radians(offset + 360.0 * k / n) for k in range(n)]
    return [(radius * math.cos(a), radius * math.sin(a)) for a in angles]


def _star() -> list[tuple[float, float]]:
    outer, inner = _regular(5, 1.0), _regular(5, 0.42, -90.0 + 36.0)
    return [p for pair in zip(outer, inner, strict=True) for p in pair]


def _cross(w: float = 0.3) -> list[tuple[float, float]]:
    return [(-w, -1), (w, -1), (w, -w), (1, -w), (1, w), (w, w), (w, 1), (-w, 1),
            (-w, w), (-1, w), (-1, -w), (-w, -w)]


def _heart() -> list[tuple[float, float]]:
    pts = []
    for k in range(40):
        t = 2 * math.pi * k / 40
        x = 16 * math.sin(t) ** 3
        y = 13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t)
        pts.append((x / 17.0, -(y + 2.5) / 17.0))
    return pts


_POLYGONS: dict[str, list[tuple[float, float]]] = {
    "circle": _regular(48, 0.88),
    "square": [(-0.72, -0.72), (0.72, -0.72), (0.72, 0.72), (-0.72, 0.72)],
    "triangle": [(x, y + 0.12) for x, y in _regular(3, 1.05)],
    "star": _star(),
    "cross": _cross(),
    "heart": _heart(),
    "hexagon": _regular(6, 0.95),
    "diamond": [(0.0, -1.0), (0.56, 0.0), (0.0, 1.0), (-0.56, 0.0)],
    "arrow": [(-1, -0.2), (0.15, -0.2), (0.15, -0.58), (1, 0), (0.15, 0.58), (0.15, 0.2), (-1, 0.2)],
    "pentagon": _regular(5, 0.95),
}

# Shapes made of one disc with another cut out: (hole dx, hole dy, hole radius) relative to the outer disc.
_CUTOUTS: dict[str, tuple[float, float, float]] = {
    "ring": (0.0, 0.0, 0.52),
    "crescent": (0.42, -0.12, 0.78),
}


def _place(points: list[tuple[float, float]], cx: float, cy: float, radius: float,
           angle: float) -> list[tuple[float, float]]:
    c, s = math.cos(angle), math.sin(angle)
    return [(cx + radius * (x * c - y * s), cy + radius * (x * s + y * c)) for x, y in points]


def draw_shape(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, radius: float,
               degrees: float) -> None:
    """Draws `shape` filled with 255 onto an "L" canvas; returns None. Coordinates are canvas pixels."""
    angle = math.radians(degrees)
    if shape in _POLYGONS:
        draw.polygon(_place(_POLYGONS[shape], cx, cy, radius, angle), fill=255)
        return
    dx, dy, hole = _CUTOUTS[shape]
    outer = 0.9 * radius
    draw.ellipse((cx - outer, cy - outer, cx + outer, cy + outer), fill=255)
    hx, hy = _place([(dx, dy)], cx, cy, outer, angle)[0]
    r = hole * outer
    draw.ellipse((hx - r, hy - r, hx + r, hy + r), fill=0)

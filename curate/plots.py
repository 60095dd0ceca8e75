"""Figures for reports and benchmarks: matplotlib without a display, each PNG written under a temporary name and
renamed, and every figure closed."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any


def subplots(*args: Any, **kwargs: Any) -> tuple[Any, Any]:
    """Returns matplotlib's plt.subplots(*args, **kwargs) on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(*args, **kwargs)


def save_figure(fig: Any, path: Path, dpi: int = 100) -> Path:
    """Lays out the figure, writes it to `path` atomically (parent folders made), closes it; returns the path."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f"{path.name}.tmp-{uuid.uuid4().hex}")
    try:
        fig.savefig(temp, dpi=dpi, format=path.suffix.lstrip(".") or "png")
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
        plt.close(fig)
    return path

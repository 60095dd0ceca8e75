"""curate: dataset curation and pruning for web-scale image-text data.

    import curate
    run = curate.open("runs/demo")      # see curate.api
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from curate.version import __version__

if TYPE_CHECKING:
    from curate.api import Run

__all__ = ["__version__", "open"]


def open(path) -> Run:
    """Returns the run folder at `path` as a curate.api.Run; raises UsageError when it is not a run folder."""
    from curate.api import Run

    return Run(path)

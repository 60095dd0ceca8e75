"""DFN filtering (Fang et al. 2023): dfn_score = cosine(image, text) under a data filtering network, and
dfn_keep over the whole pool, by a keep fraction (DataComp's rule, curate.stages.threshold) or a threshold.
The same filter with any CLIP's embeddings is DataComp's CLIP-score baseline.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from curate.errors import UsageError
from curate.options import option
from curate.rundir import RunDir
from curate.stages.embeddings import READ_ROWS, embedding_files, read_stored
from curate.stages.pool import embedding_stage
from curate.stages.threshold import ThresholdMethod


@dataclass(frozen=True, kw_only=True)
class DFNFilter(ThresholdMethod):
    """DFN filtering of the pool the run's embed stage embedded with the DFN."""

    name = "dfn"
    columns = ("dfn_score", "dfn_keep")
    hint = "curate filter dfn RUN --keep-fraction F"

    keep_fraction: float | None = option(None, "keep this top fraction of the whole pool", group="keep")
    threshold: float | None = option(None, "keep samples whose dfn_score is >= this", group="keep")

    def validate(self) -> None:
        """Raises UsageError unless exactly one of keep_fraction and threshold is given."""
        if (self.keep_fraction is None) == (self.threshold is None):
            raise UsageError("give exactly one of --keep-fraction or --threshold")

    def reads(self, run: RunDir) -> tuple[str, ...]:
        """Returns the stage of the run's embeddings: the DFN's own (embed), or DataComp's (ingest), which make
        this DataComp's CLIP-score baseline."""
        return (embedding_stage(run),)

    def files(self, run: RunDir) -> list:
        """Returns the run's embeddings/ files (raises UsageError when it has none)."""
        return embedding_files(run)

    def fixed_threshold(self) -> float | None:
        """Returns --threshold (None with --keep-fraction)."""
        return self.threshold

    def file_scores(self, path: str) -> tuple[pa.Array, np.ndarray]:
        """Returns the uids and cosine(image, text) of one embedding file (the stored vectors, as embed wrote them)."""
        uids, (image, text) = read_stored(path, ["image_embedding", "text_embedding"])
        blocks = [slice(start, start + READ_ROWS) for start in range(0, len(uids), READ_ROWS)]
        scores = [np.einsum("ij,ij->i", image[b].astype(np.float32), text[b].astype(np.float32)) for b in blocks]
        return uids, np.concatenate([np.zeros(0, np.float32), *scores]).astype(np.float32)

"""DFN filtering (Fang et al. 2023): dfn_score = cosine(image, text) under a data filtering network, and
dfn_keep over the whole pool, by a keep fraction or a threshold.

With a fraction, the threshold follows DataComp's baselines: the score at index int(N * fraction) of the
descending order, and a sample is kept when its score is >= it. Never per shard.
The same filter with any CLIP's embeddings is DataComp's CLIP-score baseline.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow.parquet as pq

from curate.errors import UsageError
from curate.options import option
from curate.rundir import RunDir
from curate.stages.embeddings import embedding_files
from curate.stages.pool import Pool, PoolMethod, PoolResult


def fraction_threshold(scores: np.ndarray, fraction: float) -> float:
    """Returns the DataComp threshold keeping the top `fraction` of `scores` (ties kept); -inf for none."""
    if not 0 < fraction <= 1:
        raise UsageError(f"--keep-fraction must be in (0, 1], got {fraction}")
    if len(scores) == 0:
        return float("-inf")
    index = int(len(scores) * fraction)
    return float(scores.min()) if index >= len(scores) else float(-np.sort(-scores)[index])


def cosine_scores(run: RunDir) -> np.ndarray:
    """Returns cosine(image, text) of every embedded sample, in embeddings/ order, one shard in memory at a time."""
    parts = []
    for path in embedding_files(run):
        table = pq.read_table(path, columns=["image_embedding", "text_embedding"])
        dim = table.schema.field("image_embedding").type.list_size
        image = table["image_embedding"].combine_chunks().values.to_numpy().reshape(-1, dim)
        text = table["text_embedding"].combine_chunks().values.to_numpy().reshape(-1, dim)
        parts.append(np.einsum("ij,ij->i", image, text).astype(np.float32))
    return np.concatenate(parts)


@dataclass(frozen=True, kw_only=True)
class DFNFilter(PoolMethod):
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
        """Returns the embed stage: the scores are the DFN's own embeddings' cosines."""
        return ("embed",)

    def compute(self, pool: Pool) -> PoolResult:
        """Returns dfn_score and dfn_keep of every embedded sample, and the threshold used."""
        scores = cosine_scores(pool.run)
        cut = fraction_threshold(scores, self.keep_fraction) if self.keep_fraction is not None else self.threshold
        keep = scores >= np.float32(cut)
        kept = int(keep.sum())
        counts = dict(scored=len(scores), kept=kept, dropped=len(scores) - kept, threshold=float(cut))
        return PoolResult({"dfn_score": scores, "dfn_keep": keep}, counts)


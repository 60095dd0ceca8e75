"""DFN filtering (Fang et al. 2023): dfn_score = cosine(image, text) under a data filtering network, and
dfn_keep over the whole pool, by a keep fraction or a threshold.

With a fraction, the threshold follows DataComp's baselines: the score at index int(N * fraction) of the
descending order, and a sample is kept when its score is >= it. Never per shard.
The same filter with any CLIP's embeddings is DataComp's CLIP-score baseline.
"""

import argparse

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from curate.errors import UsageError
from curate.rundir import RunDir, parquet_bytes


def fraction_threshold(scores: np.ndarray, fraction: float) -> float:
    """Returns the DataComp threshold keeping the top `fraction` of `scores` (ties kept); -inf for none."""
    if not 0 < fraction <= 1:
        raise UsageError(f"--keep-fraction must be in (0, 1], got {fraction}")
    if len(scores) == 0:
        return float("-inf")
    index = int(len(scores) * fraction)
    return float(scores.min()) if index >= len(scores) else float(-np.sort(-scores)[index])


def shard_scores(run: RunDir) -> dict[str, tuple[pa.Array, np.ndarray]]:
    """Returns shard id -> (uids, cosine of image and text embeddings) for every embedded shard."""
    scores = {}
    for path in sorted((run.path / "embeddings").glob("*.parquet")):
        table = pq.read_table(path)
        dim = table.schema.field("image_embedding").type.list_size
        image = table["image_embedding"].combine_chunks().values.to_numpy().reshape(-1, dim)
        text = table["text_embedding"].combine_chunks().values.to_numpy().reshape(-1, dim)
        scores[path.stem] = (table["uid"], np.einsum("ij,ij->i", image, text).astype(np.float32))
    return scores


def apply_dfn(run: RunDir, keep_fraction: float | None = None, threshold: float | None = None) -> dict:
    """Writes scores/dfn/ (uid, dfn_score, dfn_keep) for the whole run; returns threshold and counts."""
    from curate.catalogs import build_catalog
    from curate.stages.common import record_stage, require_stage
    from curate.stages.score import reset_if_changed

    if (keep_fraction is None) == (threshold is None):
        raise UsageError("give exactly one of --keep-fraction or --threshold")
    embed = require_stage(run, "embed", "embed the run with the DFN first (`curate embed RUN --model DFN_DIR`)")
    config = dict(keep_fraction=keep_fraction, threshold=threshold, model=embed["config"]["model"])
    reset_if_changed(run, "dfn", config)
    per_shard = shard_scores(run)
    all_scores = np.concatenate([s for _, s in per_shard.values()]) if per_shard else np.zeros(0, np.float32)
    cut = fraction_threshold(all_scores, keep_fraction) if keep_fraction is not None else float(threshold)
    for shard_id, (uids, scores) in per_shard.items():
        table = pa.table({"uid": uids, "dfn_score": scores, "dfn_keep": scores >= np.float32(cut)})
        run.write_bytes(f"scores/dfn/{shard_id}.parquet", parquet_bytes(table))
    build_catalog(run)
    kept = int((all_scores >= np.float32(cut)).sum())
    counts = dict(scored=len(all_scores), kept=kept, dropped=len(all_scores) - kept, threshold=cut)
    record_stage(run, "dfn", config, counts=counts)
    return counts


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declares the DFN filter's options."""
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--keep-fraction", type=float, help="keep this top fraction of the whole pool")
    group.add_argument("--threshold", type=float, help="keep samples whose dfn_score is >= this")


def run(run_dir: RunDir, args: argparse.Namespace) -> dict:
    """Applies the DFN filter to the run's embeddings; returns threshold and counts."""
    return apply_dfn(run_dir, args.keep_fraction, args.threshold)

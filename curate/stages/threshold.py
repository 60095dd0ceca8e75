"""Whole-pool methods that score each sample on its own and keep those whose score reaches a threshold set by the
whole pool: DFN and the random baseline.

With --keep-fraction F the threshold is the score of the int(N x F)-th best sample of the pool, and a sample is
kept when its score is >= it (ties kept); never per shard. (DataComp's baseline code takes the score at index int(N
x F) of the descending order, one sample further.) One task per embedding file scores it into
partitions/<name>/<shard>.parquet, the threshold is an exact rank over those files (curate.stages.ranks), and a
second task per file writes scores/<name>/<shard>.parquet: uid, <name>_score, <name>_keep. No process holds the
pool's scores.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from curate.errors import UsageError
from curate.rundir import RunDir
from curate.runners import Runner, as_runner, quiet
from curate.stages.embeddings import pool_files
from curate.stages.pool import SelectionMethod
from curate.stages.ranks import ColumnRanks
from curate.stages.step import stage_step


def fraction_threshold(ranks: ColumnRanks, fraction: float) -> float:
    """Returns the score of the int(N x fraction)-th best of the N ranked scores: the threshold keeping that many
    (and the samples tied at it); +inf when that is none, -inf for no scores."""
    if not 0 < fraction <= 1:
        raise UsageError(f"--keep-fraction must be in (0, 1], got {fraction}")
    n = len(ranks)
    if n == 0:
        return float("-inf")
    kept = int(n * fraction)
    return ranks.kth_smallest(n - kept + 1) if kept else float("inf")


@dataclass(frozen=True, kw_only=True)
class ThresholdMethod(SelectionMethod):
    """A method scoring each embedded sample on its own (`file_scores`), kept at a whole-pool threshold."""

    uses_runner = True

    @abstractmethod
    def file_scores(self, path: str) -> tuple[pa.Array, np.ndarray]:
        """Returns (uids, scores) of one embedding file's samples, computed in a task."""

    def files(self, run: RunDir) -> list[Path]:
        """Returns the files whose samples it scores (default: the run's embedded pool)."""
        return pool_files(run)

    def fixed_threshold(self) -> float | None:
        """Returns the threshold the options fix (None: set by --keep-fraction)."""
        return None

    def apply(self, run: RunDir, runner: str | Runner = "local", **runner_options) -> dict:
        """Scores every embedding file, sets the threshold, writes the keep flags; returns the counts (the
        threshold among them when --keep-fraction set it)."""
        runner = as_runner(runner, **runner_options)
        with run.writing(), stage_step(run, self.step(run), lambda: self.files(run)) as (record, files):
            work = [(str(path), f"partitions/{self.name}/{path.name}") for path in files]
            runner.map(_score_file, (str(run.path), self), work, desc=self.name)
            scored = [run.path / relative for _, relative in work]
            cut = self.fixed_threshold()
            if cut is None:
                ranks = ColumnRanks(quiet(runner), scored, f"{self.name}_score")
                cut = fraction_threshold(ranks, self.keep_fraction)  # every subclass without a fixed one has it
            kept = quiet(runner).map(_keep_file, (str(run.path), self.name, cut), [str(p) for p in scored],
                                     desc=f"{self.name} keep")
            total = sum(pq.ParquetFile(p).metadata.num_rows for p in scored)
            record["counts"] = dict(scored=total, kept=sum(kept), dropped=total - sum(kept), threshold=float(cut))
        return record["counts"]


def _score_file(shared: tuple, item: tuple) -> None:
    """Writes one embedding file's scores to the stage's partitions/ folder (once)."""
    run_path, method = shared
    path, relative = item
    run = RunDir(run_path)
    if not (run.path / relative).exists():
        uids, scores = method.file_scores(path)
        run.write_table(relative, pa.table({"uid": uids, f"{method.name}_score": scores}))


def _keep_file(shared: tuple, path: str) -> int:
    """Writes a file's scores with <name>_keep at the threshold; returns how many it keeps."""
    run_path, name, cut = shared
    table = pq.read_table(path)
    scores = table[f"{name}_score"].to_numpy()
    keep = scores >= scores.dtype.type(cut)
    RunDir(run_path).write_table(f"scores/{name}/{Path(path).name}", table.append_column(
        f"{name}_keep", pa.array(keep)))
    return int(keep.sum())

"""Helpers shared by the benchmark scripts: a pool to measure on, timing, and writing results."""

import json
import platform
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from curate.rundir import RunDir

BENCH_DIR = Path(__file__).parent
RESULTS = BENCH_DIR / "results"
ALIGNED = ("clean", "exact_dup", "near_dup")  # synth truth kinds whose caption describes the image


def ensure_synth(folder: Path, samples: int, hq_samples: int | None = None, seed: int = 0, **options) -> Path:
    """Returns a synth pool folder (pool/, hq/, truth.parquet, heldout.parquet), generating it the first time
    (`options` go to generate_pool)."""
    from curate.synth import generate_pool

    if not (folder / "heldout.parquet").exists():
        generate_pool(folder, samples=samples, hq_samples=hq_samples, seed=seed, **options)
    return folder


def dfn_scored_run(synth: Path, work: Path, keep_fraction: float, seed: int = 0,
                   run_name: str = "run") -> tuple["RunDir", dict]:
    """Trains the tiny DFN on synth/hq (once, into work/dfn), ingests and embeds synth/pool with it into
    work/<run_name> (resuming), applies the DFN filter at `keep_fraction`; returns the run and step seconds."""
    import shutil

    from curate.filters.dfn import DFNFilter
    from curate.models import ModelSpec
    from curate.rundir import RunDir
    from curate.stages.embed import embed
    from curate.stages.ingest import ingest
    from curate.stages.training import train_dfn

    model_dir, run = work / "dfn", RunDir(work / run_name)
    timings = {}
    if not (model_dir / "open_clip_config.json").exists():
        shutil.rmtree(model_dir, ignore_errors=True)
        timings["train_dfn_seconds"], _ = timed(train_dfn, [str(synth / "hq")], model_dir, seed=seed, progress=False)
    timings["ingest_seconds"], _ = timed(ingest, [str(synth / "pool")], run, progress=False)
    timings["embed_seconds"], _ = timed(embed, run, ModelSpec(model=str(model_dir)), progress=False)
    DFNFilter(keep_fraction=keep_fraction).apply(run, progress=False)
    return run, {k: round(v, 1) for k, v in timings.items()}


def truth_connection(run: "RunDir", truth: Path):
    """Returns a read-only connection to the run's catalog with truth.parquet registered as the table `truth` (the
    catalog is confined to the run folder, so its SQL cannot read a file outside it)."""
    import pyarrow.parquet as pq

    from curate.catalogs import connect

    con = connect(run)
    con.register("truth", pq.read_table(truth))
    return con


def timed(fn, *args, **kwargs) -> tuple[float, object]:
    """Returns (seconds, result) of one call."""
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - start, result


def machine() -> dict:
    """Returns a description of the machine the figures come from."""
    import os

    return dict(python=platform.python_version(), cpus=os.cpu_count(), processor=platform.processor())


def write_results(name: str, results: dict) -> Path:
    """Writes results as benchmarks/results/<name>.json and returns the path."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(results | {"machine": machine()}, indent=2) + "\n")
    return path


class RowLog:
    """The rows a benchmark task has finished, in a JSON-lines file (named by the caller after the options that
    shape the figures) and keyed by `fields`: a killed run rerun with the same options skips them."""

    def __init__(self, path: Path, fields: tuple[str, ...]):
        self.path, self.fields = path, fields
        lines = path.read_text().splitlines() if path.exists() else []
        self.done = {self.key(r): r for r in map(json.loads, lines)}

    def key(self, row: dict) -> tuple:
        """Returns the identity of a row: its values of the log's fields."""
        return tuple(row[f] for f in self.fields)

    def add(self, row: dict) -> None:
        """Prints the row and appends it to the file."""
        print(json.dumps(row), flush=True)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as out:
            out.write(json.dumps(row) + "\n")
        self.done[self.key(row)] = row

"""Ingest throughput: local and Ray runners beside the ceiling of reading and decoding the same tars in a loop.

    python benchmarks/ingest.py [--samples N] [--repeats R] [--work DIR]

Prints a table and writes benchmarks/results/ingest.json. Runs are interleaved, and the median of the
repeats is reported, so the ratios compare runs taken side by side.
"""

import argparse
import io
import os
import shutil
import statistics
import sys
import tarfile
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import ensure_synth, timed, write_results
from PIL import Image

from curate.io.images import inspect_image
from curate.rundir import RunDir
from curate.runners.ray import init_ray
from curate.stages.ingest import ingest


def read_only(tars: list[Path]) -> int:
    """Reads every member of every tar; returns the image count."""
    count = 0
    for path in tars:
        with tarfile.open(path, "r|") as tar:
            for member in tar:
                data = tar.extractfile(member).read() if member.isfile() else b""
                count += member.name.endswith(".jpg") and len(data) > 0
    return count


def read_and_decode(tars: list[Path], full: bool) -> int:
    """Reads every tar and decodes each image (fully, or as ingest checks it); returns the image count."""
    count = 0
    for path in tars:
        with tarfile.open(path, "r|") as tar:
            for member in tar:
                if member.isfile() and member.name.endswith(".jpg"):
                    data = tar.extractfile(member).read()
                    if full:
                        Image.open(io.BytesIO(data)).convert("RGB")
                    else:
                        inspect_image(data)
                    count += 1
    return count


def run_ingest(pool: Path, work: Path, runner: str, workers: int | None) -> int:
    """Ingests the pool into a fresh run folder with `workers` workers; returns the kept count."""
    run = work / f"run-{runner}"
    shutil.rmtree(run, ignore_errors=True)
    return ingest([str(pool)], RunDir(run), runner, workers=workers, progress=False)["kept"]


def main() -> None:
    """Runs the benchmark, prints its figures and writes its results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=4000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="the local and Ray runners' workers")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "curate-bench-ingest")
    args = parser.parse_args()
    pool = ensure_synth(args.work / "synth", args.samples) / "pool"
    tars = sorted(pool.glob("*.tar"))
    megabytes = sum(p.stat().st_size for p in tars) / 1e6
    init_ray()  # started once, outside the timings: a long job pays it once
    cases = {
        "read tars only": lambda: read_only(tars),
        "read + full decode (ceiling)": lambda: read_and_decode(tars, full=True),
        "read + ingest's image check": lambda: read_and_decode(tars, full=False),
        "ingest, local runner, 1 worker": lambda: run_ingest(pool, args.work, "local", 1),
        f"ingest, local runner, {args.workers} workers": lambda: run_ingest(pool, args.work, "local", args.workers),
        f"ingest, ray runner, {args.workers} workers": lambda: run_ingest(pool, args.work, "ray", args.workers),
    }
    seconds = {name: [] for name in cases}
    samples = {}
    for _ in range(args.repeats):
        for name, fn in cases.items():
            elapsed, samples[name] = timed(fn)
            seconds[name].append(elapsed)
    ceiling = statistics.median(seconds["read + full decode (ceiling)"])
    rows = {}
    for name in cases:
        t = statistics.median(seconds[name])
        rows[name] = dict(seconds=t, samples=samples[name], samples_per_s=samples[name] / t,
                          mb_per_s=megabytes / t, vs_ceiling=ceiling / t)
        print(f"{name:32s} {rows[name]['samples_per_s']:9.0f} samples/s {rows[name]['mb_per_s']:7.1f} MB/s"
              f"  x{rows[name]['vs_ceiling']:.2f} of ceiling")
    local, ray = (rows[f"ingest, {r} runner, {args.workers} workers"]["samples_per_s"] for r in ("local", "ray"))
    print(f"ray / local at {args.workers} workers: {ray / local:.2f}")
    path = write_results("ingest", dict(pool_samples=args.samples, pool_mb=megabytes, repeats=args.repeats,
                                        workers=args.workers, ray_vs_local=ray / local, results=rows))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

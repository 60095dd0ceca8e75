"""Issue 26's caption repro: one huge caption cell in a Parquet shard, through `curate ingest` and `curate filter
basic` as a user runs them, with each command's peak memory.

    python benchmarks/caption_memory.py [--caption-mb 200] [--samples 10]

Each command runs as its own process on the local runner (no worker processes), so its peak resident set (ru_maxrss,
from wait4) is all the memory the command used; the shard is written by another process, as a child's peak starts
from its parent's. Writes results/caption_memory.json.
"""

from __future__ import annotations

import argparse
import io
import multiprocessing
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from common import write_results
from PIL import Image


def jpeg(i: int) -> bytes:
    """Returns a 48 x 40 JPEG of one colour."""
    buffer = io.BytesIO()
    Image.new("RGB", (48, 40), (200, i * 20 % 256, 30)).save(buffer, "JPEG")
    return buffer.getvalue()


def write_shard(path: Path, samples: int, caption_bytes: int) -> Path:
    """Writes a Parquet shard of `samples` images whose fourth caption holds `caption_bytes` bytes; returns it."""
    captions = [f"a red square number {i}" for i in range(samples)]
    captions[min(3, samples - 1)] = "x" * caption_bytes
    pq.write_table(pa.table({"jpg": [jpeg(i) for i in range(samples)], "caption": captions,
                             "key": [f"{i:03d}" for i in range(samples)]}), path)
    return path


def peak_of(argv: list[str]) -> dict:
    """Runs `curate ARGV` in a child process; returns its exit code, peak RSS in MiB and last stdout line."""
    process = subprocess.Popen([sys.executable, "-m", "curate.cli.main", *argv], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
    out = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    return dict(exit_code=os.waitstatus_to_exitcode(status), peak_mib=round(usage.ru_maxrss / 1024, 1),
                output=(out.strip().splitlines() or [""])[-1])


def main() -> None:
    """Runs the repro, prints its figures and writes its results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--caption-mb", type=int, default=200)
    parser.add_argument("--samples", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        shard = Path(folder) / "a.parquet"
        # In a process of its own: a child's peak RSS starts from its parent's, which must stay small.
        writer = multiprocessing.get_context("spawn").Process(
            target=write_shard, args=(shard, args.samples, args.caption_mb * 10**6))
        writer.start()
        writer.join()
        run = str(Path(folder) / "run")
        rows = {"ingest": peak_of(["ingest", str(shard), "--run", run]),
                "filter basic": peak_of(["filter", "basic", run])}
        reasons = subprocess.run([sys.executable, "-m", "curate.cli.main", "sql", run,
                                  "SELECT reason, detail FROM quarantine", "--format", "json"],
                                 capture_output=True, text=True).stdout.strip()
        shard_mib = round(shard.stat().st_size / 2**20, 1)
    for name, row in rows.items():
        print(f"{name:13s} exit {row['exit_code']}  peak {row['peak_mib']} MiB  {row['output'][:100]}")
    print(f"quarantine: {reasons}")
    results = dict(caption_mb=args.caption_mb, samples=args.samples, shard_mib=shard_mib, commands=rows,
                   quarantine=reasons)
    print(f"wrote {write_results('caption_memory', results)}")


if __name__ == "__main__":
    main()

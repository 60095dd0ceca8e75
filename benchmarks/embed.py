"""Embedding throughput: the embed stage on the local and Ray runners beside the decode-only ceiling.

    python benchmarks/embed.py [--models curate-tiny ViT-B-32] [--samples N] [--repeats R] [--workers W]
                               [--device cpu|cuda]

For each model (random weights: throughput does not depend on them), on the same shards: the decode-only
ceiling (re-read + decode + resize to the model's input, no model), the model alone on pre-decoded pixels,
and the whole stage: on the local runner and on Ray at the same worker count (default: the CPU count; worker
processes on both), and on the local runner in its own process (its default, one worker, no pool). Prints a
table, writes benchmarks/results/embed[-<device>].json.
On a GPU machine, `--device cuda --models ViT-B-16` measures the real actor path (num_gpus=1, bf16) and
samples GPU utilization with nvidia-smi while it runs.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import ensure_synth, timed, write_results

from curate.io.inputs import ShardTask
from curate.models import ModelSpec, load_model
from curate.models.encode import encode_batch
from curate.models.loading import config_of
from curate.rundir import RunDir
from curate.runners.ray import init_ray
from curate.stages.embed import EmbedJob, embed
from curate.stages.ingest import ingest


class GpuSampler:
    """Samples GPU utilization (%) once a second with nvidia-smi while running; empty without a GPU."""

    def __init__(self):
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self):
        while not self._stop.wait(1.0):
            try:
                out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                                     capture_output=True, text=True, timeout=5).stdout
                self.samples.append(float(out.split()[0]))
            except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
                return

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()


def decode_only(job: EmbedJob, tasks: list[ShardTask]) -> int:
    """Re-reads and decodes every shard to model-size pixels; returns the sample count."""
    return sum(job.prepare(t).num_rows for t in tasks)


def model_only(job: EmbedJob, prepared, device: str) -> int:
    """Runs the model on already-decoded batches; returns the sample count."""
    loaded = load_model(job.spec, device)
    size = job.image_size
    for table in prepared:
        for start in range(0, table.num_rows, job.batch_size):
            batch = table.slice(start, job.batch_size)
            pixels = batch["pixels"].combine_chunks().values.to_numpy().reshape(-1, size, size, 3)
            encode_batch(loaded, pixels, batch["caption"].to_pylist())
    return sum(t.num_rows for t in prepared)


def stage(run_template: Path, work: Path, spec: ModelSpec, runner: str, workers: int, batch: int,
          device: str) -> int:
    """Runs the embed stage on a fresh copy of the ingested run; returns the embedded count."""
    run = work / f"run-{runner}"
    shutil.rmtree(run, ignore_errors=True)
    shutil.copytree(run_template, run)
    return embed(RunDir(run), spec, runner, batch, device, workers=workers, progress=False)["embedded"]


def measure_model(name: str, run_template: Path, work: Path, args) -> dict:
    """Returns {case: samples, samples/s, ratio to the decode ceiling, GPU utilization} for decode only, model
    only and the embed stage on the runners (median of args.repeats, interleaved), and "ray / local" (at the same
    worker count) and "ray / local in-process"."""
    spec = ModelSpec(name, random_weights=True)
    run = RunDir(run_template)
    tasks = [ShardTask(m["shard_id"], m["shard"], m["kind"]) for m in run.markers("ingest")]
    shape = config_of(spec)
    job = EmbedJob(str(run.path), spec, shape.image_size, shape.embed_dim, batch_size=args.batch_size)
    prepared = [job.prepare(t) for t in tasks]
    cases = {
        "decode only (ceiling)": lambda: decode_only(job, tasks),
        "model only": lambda: model_only(job, prepared, args.device),
        "embed stage, local in-process": lambda: stage(run_template, work, spec, "local", 1, args.batch_size,
                                                       args.device),
        "embed stage, local": lambda: stage(run_template, work, spec, "local", args.workers, args.batch_size,
                                            args.device),
        "embed stage, ray": lambda: stage(run_template, work, spec, "ray", args.workers, args.batch_size,
                                          args.device),
    }
    seconds, counts, gpu = {k: [] for k in cases}, {}, {}
    for _ in range(args.repeats):
        for label, fn in cases.items():
            with GpuSampler() as sampler:
                elapsed, counts[label] = timed(fn)
            seconds[label].append(elapsed)
            gpu[label] = statistics.mean(sampler.samples) if sampler.samples else None
    ceiling = counts["decode only (ceiling)"] / statistics.median(seconds["decode only (ceiling)"])
    rows = {}
    for label in cases:
        rate = counts[label] / statistics.median(seconds[label])
        rows[label] = dict(samples=counts[label], samples_per_s=rate, vs_decode_ceiling=rate / ceiling,
                           gpu_util_percent=gpu[label])
        print(f"{name:14s} {label:24s} {rate:9.1f} samples/s  x{rate / ceiling:.2f} of decode ceiling")
    ray = rows["embed stage, ray"]["samples_per_s"]
    ratios = {"ray / local": ray / rows["embed stage, local"]["samples_per_s"],
              "ray / local in-process": ray / rows["embed stage, local in-process"]["samples_per_s"]}
    print(f"{name:14s} " + "  ".join(f"{label}: {value:.2f}" for label, value in ratios.items()))
    return rows | ratios


def main() -> None:
    """Runs the benchmark, prints its figures and writes its results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["curate-tiny", "ViT-B-32"])
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="worker processes of the local and Ray cases")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "curate-bench-embed")
    parser.add_argument("--name", help="the results file's name (default: embed, or embed-<device> off the CPU)")
    args = parser.parse_args()
    pool = ensure_synth(args.work / "synth", args.samples) / "pool"
    template = args.work / "ingested"
    if not (template / "catalog.duckdb").exists():
        ingest([str(pool)], RunDir(template), progress=False)
    init_ray()
    results = {name: measure_model(name, template, args.work, args) for name in args.models}
    name = args.name or ("embed" if args.device == "cpu" else f"embed-{args.device}")
    path = write_results(name, dict(pool_samples=args.samples, batch_size=args.batch_size, workers=args.workers,
                                                device=args.device, repeats=args.repeats, results=results))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

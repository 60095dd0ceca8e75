"""Helpers shared by the benchmark scripts: a pool to measure on, timing, and writing results."""

import json
import platform
import time
from pathlib import Path

BENCH_DIR = Path(__file__).parent
RESULTS = BENCH_DIR / "results"


def ensure_pool(folder: Path, samples: int, seed: int = 0) -> Path:
    """Returns the pool/ folder of a synth pool at `folder`, generating it the first time."""
    from curate.synth import generate_pool

    if not (folder / "pool").exists():
        generate_pool(folder, samples=samples, seed=seed)
    return folder / "pool"


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

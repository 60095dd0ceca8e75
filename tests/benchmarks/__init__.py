"""Tests of the benchmark scripts' own logic, and a loader for the scripts (they are not a package)."""

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

BENCHMARKS = Path(__file__).parents[2] / "benchmarks"


def bench_module(filename: str) -> ModuleType:
    """Returns benchmarks/<filename> imported as a module of its own, with benchmarks/ on sys.path while it imports
    (the scripts import their siblings)."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        spec = importlib.util.spec_from_file_location(f"{Path(filename).stem}_bench", BENCHMARKS / filename)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCHMARKS))

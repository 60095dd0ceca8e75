"""The kill test of benchmarks/reliability.py at a small size: ingest, embed, DFN, SemDeDup and DBP, each SIGKILLed
once at a random moment and rerun, end with the catalog of an uninterrupted run."""

import importlib.util
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).parents[2] / "benchmarks"


def load_reliability():
    sys.path.insert(0, str(BENCHMARKS))  # the script imports its sibling `common`
    try:
        spec = importlib.util.spec_from_file_location("reliability_bench", BENCHMARKS / "reliability.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCHMARKS))
    return module


def test_every_stage_killed_at_a_random_moment_resumes_to_the_same_catalog(tmp_path):
    result = load_reliability().measure_kills(tmp_path, samples=120, kills=1)
    assert list(result["stages"]) == ["ingest", "embed", "dfn", "semdedup", "dbp"]
    for stage, row in result["stages"].items():
        assert row["identical"] == row["trials"] == 1, stage

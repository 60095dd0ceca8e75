"""The kill test of benchmarks/reliability.py at a small size: ingest, embed, DFN, SemDeDup and DBP, each SIGKILLed
once at a random moment and rerun, end with the catalog of an uninterrupted run."""

from tests.benchmarks import bench_module


def test_every_stage_killed_at_a_random_moment_resumes_to_the_same_catalog(tmp_path):
    result = bench_module("reliability.py").measure_kills(tmp_path, samples=120, kills=1)
    assert list(result["stages"]) == ["ingest", "embed", "dfn", "semdedup", "dbp"]
    for stage, row in result["stages"].items():
        assert row["identical"] == row["trials"] == 1, stage

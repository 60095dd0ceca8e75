"""benchmarks/reliability.py at a small size: the kill test (a shard job, a model job and a whole-pool stage on the
partition: ingest, embed and SemDeDup, each SIGKILLed once at a random moment and rerun, end with the catalog of an
uninterrupted run; the benchmark kills DFN and DBP too), and one case of one hostile-use class (the others run in
the benchmark and their unit tests)."""

import pytest

from tests.benchmarks import bench_module

STAGES = ("ingest", "embed", "semdedup")


def test_a_shard_job_a_model_job_and_a_pool_stage_killed_at_random_resume_to_the_same_catalog(tmp_path):
    # Each command a process forked from one that imported curate once (no interpreter start-up: the kill moments
    # fall in the stages' work); the start-up measured once, with the first stage's `--help`
    result = bench_module("reliability.py").measure_kills(tmp_path, samples=120, kills=1, startup="first", fork=True,
                                                         stages=STAGES)
    assert tuple(result["stages"]) == STAGES
    for stage, row in result["stages"].items():
        assert row["identical"] == row["trials"] == 1, stage


HOLDING = ("sql --out",)
# Measured by `benchmarks/reliability.py --parts hostile`; in CI asserted by the unit tests named here, which reach
# the same code without a subprocess per case (or, for the last two, an embed per case).
UNIT_TESTED = {"export --out": "tests/test_outputs.py, tests/export/test_export.py",
               "killed export": "tests/test_outputs.py (stale staging folders), tests/export/test_export.py",
               "awkward run path": "tests/test_outputs.py", "awkward cwd": "tests/test_outputs.py",
               "read-only": "tests/test_outputs.py",
               "failed step": "tests/stages/test_embed.py, tests/filters/test_empty_selections.py (runtime --where)",
               "empty selection": "tests/filters/test_empty_selections.py"}


def test_every_hostile_use_class_is_asserted_here_or_by_unit_tests():
    assert sorted([*HOLDING, *UNIT_TESTED]) == sorted(bench_module("reliability_hostile.py").CLASSES)


def test_hostile_use_of_the_command_line_crashes_nothing_and_loses_nothing(tmp_path):
    result = bench_module("reliability_hostile.py").measure_hostile(tmp_path, samples=30, cases=1, classes=HOLDING)
    rows = result["classes"]
    assert list(rows) == list(HOLDING)
    skipped = {name: row["skipped"] for name, row in rows.items() if "skipped" in row}
    for name, row in rows.items():
        if name not in skipped:
            assert row["crashes"] == row["lost"] == row["wrong"] == 0, (name, row["problems"])
            assert row["cases"] == 1 and row["usable"] == row["checked"], (name, row["problems"])
    if skipped:
        pytest.skip(f"the other classes hold; not measured on this machine: {skipped}")

"""The runner contract on every registered runner: the same options, the same files in fresh run folders, the
same map results; a model job's resources decide where its parts run."""

import numpy as np
import pytest

from curate.errors import UsageError
from curate.filters.semdedup import SemDeDup
from curate.rundir import RunDir
from curate.runners import RUNNER_NAMES, as_runner, make_runner
from curate.stages.ingest import ingest
from tests.conftest import catalog_snapshot
from tests.shards import clean_shard, planted_datacomp_shards, sample_members, write_tar

RUNNERS = [("local", None), ("local", 2), ("ray", 2)]


def run_files(run: RunDir, *folders: str) -> dict[str, bytes]:
    """Returns relative path -> bytes of every file under the given folders of a run."""
    return {str(p.relative_to(run.path)): p.read_bytes() for f in folders for p in sorted((run.path / f).rglob("*"))
            if p.is_file()}


def test_every_runner_takes_the_same_options():
    for name in RUNNER_NAMES:
        runner = make_runner(name, workers=3, progress=False)
        assert (runner.name, runner.workers, runner.progress) == (name, 3, False)
        assert as_runner(name, workers=3, progress=False) == runner
        assert as_runner(runner) is runner
        with pytest.raises(UsageError, match="--workers must be >= 1"):
            make_runner(name, workers=0)
    with pytest.raises(UsageError, match="unknown runner 'spark'; choose one of local, ray"):
        make_runner("spark")


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pool")
    for s in range(4):
        clean_shard(folder / f"{s:05d}.tar", 6, start=6 * s)
    write_tar(folder / "00004.tar", sample_members("bad", caption=b"\xff\xfe"))
    return folder


def test_ingest_writes_identical_files_in_fresh_folders_on_every_runner(pool, tmp_path, ray_local):
    results = {}
    for name, workers in RUNNERS:
        run = RunDir(tmp_path / f"{name}-{workers}")
        counts = ingest([str(pool)], run, name, workers=workers, progress=False)
        results[(name, workers)] = counts, run_files(run, "samples", "quarantine", "_done"), catalog_snapshot(run)
    (counts, files, _), *others = results.values()
    assert counts == dict(read=25, kept=24, quarantined=1, shard_errors=0)
    assert len(files) == 15 and all(files.values())
    for other in others:
        assert other == next(iter(results.values()))


def cosine_rows(shared: np.ndarray, rows: list[int]) -> float:
    """A map task: the sum of the chosen rows' similarities to row 0."""
    return float((shared[rows] @ shared[0]).sum())


def test_map_returns_the_same_results_in_order_on_every_runner(ray_local):
    shared = np.random.default_rng(0).normal(size=(50, 8))
    items = [[i, (i * 7) % 50] for i in range(12)]
    expected = [cosine_rows(shared, rows) for rows in items]
    for name, workers in RUNNERS:
        assert make_runner(name, workers, progress=False).map(cosine_rows, shared, items) == expected


def test_a_whole_pool_method_writes_identical_files_in_fresh_folders_on_every_runner(tmp_path, ray_local):
    planted_datacomp_shards(tmp_path)
    outputs = []
    for name, workers in RUNNERS:
        run = RunDir(tmp_path / f"{name}-{workers}")
        ingest([str(tmp_path / "*.parquet")], run, progress=False)
        counts = SemDeDup(eps=0.01, clusters=3).apply(run, name, workers=workers, progress=False)
        outputs.append((counts, run_files(run, "scores/semdedup", "concepts", "partitions")))
    # a small pool is one bucket: its file in scores/ and in each partitions/ folder, and 3 concepts tables
    assert outputs[0][0]["dropped"] == 12 and len(outputs[0][1]) == 6
    assert all(other == outputs[0] for other in outputs[1:])


def test_a_model_job_gets_cpu_actors_on_a_cluster_without_gpus(ray_local):
    import ray

    from curate.runners.ray import RayRunner

    cpus = int(ray.cluster_resources()["CPU"])
    assert RayRunner().cpu_actors() == {"size": 1, "threads": cpus}  # one node: one actor with every CPU
    assert RayRunner(workers=2).cpu_actors() == {"size": 2, "threads": max(1, cpus // 2)}
    assert RayRunner(workers=4 * cpus).cpu_actors()["threads"] == 1

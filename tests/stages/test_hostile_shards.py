"""Property test of ingest against hostile shards: random tars and Parquet files from a grammar of faults
(curate.synth.hostile) mixed with good samples. Whatever the draw: no exception escapes, every good sample is
accepted, every faulty one quarantined with its reason, read = kept + quarantined, accepted images re-read
byte-identically, a second run is a no-op, and the Ray runner gives the same catalog."""

import numpy as np
import pytest

from curate.catalogs import connect
from curate.export import export_subset
from curate.rundir import RunDir
from curate.stages.ingest import ingest
from curate.synth.hostile import (
    MAX_CAPTION_BYTES,
    PARQUET_FAULTS,
    TAR_FAULTS,
    ShardTruth,
    hostile_parquet,
    hostile_tar,
    mismatches,
    read_options,
)
from tests.conftest import catalog_snapshot

OPTIONS = read_options()


def hostile_pool(folder, seed: int) -> list[ShardTruth]:
    """Writes 4 tars (some cut short), 2 Parquet files (one with integer captions at times) and a file that is
    not a tar; returns their truths."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    truths = [hostile_tar(folder / f"t{seed}-{i}.tar", rng, int(rng.integers(1, 14)), 0.5, rng.random() < 0.3)
              for i in range(4)]
    truths += [hostile_parquet(folder / f"p{seed}-{i}.parquet", rng, int(rng.integers(2, 12)), 0.4,
                               text_captions=rng.random() < 0.75) for i in range(2)]
    (folder / f"x{seed}.tar").write_bytes(rng.bytes(3000))
    return truths


def check(run: RunDir, truths: list[ShardTruth]) -> None:
    assert mismatches(run, truths) == []


SEEDS = range(12)


def test_hostile_shards_are_accounted_for_and_a_rerun_is_a_no_op(tmp_path):
    # The pools of every seed in one run (their shards named after their seed, their good samples' uids random):
    # one ingest, rerun and export instead of one per seed, every draw checked shard by shard all the same.
    truths = [truth for seed in SEEDS for truth in hostile_pool(tmp_path / "pool", seed)]
    run = RunDir(tmp_path / "run")
    first = ingest([str(tmp_path / "pool")], run, options=OPTIONS, progress=False)
    check(run, truths)
    assert first["shard_errors"] >= len(SEEDS)  # each pool's file that is not a tar
    before = catalog_snapshot(run)
    assert ingest([str(tmp_path / "pool")], run, options=OPTIONS, progress=False) == first
    assert run.manifest()["stages"]["ingest"]["shards_run"] == 0 and catalog_snapshot(run) == before
    summary = export_subset(run, None, "parquet", tmp_path / "out", progress=False)  # re-reads and checks sha256
    assert summary["samples"] == first["kept"] and summary["skipped"] == 0


def test_every_fault_of_the_grammar_is_drawn_and_quarantined(tmp_path):
    rng = np.random.default_rng(1)
    truth = hostile_tar(tmp_path / "all.tar", rng, 400, 1.0, cut=False)
    drawn = {reason for _, reason in truth.expected}
    assert drawn == {f.reason for f in TAR_FAULTS.values()}
    run = RunDir(tmp_path / "run")
    assert ingest([str(tmp_path / "all.tar")], run, options=OPTIONS, progress=False)["kept"] == 0
    check(run, [truth])


def test_the_ray_runner_gives_the_same_catalog(tmp_path, ray_local):
    hostile_pool(tmp_path / "pool", 99)
    local, on_ray = RunDir(tmp_path / "local"), RunDir(tmp_path / "ray")
    ingest([str(tmp_path / "pool")], local, options=OPTIONS, progress=False)
    ingest([str(tmp_path / "pool")], on_ray, "ray", options=OPTIONS, progress=False)
    assert catalog_snapshot(local) == catalog_snapshot(on_ray)


@pytest.mark.parametrize("seed", range(3))
def test_captions_of_random_huge_sizes_are_quarantined_and_ones_at_the_limit_kept(tmp_path, seed):
    rng = np.random.default_rng(seed)
    (tmp_path / "pool").mkdir()
    over = [name for name, fault in TAR_FAULTS.items() if fault.reason == "caption too large"]
    truths = [hostile_tar(tmp_path / "pool" / "t.tar", rng, 30, 0.5, cut=False, faults=over),
              hostile_parquet(tmp_path / "pool" / "p.parquet", rng, 30, 0.5, faults=["caption over the size limit"])]
    assert PARQUET_FAULTS["caption over the size limit"].reason == "caption too large"
    run = RunDir(tmp_path / "run")
    counts = ingest([str(tmp_path / "pool")], run, options=OPTIONS, progress=False)
    check(run, truths)
    expected = [reason for truth in truths for _, reason in truth.expected]
    assert counts["quarantined"] == expected.count("caption too large") > 0
    assert counts["read"] == counts["kept"] + counts["quarantined"] == 60
    con = connect(run)
    sizes = con.execute("SELECT strlen(caption) AS n FROM samples").fetchall()
    details = con.execute("SELECT detail FROM quarantine").fetchall()
    con.close()
    assert max(sizes)[0] == MAX_CAPTION_BYTES  # captions at the limit are drawn, and kept
    assert all(d.startswith("caption is ") and d.endswith(f"over --max-caption-bytes {MAX_CAPTION_BYTES}")
               for (d,) in details)

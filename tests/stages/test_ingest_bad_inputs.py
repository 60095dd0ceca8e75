"""Bad input never crashes a run and never vanishes: it lands in the quarantine with a reason."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.catalogs import connect
from curate.io.samples import ReadOptions
from curate.rundir import RunDir
from curate.stages.ingest import ingest
from curate.synth.broken import png_bomb
from tests.shards import clean_shard, image_bytes, sample_members, write_tar

BAD_SAMPLES = {
    # key: (members kwargs, expected reason)
    "corrupt": (dict(image=b"\xff\xd8\xff\xe0 not really a jpeg"), "bad image"),
    "truncjpg": (dict(image=image_bytes(size=(64, 64))[:300]), "bad image"),
    "bomb": (dict(image=png_bomb(), ext="png"), "bad image"),
    "empty": (dict(caption=""), "empty caption"),
    "blank": (dict(caption="  \n\t"), "empty caption"),
    "latin1": (dict(caption="caf\xe9".encode("latin-1")), "caption is not valid UTF-8"),
    "nocaption": (dict(caption=None), "missing caption"),
    "nojson": (dict(meta=None), "missing json"),
    "noimage": (dict(image=False), "missing image"),
    "gif": (dict(image=image_bytes(fmt="GIF"), ext="gif"), "missing image"),
}


@pytest.fixture
def messy_run(tmp_path):
    members = []
    for i in range(4):
        members += sample_members(f"good{i}", f"good caption {i}", image_bytes((i * 60, 5, 5)), {"n": i})
    for key, (kwargs, _) in BAD_SAMPLES.items():
        kwargs = dict(meta={"k": key}) | kwargs
        members += sample_members(key, **kwargs)
    members += [("badjson.jpg", image_bytes()), ("badjson.txt", b"x y z"), ("badjson.json", b"{not json")]
    write_tar(tmp_path / "messy.tar", members)
    whole = clean_shard(tmp_path / "whole.tar", 5)
    (tmp_path / "truncated.tar").write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    (tmp_path / "garbage.tar").write_bytes(b"this is not a tar archive at all" * 40)
    pq.write_table(pa.table({"foo": [1, 2, 3]}), tmp_path / "wrong.parquet")
    run = RunDir(tmp_path / "run")
    counts = ingest([str(tmp_path / "*.tar"), str(tmp_path / "wrong.parquet")], run, progress=False)
    return run, counts


def test_each_bad_sample_is_quarantined_with_its_reason(messy_run):
    run, _ = messy_run
    con = connect(run)
    reasons = dict(con.execute("SELECT key, reason FROM quarantine WHERE shard LIKE '%messy.tar'").fetchall())
    expected = {key: reason for key, (_, reason) in BAD_SAMPLES.items()} | {"badjson": "invalid json"}
    assert reasons == expected
    kept = {k for (k,) in con.execute("SELECT key FROM samples WHERE shard LIKE '%messy.tar'").fetchall()}
    assert kept == {f"good{i}" for i in range(4)}
    detail = con.execute("SELECT detail FROM quarantine WHERE key = 'bomb'").fetchone()[0]
    assert "decompression bomb" in detail


def test_broken_shards_are_quarantined_and_the_run_finishes(messy_run):
    run, _ = messy_run
    con = connect(run)
    shard_rows = con.execute("SELECT shard, reason FROM quarantine WHERE key IS NULL ORDER BY shard").fetchall()
    assert [(s.rsplit("/", 1)[1], r) for s, r in shard_rows] == [
        ("garbage.tar", "unreadable tar"), ("truncated.tar", "unreadable tar"),
    ]
    truncated_kept = con.execute("SELECT count(*) FROM samples WHERE shard LIKE '%truncated.tar'").fetchone()[0]
    assert 1 <= truncated_kept < 5
    wrong = con.execute("SELECT count(*), min(reason) FROM quarantine WHERE shard LIKE '%wrong.parquet'").fetchone()
    assert wrong == (3, "wrong parquet schema")


def test_every_sample_is_accounted_for(messy_run):
    run, counts = messy_run
    assert counts["read"] == counts["kept"] + counts["quarantined"]
    assert counts["shard_errors"] == 2
    manifest = json.loads((run.path / "manifest.json").read_text())
    assert manifest["stages"]["ingest"]["counts"] == counts
    con = connect(run)
    per_shard = con.execute("SELECT sum(read), sum(accepted), sum(quarantined) FROM shards").fetchone()
    assert per_shard == (counts["read"], counts["kept"], counts["quarantined"])


def test_pixel_limit_option_quarantines_large_images(tmp_path):
    clean_shard(tmp_path / "a.tar", 2)
    counts = ingest([str(tmp_path / "a.tar")], RunDir(tmp_path / "run"), options=ReadOptions(max_pixels=100),
                    progress=False)
    assert (counts["kept"], counts["quarantined"]) == (0, 2)


def test_synth_broken_samples_are_quarantined_with_their_reasons(tmp_path):
    from curate.synth import generate_pool
    from curate.synth.broken import BROKEN_KINDS, broken_kind_of

    pool = generate_pool(tmp_path / "synth", samples=40, shard_size=20, hq_samples=0, heldout_per_concept=0,
                         broken_samples=12)
    assert len(pool["pool_shards"]) == 3  # the broken samples come in a shard of their own
    counts = ingest([pool["pool"]], RunDir(tmp_path / "run"), progress=False)
    assert (counts["read"], counts["kept"], counts["quarantined"]) == (52, 40, 12)
    truth = pq.read_table(pool["truth"]).to_pylist()
    broken = [t for t in truth if t["kind"] == "broken"]
    expected = {t["key"]: BROKEN_KINDS[broken_kind_of(j)].reason for j, t in enumerate(broken)}
    rows = connect(RunDir(tmp_path / "run")).execute("SELECT key, reason FROM quarantine").fetchall()
    assert dict(rows) == expected
    assert {broken_kind_of(j) for j in range(len(broken))} == set(BROKEN_KINDS)

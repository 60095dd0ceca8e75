"""--max-caption-bytes: a caption over the limit is quarantined with its size, in every place captions come from
(a tar's .txt member, its json, a Parquet cell, DataComp's text), one at the limit is kept, and an oversized tar
member is never read into memory. The 200 MB caption of issue 26 scaled down to a 1 KiB limit."""

import json
import tracemalloc

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.catalogs import connect
from curate.cli.main import main
from curate.io.samples import ReadOptions
from curate.io.tars import read_tar_samples
from curate.rundir import RunDir
from curate.stages.ingest import ingest
from tests.shards import image_bytes, sample_members, write_tar

LIMIT = 1024
CAPTIONS = {"under": "a" * (LIMIT - 1), "at": "é" * (LIMIT // 2), "over": "é" * (LIMIT // 2) + "x"}


def write_shard(folder, kind: str) -> str:
    """Writes a shard of kind `kind` holding one sample per entry of CAPTIONS, keyed by it; returns its path."""
    if kind in ("tar", "json"):
        members = []
        for key, text in CAPTIONS.items():
            meta = {"caption": text} if kind == "json" else {}
            members += sample_members(key, None if kind == "json" else text, image_bytes(), meta)
        return str(write_tar(folder / "s.tar", members))
    if kind == "parquet":
        table = pa.table({"key": list(CAPTIONS), "caption": list(CAPTIONS.values()),
                          "jpg": pa.array([image_bytes()] * len(CAPTIONS), pa.binary())})
    else:  # DataComp metadata: uid and text, no image
        table = pa.table({"uid": [f"{i:032x}" for i in range(len(CAPTIONS))], "text": list(CAPTIONS.values())})
    pq.write_table(table, folder / "s.parquet")
    return str(folder / "s.parquet")


@pytest.mark.parametrize("kind", ["tar", "json", "parquet", "datacomp"])
def test_a_caption_over_the_limit_is_quarantined_with_its_size_and_one_at_it_kept(tmp_path, kind):
    run = RunDir(tmp_path / "run")
    counts = ingest([write_shard(tmp_path, kind)], run, options=ReadOptions(max_caption_bytes=LIMIT), progress=False)
    assert (counts["read"], counts["kept"], counts["quarantined"]) == (3, 2, 1)
    con = connect(run)
    kept = sorted(c for (c,) in con.execute("SELECT caption FROM samples").fetchall())
    quarantined = con.execute("SELECT reason, detail FROM quarantine").fetchall()
    con.close()
    assert kept == sorted([CAPTIONS["under"], CAPTIONS["at"]])
    assert quarantined == [("caption too large", f"caption is {LIMIT + 1} bytes, over --max-caption-bytes {LIMIT}")]


def test_an_oversized_caption_member_is_never_read_into_memory(tmp_path):
    caption = b"x" * (8 * 2**20)
    path = str(write_tar(tmp_path / "s.tar", sample_members("big", caption) + sample_members("small", b"ok")))

    def read(limit: int):
        tracemalloc.start()
        try:
            raws, error = read_tar_samples(path, max_caption_bytes=limit)
            return raws, error, tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    raws, error, peak = read(LIMIT)
    assert error is None and [(r.key, r.caption) for r in raws] == [("big", None), ("small", b"ok")]
    assert raws[0].problem == ("caption too large", f"caption is {len(caption)} bytes, over --max-caption-bytes "
                                                    f"{LIMIT}")
    assert peak < len(caption) // 8
    raws, _, peak = read(len(caption))  # the control: at its size the member is read, and the peak shows it
    assert raws[0].caption == caption and peak >= len(caption)


def test_the_cli_option_is_recorded_and_a_rerun_with_another_limit_is_refused(tmp_path, capsys):
    shard = write_shard(tmp_path, "tar")
    args = ["ingest", shard, "--run", str(tmp_path / "run"), "--max-caption-bytes"]
    assert main([*args, str(LIMIT)]) == 0
    assert json.loads(capsys.readouterr().out)["quarantined"] == 1
    options = RunDir(tmp_path / "run").manifest()["stages"]["ingest"]["config"]["options"]
    assert options["max_caption_bytes"] == LIMIT
    assert main([*args, str(2 * LIMIT)]) == 2
    assert "already holds the ingest stage made with other inputs or options" in capsys.readouterr().err
    assert main([*args, str(LIMIT)]) == 0  # the same limit resumes

"""A source shard that is missing, unreadable or changed since ingest skips its samples (a changed shard those whose
bytes no longer match), reported like samples a format cannot hold; the rest of the export goes on. Never are
wrong bytes exported, and an export left with nothing to write is a one-line error."""

import json
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate import catalogs
from curate.cli.main import main
from curate.errors import UsageError
from curate.export import SourceChangedError, export_subset
from curate.io.samples import ReadOptions
from curate.io.sources import SourceImages
from curate.rundir import RunDir
from curate.stages.ingest import ingest
from tests.export.readers import READERS
from tests.export.test_export import expected, interleaved_tar, sample_image, write_image_parquet

IMAGE_FORMATS = ("webdataset", "parquet", "hf")


@pytest.fixture(scope="module")
def broken(tmp_path_factory):
    """A run of five shards, four of them spoilt after ingest: gone.tar deleted, garbage.parquet overwritten with
    bytes that are not Parquet, one image of changed.tar and one of edited.parquet altered (not changed.parquet:
    beside changed.tar it would be img2dataset metadata); ok.tar intact. Returns (run, source folder)."""
    folder = tmp_path_factory.mktemp("source")
    interleaved_tar(folder / "ok.tar", 0, 3)
    interleaved_tar(folder / "gone.tar", 3, 2)
    interleaved_tar(folder / "changed.tar", 5, 2)
    write_image_parquet(folder / "edited.parquet", 7, 3, hf_struct=False)
    write_image_parquet(folder / "garbage.parquet", 10, 2, hf_struct=True)
    run = RunDir(tmp_path_factory.mktemp("run"))
    assert ingest([str(folder)], run, progress=False)["kept"] == 12
    (folder / "gone.tar").unlink()
    (folder / "garbage.parquet").write_bytes(b"not parquet at all")
    data = bytearray((folder / "changed.tar").read_bytes())
    offset, size = location(run, "s005")
    data[offset + size // 2] ^= 0xFF
    (folder / "changed.tar").write_bytes(bytes(data))
    table = pq.read_table(folder / "edited.parquet")
    images = table["jpg"].to_pylist()
    images[1] = sample_image(1)  # key p8
    pq.write_table(table.set_column(table.schema.get_field_index("jpg"), "jpg", pa.array(images)),
                   folder / "edited.parquet")
    return run, folder


def location(run: RunDir, key: str) -> tuple[int, int]:
    con = catalogs.connect(run)
    try:
        return con.sql(f"SELECT image_offset, image_size FROM samples WHERE key = '{key}'").fetchall()[0]
    finally:
        con.close()


def uids_where(run: RunDir, where: str) -> list[str]:
    return sorted(expected(run, where))


@pytest.mark.parametrize("fmt", IMAGE_FORMATS)
def test_the_rest_is_exported_and_the_lost_samples_reported_by_the_cli(broken, tmp_path, capsys, fmt):
    run, folder = broken
    assert main(["export", str(run.path), "--format", fmt, "--out", str(tmp_path / "out")]) == 0
    out, err = capsys.readouterr()
    summary = json.loads(out)
    reasons = {
        f"source shard missing: {folder / 'gone.tar'}": 2,
        f"source shard unreadable: {folder / 'garbage.parquet'}": 2,
        f"source shard changed since ingest: {folder / 'changed.tar'}": 1,
        f"source shard changed since ingest: {folder / 'edited.parquet'}": 1,
    }
    assert summary["skipped_reasons"] == reasons and summary["skipped"] == 6 and summary["samples"] == 6
    lost = "shard NOT LIKE '%ok.tar' AND key NOT IN ('s006', 'p7', 'p9')"
    assert summary["skipped_uids"] == uids_where(run, lost)[:5]
    assert all(f"curate: skipped {n} selected samples: {reason}" in err for reason, n in reasons.items())
    want = expected(run, f"NOT ({lost})")
    assert READERS[fmt](tmp_path / "out", tmp_path / "cache") == want  # the changed shards' intact samples too
    assert json.loads((tmp_path / "out" / "_export.json").read_text())["skipped_reasons"] == reasons


def test_a_uid_list_reads_no_shard_and_skips_nothing(broken, tmp_path):
    run, _ = broken
    summary = export_subset(run, None, "datacomp", tmp_path / "out", progress=False)
    assert (summary["samples"], summary["skipped"]) == (12, 0)


def test_an_export_of_lost_samples_only_is_a_one_line_error_and_writes_nothing(broken, tmp_path):
    run, folder = broken
    where = "shard LIKE '%gone.tar' OR key = 's005'"
    message = ("--format webdataset can write none of the selected samples (1 with source shard changed since "
               f"ingest: {folder / 'changed.tar'}; 2 with source shard missing: {folder / 'gone.tar'}); use --format "
               "datacomp to export a uid list")
    with pytest.raises(UsageError, match=f"^{re.escape(message)}$"):
        export_subset(run, where, "webdataset", tmp_path / "out", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_stages_that_read_images_still_stop_at_a_changed_shard(broken):
    run, _ = broken
    con = catalogs.connect(run)
    rows = con.sql("SELECT * FROM samples WHERE key = 'p8'").to_arrow_table()
    con.close()
    with pytest.raises(SourceChangedError, match=r"key 'p8'.* no longer matches the sha256") as caught:
        SourceImages(ReadOptions()).attach(rows)
    assert caught.value.reason.startswith("source shard changed since ingest: ")

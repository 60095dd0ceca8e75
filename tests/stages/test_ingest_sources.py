"""Ingest of each input kind: WebDataset tars, Parquet image shards, DataComp metadata with embeddings."""

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import curate
from curate.catalogs import connect
from curate.cli.main import main
from curate.errors import UsageError
from curate.io.samples import ReadOptions, default_uid
from curate.rundir import RunDir
from curate.stages.ingest import ingest
from tests.shards import clean_shard, datacomp_shard, image_parquet, sample_members, write_tar


def test_webdataset_samples_carry_metadata_and_stable_uids(tmp_path):
    clean_shard(tmp_path / "00000.tar", 3)
    run = RunDir(tmp_path / "run")
    ingest([str(tmp_path / "00000.tar")], run, progress=False)
    rows = connect(run).execute(
        "SELECT uid, key, url, caption, width, height, image_format, json FROM samples ORDER BY key"
    ).fetchall()
    assert [r[1] for r in rows] == ["000000000", "000000001", "000000002"]
    assert rows[0][0] == default_uid("00000", "000000000")
    assert rows[0][2:7] == ("http://example.com/0.jpg", "sample 0", 48, 40, "jpg")
    assert '"key": "000000000"' in rows[0][7]


def test_json_uid_is_used_when_present(tmp_path):
    members = sample_members("a", meta={"uid": "0123456789abcdef0123456789abcdef"})
    write_tar(tmp_path / "s.tar", members)
    run = RunDir(tmp_path / "run")
    ingest([str(tmp_path / "s.tar")], run, progress=False)
    assert connect(run).execute("SELECT uid FROM samples").fetchall() == [("0123456789abcdef0123456789abcdef",)]


def test_parquet_shards_with_configured_columns_and_hf_images(tmp_path):
    image_parquet(tmp_path / "plain.parquet", 3)
    image_parquet(tmp_path / "custom.parquet", 2, image_column="img_data", caption_column="alt")
    image_parquet(tmp_path / "hf.parquet", 2, image_column="image", hf_struct=True)
    run = RunDir(tmp_path / "run")
    counts = ingest([str(tmp_path / "plain.parquet"), str(tmp_path / "hf.parquet")], run, progress=False)
    assert (counts["kept"], counts["quarantined"]) == (5, 0)
    custom = RunDir(tmp_path / "custom")
    opts = ReadOptions(image_column="img_data", caption_column="alt")
    assert ingest([str(tmp_path / "custom.parquet")], custom, options=opts, progress=False)["kept"] == 2
    row = connect(custom).execute("SELECT key, caption, image_offset FROM samples ORDER BY key").fetchall()
    assert row == [("k0", "parquet caption 0", 0), ("k1", "parquet caption 1", 1)]


def _datacomp_shard(folder, n, dim=8, seed=0):
    emb = {k: np.random.default_rng([seed, i]).normal(size=(n, dim)).astype(np.float16)
           for i, k in enumerate(("l14_img", "l14_txt"))}
    uids = datacomp_shard(folder, emb["l14_img"], seed=seed, text_embeddings=emb["l14_txt"])
    return uids, emb


def test_datacomp_metadata_and_embeddings(tmp_path):
    uids, emb = _datacomp_shard(tmp_path, 6)
    run = RunDir(tmp_path / "run")
    counts = ingest([str(tmp_path / "0000.parquet")], run, progress=False)
    assert counts == dict(read=6, kept=6, quarantined=0, shard_errors=0)
    con = connect(run)
    assert con.execute("SELECT typeof(image_embedding) FROM embeddings LIMIT 1").fetchone() == ("FLOAT[8]",)
    got = con.execute("SELECT uid, image_embedding, caption, width FROM samples JOIN embeddings USING (uid)"
                      " ORDER BY uid").fetchall()
    assert [g[0] for g in got] == sorted(uids)
    first = uids.index(got[0][0])
    expected = emb["l14_img"][first].astype(np.float32)
    np.testing.assert_allclose(got[0][1], expected / np.linalg.norm(expected), rtol=1e-5)
    assert got[0][2:] == (f"text {first}", 640)
    scores = con.execute("SELECT count(clip_l14_similarity_score) FROM samples").fetchone()[0]
    assert scores == 6


def test_datacomp_embeddings_stored_as_float16_decide_as_float32(tmp_path, capsys):
    _datacomp_shard(tmp_path, 6)
    half, full = RunDir(tmp_path / "half"), RunDir(tmp_path / "full")
    assert main(["ingest", str(tmp_path / "0000.parquet"), "--run", str(half.path), "--dtype", "float16"]) == 0
    ingest([str(tmp_path / "0000.parquet")], full, progress=False)
    assert "dtype" not in str(full.manifest()["stages"]["ingest"]["config"])  # runs ingested before dtypes resume
    assert half.manifest()["stages"]["ingest"]["config"]["options"]["embedding_dtype"] == "float16"
    query = "SELECT image_embedding FROM embeddings ORDER BY uid"
    vectors, expected = (np.array(connect(r).execute(query).fetchall(), np.float32)[:, 0] for r in (half, full))
    np.testing.assert_allclose(vectors, expected, atol=1e-3)
    stored = pq.read_schema(next((half.path / "embeddings").glob("*.parquet"))).field("image_embedding").type
    assert stored.value_type == pa.float16()
    capsys.readouterr()
    assert main(["ingest", str(tmp_path / "0000.parquet"), "--run", str(half.path)]) == 2  # another dtype: refused
    assert "other inputs or options" in capsys.readouterr().err


def test_datacomp_npz_with_wrong_row_count_is_reported(tmp_path):
    _datacomp_shard(tmp_path, 4)
    np.savez(tmp_path / "0000.npz", l14_img=np.ones((3, 8)), l14_txt=np.ones((3, 8)))
    run = RunDir(tmp_path / "run")
    counts = ingest([str(tmp_path / "0000.parquet")], run, progress=False)
    assert counts["kept"] == 4 and counts["shard_errors"] == 1
    assert not (run.path / "embeddings").exists()


def test_duplicate_uids_keep_the_first_copy(tmp_path):
    uid = "f" * 32
    write_tar(tmp_path / "a.tar", sample_members("x", meta={"uid": uid}) + sample_members("y", meta={"uid": "e" * 32}))
    write_tar(tmp_path / "b.tar", sample_members("z", meta={"uid": uid}))
    run = RunDir(tmp_path / "run")
    counts = ingest([str(tmp_path / "*.tar")], run, progress=False)
    assert counts == dict(read=3, kept=2, quarantined=1, shard_errors=0)
    con = connect(run)
    assert con.execute("SELECT key, reason FROM quarantine").fetchall() == [("z", "duplicate uid")]
    assert con.execute("SELECT count(DISTINCT uid) FROM samples").fetchone()[0] == 2


def test_memory_filesystem_shards(tmp_path):
    fs = fsspec.filesystem("memory")
    fs.pipe("/ingest-test/00000.tar", clean_shard(tmp_path / "x.tar", 4).read_bytes())
    run = RunDir(tmp_path / "run")
    assert ingest(["memory://ingest-test/{00000..00000}.tar"], run, progress=False)["kept"] == 4


def test_rerun_with_other_options_is_refused(tmp_path):
    clean_shard(tmp_path / "a.tar", 1)
    run = RunDir(tmp_path / "run")
    ingest([str(tmp_path / "a.tar")], run, progress=False)
    with pytest.raises(UsageError, match="already holds the ingest stage"):
        ingest([str(tmp_path / "a.tar")], run, options=ReadOptions(max_pixels=10), progress=False)


def _ingested(run_path, shard, piece_rows, monkeypatch, embeddings=True) -> list:
    """Returns the counts, the shard ids and every sample's uid, key, caption, offset (and image embedding) of
    `shard` ingested with files over `piece_rows` rows read in pieces."""
    monkeypatch.setattr("curate.io.inputs.PIECE_ROWS", piece_rows)
    run = RunDir(run_path)
    counts = ingest([str(shard)], run, progress=False)  # pieces are planned on the driver: one worker shows them
    joined = ", image_embedding FROM samples JOIN embeddings USING (uid)" if embeddings else " FROM samples"
    rows = connect(run).execute(f"SELECT uid, key, caption, image_offset{joined} ORDER BY uid").fetchall()
    return [counts, sorted(m["shard_id"] for m in run.markers("ingest")), rows]


@pytest.mark.parametrize("compressed", [False, True])
def test_a_datacomp_file_larger_than_a_task_is_read_in_pieces_with_the_same_result(tmp_path, monkeypatch, compressed):
    _datacomp_shard(tmp_path, 10)
    pq.write_table(pq.read_table(tmp_path / "0000.parquet"), tmp_path / "0000.parquet", row_group_size=4)
    if compressed:
        arrays = dict(np.load(tmp_path / "0000.npz"))
        np.savez_compressed(tmp_path / "0000.npz", **arrays)
    whole = _ingested(tmp_path / "whole", tmp_path / "0000.parquet", 100, monkeypatch)
    pieces = _ingested(tmp_path / "pieces", tmp_path / "0000.parquet", 3, monkeypatch)
    assert whole[1] == ["0000"] and pieces[1] == [f"0000.part{i:04d}" for i in range(4)]
    assert pieces[0] == whole[0] == dict(read=10, kept=10, quarantined=0, shard_errors=0)
    assert pieces[2] == whole[2] and len(whole[2]) == 10


def test_an_image_parquet_file_larger_than_a_task_is_read_in_pieces_with_the_same_result(tmp_path, monkeypatch):
    shard = image_parquet(tmp_path / "images.parquet", 5)
    pq.write_table(pq.read_table(shard), shard, row_group_size=2)
    whole = _ingested(tmp_path / "whole", shard, 100, monkeypatch, embeddings=False)
    pieces = _ingested(tmp_path / "pieces", shard, 2, monkeypatch, embeddings=False)
    assert pieces[1] == [f"images.part{i:04d}" for i in range(3)]
    assert pieces[0] == whole[0] and pieces[2] == whole[2]
    assert [row[3] for row in sorted(whole[2], key=lambda r: r[1])] == list(range(5))  # offsets in the file


def test_a_uid_repeated_across_datacomp_shards_is_one_sample_with_one_embedding_and_score(tmp_path):
    # A later shard repeats the first shard's first uid: its copy is quarantined, and its .npz embedding and scores
    # leave the views with it (they doubled the sample's rows in samples and in the whole-pool stages' input).
    vectors = np.random.default_rng(0).normal(size=(6, 8))
    first = datacomp_shard(tmp_path, vectors[:3], "0000", 1)
    datacomp_shard(tmp_path, vectors[3:], "0001", 2)
    later = pq.read_table(tmp_path / "0001.parquet")
    pq.write_table(later.set_column(0, "uid", pa.array([first[0], *later["uid"].to_pylist()[1:]])),
                   tmp_path / "0001.parquet")
    run = RunDir(tmp_path / "run")
    inputs = [str(tmp_path / "0000.parquet"), str(tmp_path / "0001.parquet")]
    options = ReadOptions(datacomp_embeddings="l14")
    assert ingest(inputs, run, options=options, progress=False) == dict(read=6, kept=5, quarantined=1,
                                                                         shard_errors=0)
    con = connect(run)
    try:
        for view in ("samples", "embeddings"):
            assert con.execute(f"SELECT count(*), count(DISTINCT uid) FROM {view}").fetchone() == (5, 5), view
        kept = con.execute("SELECT clip_l14_similarity_score FROM samples WHERE uid = ?", [first[0]]).fetchall()
        vector = con.execute("SELECT image_embedding FROM embeddings WHERE uid = ?", [first[0]]).fetchone()[0]
    finally:
        con.close()
    original = pq.read_table(tmp_path / "0000.parquet")["clip_l14_similarity_score"][0].as_py()
    assert kept == [(pytest.approx(original),)]
    expected = vectors[0] / np.linalg.norm(vectors[0])
    assert np.allclose(vector, expected, atol=2e-3)  # the first shard's, not the later copy's
    assert ingest(inputs, run, options=options, progress=False)["kept"] == 5  # a rerun changes nothing
    annotated = curate.open(run.path).annotate("mine", pa.table({"uid": [first[0]], "score": [1.0]}))
    assert annotated["matched"] == 1 and annotated["samples_without_row"] == 4  # its later copy is not a sample

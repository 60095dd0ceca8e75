"""End-to-end export tests: real tars and Parquet shards are ingested, exported and read back by consumers."""

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate import catalogs
from curate.errors import UsageError
from curate.export import EXPORT_FORMATS, export_subset
from curate.export.wds import tar_member
from curate.rundir import RunDir
from curate.stages.ingest import ingest
from tests.export.readers import READERS, read_parquet, read_uids, read_webdataset, sha
from tests.shards import image_bytes, sample_members, write_tar

SUBSET = "width >= 24 AND caption NOT LIKE '%seven%'"
DATACOMP_UID = "0123456789abcdef" + "fedcba9876543210"
TAR_FORMATS = {0: ("png", "PNG"), 2: ("webp", "WEBP")}  # sample index -> (extension, PIL format); else jpg


def sample_image(i: int, fmt: str = "JPEG") -> bytes:
    """Returns sample `i`'s image: its size (16 + 4i by 12 + i) and colour depend on `i`."""
    return image_bytes((20 * i % 256, 90, 200), (16 + 4 * i, 12 + i), fmt)


def caption_of(i: int) -> str:
    """Returns the unique, non-ASCII caption of sample `i`."""
    words = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven"]
    return f"a photo of {words[i]} — café №{i}"


def interleaved_tar(path: Path, first: int, count: int, uids: dict[int, str] | None = None) -> Path:
    """Writes samples first.. as all images (reversed), then all json, then all captions: none adjacent."""
    members = []
    for i in range(first, first + count):
        ext, fmt = TAR_FORMATS.get(i, ("jpg", "JPEG"))
        meta = {"url": f"https://example.com/{i}.jpg", "source_note": f"note {i}"}
        meta |= {"uid": uids[i]} if uids and i in uids else {}
        members += sample_members(f"s{i:03d}", caption_of(i), sample_image(i, fmt), meta, ext)
    kinds = [name.split(".")[1] for name, _ in members]
    images = [m for m, kind in zip(members, kinds, strict=True) if kind not in ("json", "txt")]
    rest = [m for kind in ("json", "txt") for m, k in zip(members, kinds, strict=True) if k == kind]
    return write_tar(path, images[::-1] + rest)


def write_image_parquet(path: Path, first: int, count: int, hf_struct: bool) -> Path:
    """Writes an image Parquet shard with two-row row groups; the image is a HF struct or plain bytes."""
    rows = range(first, first + count)
    data = [sample_image(i) for i in rows]
    image = pa.array([{"bytes": d, "path": None} for d in data]) if hf_struct else pa.array(data, pa.binary())
    table = pa.table({"key": [f"p{i}" for i in rows], "caption": [caption_of(i) for i in rows],
                      "image" if hf_struct else "jpg": image})
    pq.write_table(table, path, row_group_size=2)
    return path


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """Source shards: a tar with one DataComp-style uid, a HF-struct Parquet shard and a plain-bytes one."""
    folder = tmp_path_factory.mktemp("source")
    interleaved_tar(folder / "a.tar", 0, 5, uids={1: DATACOMP_UID})
    write_image_parquet(folder / "b.parquet", 5, 5, hf_struct=True)
    write_image_parquet(folder / "c.parquet", 10, 2, hf_struct=False)
    return folder


@pytest.fixture(scope="module")
def run(source, tmp_path_factory) -> RunDir:
    """The run the three source shards were ingested into."""
    run = RunDir(tmp_path_factory.mktemp("run"))
    counts = ingest([str(source)], run, progress=False)
    assert counts["kept"] == 12
    return run


def expected(run: RunDir, where: str | None) -> dict[str, tuple[str, str]]:
    """Returns uid -> (caption, sha256) of the samples `where` selects, read from the catalog."""
    con = catalogs.connect(run)
    try:
        rows = con.sql(f"SELECT uid, caption, sha256 FROM samples WHERE ({where or 'TRUE'})").fetchall()
    finally:
        con.close()
    return {uid: (caption, sha) for uid, caption, sha in rows}


@pytest.mark.parametrize("fmt", EXPORT_FORMATS)
@pytest.mark.parametrize("where", [None, SUBSET])
def test_export_round_trips(run, tmp_path, fmt, where):
    want = expected(run, where)
    assert 0 < len(want) <= 12 and (where is None) == (len(want) == 12)
    summary = export_subset(run, where, fmt, tmp_path / "out", progress=False)
    assert summary["samples"] == len(want) and summary["format"] == fmt
    got = READERS[fmt](tmp_path / "out", tmp_path / "cache")
    if fmt == "datacomp":
        assert got == set(want)
    else:
        assert got == want
    written = json.loads((tmp_path / "out" / "_export.json").read_text())
    assert (written["where"], written["samples"], written["files"]) == (where, len(want), summary["files"])
    assert all((tmp_path / "out" / f).is_file() for f in summary["files"])
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_catalog_hashes_are_the_source_bytes(run):
    """The round trips compare to the catalog; the catalog itself must hold the sources' hashes."""
    by_caption = {caption: sha for caption, sha in expected(run, None).values()}
    fmt = {i: fmt for i, (_, fmt) in TAR_FORMATS.items()}
    assert by_caption == {caption_of(i): sha(sample_image(i, fmt.get(i, "JPEG"))) for i in range(12)}


@pytest.mark.parametrize("fmt", ["webdataset", "parquet", "hf"])
def test_shard_size_splits_output(run, tmp_path, fmt):
    summary = export_subset(run, None, fmt, tmp_path / "out", shard_size=5, progress=False)
    out = tmp_path / "out"
    if fmt == "webdataset":
        sizes = json.loads((out / "sizes.json").read_text())
        assert sizes == {"00000.tar": 5, "00001.tar": 5, "00002.tar": 2}
        assert sorted(p.name for p in out.glob("*.tar")) == ["00000.tar", "00001.tar", "00002.tar"]
    elif fmt == "parquet":
        rows = [pq.ParquetFile(out / f"part-{i:05d}.parquet").metadata.num_rows for i in range(3)]
        assert rows == [5, 5, 2] and len(list(out.glob("*.parquet"))) == 3
    else:
        assert len([f for f in summary["files"] if f.endswith(".arrow")]) == 3
    assert READERS[fmt](out, tmp_path / "cache") == expected(run, None)


def test_webdataset_tars_are_deterministic_tarfile_output(run, tmp_path):
    export_subset(run, SUBSET, "webdataset", tmp_path / "one", progress=False)
    export_subset(run, SUBSET, "webdataset", tmp_path / "two", progress=False)
    written = (tmp_path / "one" / "00000.tar").read_bytes()
    assert written == (tmp_path / "two" / "00000.tar").read_bytes()
    with tarfile.open(tmp_path / "one" / "00000.tar") as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    headers = {(m.mtime, m.uid, m.gid, m.mode, m.uname, m.isfile()) for m, _ in members}
    assert headers == {(0, 0, 0, 0o644, "", True)}
    assert [m.name.split(".")[1] for m, _ in members[:3]] in (["jpg", "txt", "json"], ["png", "txt", "json"])
    # The hand-built headers are byte for byte what tarfile writes for the same members.
    reference = io.BytesIO()
    with tarfile.open(fileobj=reference, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for member, data in members:
            tar.addfile(tar_member(member.name, len(data)), io.BytesIO(data))
    assert written == reference.getvalue()


def test_webdataset_loads_in_open_clip_training_loader(run, tmp_path):
    """open_clip's training loader reads keys jpg;png;webp and txt, and the dataset size from sizes.json."""
    from open_clip_train import data

    export_subset(run, None, "webdataset", tmp_path / "out", shard_size=5, progress=False)
    shards = str(tmp_path / "out" / "{00000..00002}.tar")
    assert data.get_dataset_size(shards) == (12, 3)
    args = type("Args", (), dict(
        train_data=shards, train_num_samples=12, train_data_upsampling_factors=None, dataset_resampled=False,
        batch_size=4, workers=0, world_size=1, seed=0,
    ))()
    info = data.get_wds_dataset(args, lambda im: im.size, is_train=True, epoch=0, tokenizer=lambda text: [text])
    captions = [text for _, texts in info.dataloader for text in texts]
    assert sorted(captions) == sorted(caption for caption, _ in expected(run, None).values())


def test_bad_predicate_is_a_usage_error(run, tmp_path):
    with pytest.raises(UsageError, match="Binder Error"):
        export_subset(run, "no_such_column = 1", "parquet", tmp_path / "out", progress=False)
    with pytest.raises(UsageError, match="Parser Error"):
        export_subset(run, "width >", "parquet", tmp_path / "out", progress=False)
    with pytest.raises(UsageError, match="Parser Error"):  # cannot close the WHERE and append its own query
        export_subset(run, "TRUE) UNION ALL (SELECT * FROM samples", "hf", tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_unknown_format_lists_formats(run, tmp_path):
    with pytest.raises(UsageError, match="webdataset, parquet, datacomp, hf"):
        export_subset(run, None, "csv", tmp_path / "out", progress=False)


def test_overwrite_replaces_only_an_earlier_export(run, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(UsageError, match="it exists; choose another path or pass --overwrite"):
        export_subset(run, None, "datacomp", out, progress=False)
    with pytest.raises(UsageError, match="curate did not write there"):  # issue 26: this folder used to go
        export_subset(run, "FALSE", "parquet", out, overwrite=True, progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"] and (out / "keep.txt").read_text() == "mine"
    (tmp_path / "empty").mkdir()
    export_subset(run, None, "datacomp", tmp_path / "empty", progress=False)
    assert read_uids(tmp_path / "empty", tmp_path) == set(expected(run, None))
    export_subset(run, None, "webdataset", tmp_path / "empty", overwrite=True, progress=False)
    assert "uids.npy" not in {p.name for p in (tmp_path / "empty").iterdir()}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging or moved-aside folders


def test_out_inside_the_run_or_over_its_sources_is_refused_even_with_overwrite(run, source):
    before = sorted(p.name for p in source.iterdir())
    for out, message in ((run.path / "subset", "inside the curate run folder"), (source, "holds .*which this command"),
                         (source.parent, "holds"), (run.path, "inside the curate run folder")):
        with pytest.raises(UsageError, match=message):
            export_subset(run, None, "webdataset", out, overwrite=True, progress=False)
    assert sorted(p.name for p in source.iterdir()) == before and not (run.path / "subset").exists()


def test_webdataset_json_keeps_the_sources_fields_and_names_curates_hash_apart(tmp_path):
    meta = {"url": "https://example.com/x.jpg", "caption": "as downloaded", "sha256": "f" * 64, "width": 640,
            "key": "000000001", "original_width": 1280}
    write_tar(tmp_path / "a.tar", sample_members("000000001", "the stored caption", sample_image(1), meta))
    run = RunDir(tmp_path / "run")
    ingest([str(tmp_path / "a.tar")], run, progress=False)
    export_subset(run, None, "webdataset", tmp_path / "out", progress=False)
    with tarfile.open(tmp_path / "out" / "00000.tar") as tar:
        exported = json.loads(tar.extractfile(next(m for m in tar if m.name.endswith(".json"))).read())
    assert {k: exported[k] for k in meta} == meta  # img2dataset's sha256 hashes the download: kept as it was
    assert exported["stored_sha256"] == hashlib.sha256(sample_image(1)).hexdigest()
    assert exported["uid"] == exported_uid(run) and exported["height"] > 0


def exported_uid(run: RunDir) -> str:
    return catalogs.connect(run).execute("SELECT uid FROM samples").fetchall()[0][0]


@pytest.mark.parametrize("fmt", EXPORT_FORMATS)
def test_empty_selection_gives_empty_output(run, tmp_path, fmt):
    summary = export_subset(run, "FALSE", fmt, tmp_path / "out", progress=False)
    assert summary["samples"] == 0 and summary["files"]
    assert all((tmp_path / "out" / f).is_file() for f in summary["files"])
    if fmt == "hf":
        from datasets import load_from_disk

        assert len(load_from_disk(str(tmp_path / "out"))) == 0


def test_a_sample_a_format_cannot_hold_is_skipped_and_reported_in_every_format(tmp_path):
    long_uid = "u" * 150  # safe, but too long for a plain tar header: written with a PAX header
    hex_uid = "ab" * 16
    interleaved_tar(tmp_path / "evil.tar", 0, 3, uids={0: long_uid, 1: "../../evil", 2: hex_uid})
    run = RunDir(tmp_path / "run")
    ingest([str(tmp_path / "evil.tar")], run, progress=False)
    summaries = {fmt: export_subset(run, None, fmt, tmp_path / fmt, progress=False) for fmt in EXPORT_FORMATS}
    wds = summaries["webdataset"]
    assert (wds["samples"], wds["skipped"], wds["skipped_uids"]) == (2, 1, ["../../evil"])
    assert list(wds["skipped_reasons"]) == ["uid cannot be written: tar member names are made from the uid, which "
                                            "may only hold A-Z a-z 0-9 _ -"]
    assert read_webdataset(tmp_path / "webdataset").keys() == {long_uid, hex_uid}
    assert not list(tmp_path.parent.rglob("evil.jpg")) and not list(tmp_path.parent.rglob("evil.txt"))
    datacomp = summaries["datacomp"]  # a uid list holds 32-hex-digit uids only
    assert (datacomp["samples"], datacomp["skipped"], datacomp["skipped_uids"]) == (1, 2, ["../../evil", long_uid])
    assert read_uids(tmp_path / "datacomp", tmp_path) == {hex_uid}
    for fmt in ("parquet", "hf"):  # formats that do not name files by uid hold every sample
        assert (summaries[fmt]["samples"], summaries[fmt]["skipped"]) == (3, 0)
    assert read_parquet(tmp_path / "parquet", tmp_path / "cache").keys() == expected(run, None).keys()


def test_metadata_only_run_exports_uids_only(tmp_path):
    uids = [f"{i:032x}" for i in (7, 3, 2**100)]
    pq.write_table(pa.table({
        "uid": uids, "text": ["a", "b", "c"], "url": ["u1", "u2", "u3"], "original_width": [10, 20, 30],
        "original_height": [10, 20, 30], "sha256": ["0" * 64] * 3,
    }), tmp_path / "meta.parquet")
    run = RunDir(tmp_path / "run")
    ingest([str(tmp_path / "meta.parquet")], run, progress=False)
    export_subset(run, None, "datacomp", tmp_path / "out", progress=False)
    assert read_uids(tmp_path / "out", tmp_path) == set(uids)
    with pytest.raises(UsageError, match="--format datacomp"):
        export_subset(run, None, "webdataset", tmp_path / "wds", progress=False)

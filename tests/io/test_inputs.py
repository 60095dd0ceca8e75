import fsspec
import pytest

from curate.errors import UsageError
from curate.io.inputs import expand_inputs
from tests.shards import clean_shard, image_parquet


@pytest.fixture
def pool(tmp_path):
    for i in range(3):
        clean_shard(tmp_path / f"{i:05d}.tar", 2)
        (tmp_path / f"{i:05d}.parquet").write_bytes(b"img2dataset metadata")  # must be skipped
        (tmp_path / f"{i:05d}_stats.json").write_text("{}")
    return tmp_path


def test_brace_range_glob_and_folder_give_the_same_shards(pool):
    by_brace = expand_inputs([f"{pool}/{{00000..00002}}.tar"])
    by_glob = expand_inputs([f"{pool}/*"])
    by_folder = expand_inputs([str(pool)])
    assert [t.url for t in by_brace] == [t.url for t in by_glob] == [t.url for t in by_folder]
    assert [t.shard_id for t in by_brace] == ["00000", "00001", "00002"]
    assert {t.kind for t in by_brace} == {"webdataset"}


def test_file_urls_and_repeats(pool):
    tasks = expand_inputs([f"file://{pool}/00000.tar", f"{pool}/00000.tar"])
    assert len(tasks) == 1 and tasks[0].url == f"{pool}/00000.tar"


def test_memory_filesystem_urls():
    fs = fsspec.filesystem("memory")
    fs.pipe("/pool/a/00000.tar", b"x")
    fs.pipe("/pool/a/00001.tar", b"x")
    tasks = expand_inputs(["memory://pool/a/*.tar"])
    assert [t.url for t in tasks] == ["memory:///pool/a/00000.tar", "memory:///pool/a/00001.tar"]
    assert all(fsspec.open(t.url).open().read() == b"x" for t in tasks)


def test_clashing_stems_get_distinct_ids(tmp_path):
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        clean_shard(tmp_path / d / "00000.tar", 1)
    ids = [t.shard_id for t in expand_inputs([f"{tmp_path}/*/00000.tar"])]
    assert len(set(ids)) == 2 and all(i.startswith("00000-") for i in ids)


def test_parquet_without_sibling_tar_is_a_shard(tmp_path):
    image_parquet(tmp_path / "part.parquet", 2)
    assert [t.kind for t in expand_inputs([str(tmp_path)])] == ["parquet"]


def test_missing_input_and_bad_format_are_usage_errors(tmp_path):
    with pytest.raises(UsageError, match="no shards found"):
        expand_inputs([str(tmp_path / "nope-*.tar")])
    with pytest.raises(UsageError, match="input-format"):
        expand_inputs([str(tmp_path)], input_format="zip")


def test_url_of_a_filesystem_that_is_not_installed_says_what_to_install():
    pytest.importorskip("fsspec")
    try:
        import s3fs  # noqa: F401
    except ImportError:
        with pytest.raises(UsageError, match="s3fs"):
            expand_inputs(["s3://bucket/pool/00000.tar"])
    else:
        pytest.skip("s3fs is installed here")

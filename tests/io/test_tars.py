from curate.io.tars import read_tar_samples, split_member_name
from tests.shards import clean_shard, image_bytes, write_tar


def test_member_names_split_at_the_first_dot_of_the_basename():
    assert split_member_name("a/b.c/0001.seg.jpg") == ("a/b.c/0001", "seg.jpg")
    assert split_member_name("0001.JPG") == ("0001", "jpg")
    assert split_member_name("._0001.jpg") is None
    assert split_member_name("README") is None


def test_samples_with_non_adjacent_members_are_assembled(tmp_path):
    jpg_a, jpg_b = image_bytes((1, 2, 3)), image_bytes((200, 100, 0))
    members = [("a.jpg", jpg_a), ("b.jpg", jpg_b), ("b.txt", b"bee"), ("a.txt", b"ay"), ("a.json", b"{}")]
    raws, error = read_tar_samples(str(write_tar(tmp_path / "x.tar", members)))
    assert error is None
    by_key = {r.key: r for r in raws}
    assert [r.key for r in raws] == ["a", "b"]
    assert (by_key["a"].image, by_key["a"].caption, by_key["a"].json_text) == (jpg_a, b"ay", b"{}")
    assert (by_key["b"].image, by_key["b"].caption, by_key["b"].json_text) == (jpg_b, b"bee", None)


def test_image_offset_points_at_the_member_bytes(tmp_path):
    path = clean_shard(tmp_path / "x.tar", 3)
    raws, _ = read_tar_samples(str(path))
    data = path.read_bytes()
    for raw in raws:
        assert data[raw.image_offset : raw.image_offset + len(raw.image)] == raw.image


def test_truncated_tar_keeps_what_was_read_and_reports_the_error(tmp_path):
    path = clean_shard(tmp_path / "x.tar", 6)
    data = path.read_bytes()
    cut = tmp_path / "cut.tar"
    cut.write_bytes(data[: len(data) // 2])
    raws, error = read_tar_samples(str(cut))
    assert error is not None and 1 <= len(raws) < 6


def test_repeated_member_is_flagged(tmp_path):
    path = write_tar(tmp_path / "x.tar", [("a.jpg", image_bytes()), ("a.txt", b"x"), ("a.txt", b"y")])
    raws, _ = read_tar_samples(str(path))
    assert raws[0].problem == ("repeated member in tar", "a.txt appears more than once")

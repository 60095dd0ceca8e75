"""Loading held-out sets from Parquet and from a folder of class folders, skipping images that don't decode."""

import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from curate.errors import UsageError
from curate.models.heldout import load_heldout


def jpeg(color: tuple[int, int, int], size: tuple[int, int] = (48, 40)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="JPEG")
    return buffer.getvalue()


def test_parquet_with_captions(tmp_path):
    path = tmp_path / "heldout.parquet"
    pq.write_table(pa.table({
        "jpg": [jpeg((255, 0, 0)), b"not an image", jpeg((0, 0, 255)), jpeg((250, 5, 5))],
        "label": ["red square", "red square", "blue square", "red square"],
        "caption": ["a red one", "broken", "a blue one", "another red one"],
    }), path)
    held = load_heldout(path, 32)
    assert held.pixels.shape == (3, 32, 32, 3) and held.pixels.dtype == np.uint8
    assert held.classnames == ["blue square", "red square"]
    assert held.labels.tolist() == [1, 0, 1]
    assert held.captions == ["a red one", "a blue one", "another red one"]
    assert held.skipped == 1 and len(held) == 3


def test_parquet_without_captions_and_with_missing_columns(tmp_path):
    path = tmp_path / "labels.parquet"
    pq.write_table(pa.table({"jpg": [jpeg((0, 255, 0))], "label": ["green"]}), path)
    held = load_heldout(path, 16)
    assert held.captions is None and held.classnames == ["green"] and held.skipped == 0
    pq.write_table(pa.table({"jpg": [jpeg((0, 255, 0))]}), tmp_path / "nolabel.parquet")
    with pytest.raises(UsageError, match="lacks column"):
        load_heldout(tmp_path / "nolabel.parquet", 16)


def test_folder_of_class_folders_skips_a_corrupt_image(tmp_path):
    for name, color in (("red_circle", (255, 0, 0)), ("blue_star", (0, 0, 255))):
        (tmp_path / name).mkdir()
        for k in range(2):
            (tmp_path / name / f"{k}.jpg").write_bytes(jpeg(color))
    (tmp_path / "red_circle" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff truncated")
    (tmp_path / "red_circle" / "notes.txt").write_text("not an image: ignored")
    held = load_heldout(tmp_path, 24)
    assert held.classnames == ["blue star", "red circle"]
    assert held.labels.tolist() == [0, 0, 1, 1]
    assert held.skipped == 1 and held.captions is None
    assert held.pixels.shape == (4, 24, 24, 3)
    assert tuple(held.pixels[2, 12, 12]) == pytest.approx((254, 0, 0), abs=3)


def test_bad_heldout_paths_are_usage_errors(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        load_heldout(tmp_path / "missing.parquet", 16)
    (tmp_path / "file.csv").write_text("x")
    with pytest.raises(UsageError, match="neither"):
        load_heldout(tmp_path / "file.csv", 16)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="no class subfolders"):
        load_heldout(tmp_path / "empty", 16)
    (tmp_path / "bad" / "cls").mkdir(parents=True)
    (tmp_path / "bad" / "cls" / "x.png").write_bytes(b"garbage")
    with pytest.raises(UsageError, match="could be decoded"):
        load_heldout(tmp_path / "bad", 16)

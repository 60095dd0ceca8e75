"""Image grids of distilled sets: `curate report` draws one per finished set; the grid caps its rows and columns and
reads only the images it draws."""

import json

import numpy as np
from PIL import Image

from curate.cli.main import main
from curate.grids import cap_note, grid_cells, image_grid, short_name
from tests.distill.test_distill_cli import TINY
from tests.shards import ingested_tars


class Recorded:
    """uint8 pixels that remember which images were read."""

    def __init__(self, pixels: np.ndarray):
        self.pixels, self.read = pixels, set()

    def __len__(self) -> int:
        return len(self.pixels)

    def __getitem__(self, i: int) -> np.ndarray:
        self.read.add(i)
        return self.pixels[i]


def test_report_draws_a_grid_per_finished_distilled_set(tmp_path, capsys):
    run = ingested_tars(tmp_path, shards=2, per_shard=6)
    assert main(["distill", str(run.path), "--name", "soft", "--soft-labels", *TINY]) == 0
    (run.path / "distilled" / "unfinished").mkdir()
    capsys.readouterr()
    assert main(["report", str(run.path)]) == 0
    png = run.path / "report" / "distilled-soft.png"
    assert json.loads(capsys.readouterr().out)["plots"] == [str(png)]
    assert sorted(p.name for p in png.parent.iterdir()) == ["distilled-soft.png"]  # no temporary files left
    with Image.open(png) as im:
        assert im.format == "PNG"
        pixels = np.asarray(im.convert("RGB")).astype(int)
    height, width, _ = pixels.shape
    assert 1.4 < width / height < 2.0  # 2 classes by 2 images: wider (4 in) than high (2 rows and a title)
    drawn = (np.abs(pixels - 255).sum(axis=2) > 30).mean()
    assert drawn > 0.1  # the four images, not a blank canvas


def test_the_grid_draws_the_first_classes_and_images_only(tmp_path):
    classes = np.repeat(np.arange(1000), 12)
    pixels = Recorded(np.random.default_rng(0).integers(0, 256, (len(classes), 4, 4, 3), dtype=np.uint8))
    cells = grid_cells(classes)
    assert [c for c, _ in cells] == list(range(20))
    assert all(index == list(range(12 * c, 12 * c + 10)) for c, index in cells)
    assert cap_note(classes, cells) == "first 20 of 1000 classes, 10 of 12 images per class"
    names = [f"class number {c} with a long name" for c in range(1000)]
    capped = image_grid(pixels, classes, names, "t", tmp_path / "capped.png")
    assert pixels.read == {i for _, index in cells for i in index}
    small = np.repeat(np.arange(20), 10)
    assert cap_note(small, grid_cells(small)) == ""
    exact = image_grid(pixels.pixels[:200], small, names, "t", tmp_path / "exact.png")
    with Image.open(capped) as a, Image.open(exact) as b:
        assert a.size == b.size and a.width > 600 and a.height > a.width  # 20 rows of 10 images


def test_short_names_keep_both_ends():
    assert short_name("n01440764 tench") == "n01440764 tench"
    cut = short_name("/tmp/pytest/run/shards/0.tar")
    assert len(cut) == 16 and cut.startswith("/tmp/pyt") and cut.endswith("s/0.tar") and "…" in cut

"""Near-duplicate removal on runs: planted exact and near copies found as groups, --keep rules, --keep-fraction's
exact count, --where, the stage graph (a new descriptor or threshold), Ray, the contact sheet, one-line errors.

The descriptor set is made by the real `curate embed --as` stage with a real TorchScript model: a thumbnail
descriptor (4 x 4 average colours, centred, L2-normalized) under which distinct block patterns are far apart and a
re-encoded or brightened copy stays close."""

import io
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from curate.catalogs import connect
from curate.cli.main import main
from curate.errors import UsageError
from curate.filters.neardup import NearDup
from curate.graph import status
from curate.report import write_report
from curate.rundir import RunDir
from curate.stages.describe import describe
from curate.stages.ingest import ingest
from tests.shards import copy_run, planted_datacomp_run, sample_members, write_tar

THUMB_SIZE = 32


def thumbnail_model(path, cells: int = 4):
    """Writes a TorchScript descriptor: cells x cells average colours, centred, L2-normalized; returns the path."""
    import torch

    class Thumbnail(torch.nn.Module):
        def __init__(self, cells: int):
            super().__init__()
            self.cells = cells

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = torch.nn.functional.adaptive_avg_pool2d(x, self.cells).flatten(1)
            return torch.nn.functional.normalize(y - y.mean(dim=1, keepdim=True), dim=1)

    torch.jit.script(Thumbnail(cells)).save(str(path))
    return path


def pattern(seed: int, shift: int = 0) -> np.ndarray:
    """Returns a 48 x 48 image of 4 x 4 random colour blocks (brightened by `shift`)."""
    blocks = np.random.default_rng(seed).integers(0, 256, (4, 4, 3))
    return np.clip(np.kron(blocks, np.ones((12, 12, 1))) + shift, 0, 255).astype(np.uint8)


def encoded(array: np.ndarray, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, fmt)
    return buffer.getvalue()


# Pool: patterns 0..8 once each, plus an exact copy (same bytes) and a brightened JPEG copy of pattern 1, and an
# exact copy of pattern 3: groups {p1, copy, near copy} and {p3, copy}; 12 samples, 3 to remove.
POOL = [[(0, 0), (1, 0), (2, 0), (3, 0), (4, 0), (5, 0)],
        [(6, 0), (7, 0), (1, 0), (1, 8), (3, 0), (8, 0)]]


def pool_image(seed: int, shift: int) -> bytes:
    return encoded(pattern(seed, shift), "JPEG" if shift else "PNG")


def image_run(folder, model=None) -> RunDir:
    """Returns folder/run: the POOL shards ingested and described as the 'copy' set with the thumbnail model."""
    folder.mkdir(parents=True, exist_ok=True)
    for s, shard in enumerate(POOL):
        members = []
        for k, (seed, shift) in enumerate(shard):
            key = f"{s}{k:04d}"
            members += sample_members(key, f"pattern {seed}", pool_image(seed, shift), {"key": key}, ext="png")
        write_tar(folder / f"{s}.tar", members)
    run = RunDir(folder / "run")
    ingest([str(folder / "*.tar")], run, progress=False)
    model = model or thumbnail_model(folder / "thumb.pt")
    describe(run, str(model), "copy", image_size=THUMB_SIZE, trust_torchscript=True, progress=False)
    return run


def keys_by_group(run: RunDir) -> list[tuple]:
    rows = connect(run).execute("SELECT key, neardup_group, neardup_keep, neardup_of FROM samples ORDER BY key")
    return rows.fetchall()


@pytest.fixture(scope="module")
def described(tmp_path_factory):
    """The POOL ingested and described once for the module; each test changes a copy of it (`run`)."""
    return image_run(tmp_path_factory.mktemp("neardup"))


@pytest.fixture
def run(described, tmp_path):
    return copy_run(described, tmp_path / "pool" / "run")


def test_planted_copies_form_groups_and_one_member_of_each_stays(run):
    counts = NearDup(threshold=0.9).apply(run, progress=False)
    assert counts == dict(scored=12, kept=9, dropped=3, groups=2, largest_group=3, threshold=0.9)
    con = connect(run)
    uid = dict(con.execute("SELECT key, uid FROM samples").fetchall())
    got = {key: (group, keep, of) for key, group, keep, of in keys_by_group(run)}
    assert got["00001"] == (0, True, None)  # pattern 1 in shard 0 comes first in pool order
    assert got["10002"] == (0, False, uid["00001"]) and got["10003"] == (0, False, uid["00001"])
    assert got["00003"] == (1, True, None) and got["10004"] == (1, False, uid["00003"])
    singles = [k for k, (group, keep, of) in got.items() if group is None]
    assert len(singles) == 7 and all(got[k] == (None, True, None) for k in singles)
    assert con.execute("SELECT count(*) FROM samples WHERE neardup_max_sim IS NULL").fetchone() == (7,)
    exact = con.execute("SELECT neardup_max_sim FROM samples WHERE key = '10004'").fetchone()[0]
    assert exact == pytest.approx(1.0, abs=1e-5)
    view = con.execute("SELECT group_id, size, uid, kept, similarity FROM neardup_groups").fetchall()
    assert [(g, size, kept) for g, size, _, kept, _ in view] == [(0, 3, True), (0, 3, False), (0, 3, False),
                                                                  (1, 2, True), (1, 2, False)]
    assert view[0][2] == uid["00001"] and view[0][4] == 1.0 and all(0.9 <= s <= 1.0 + 1e-6 for *_, s in view)
    assert con.execute("SELECT kept, dropped FROM stage_counts WHERE stage = 'neardup_keep'").fetchone() == (9, 3)


def test_exact_copies_are_one_group_at_threshold_one(run):
    assert NearDup(threshold=1.0).apply(run, progress=False)["dropped"] == 2  # the two byte-identical copies
    got = {key: group for key, group, _, _ in keys_by_group(run)}
    assert got["00001"] == got["10002"] == 0 and got["00003"] == got["10004"] == 1 and got["10003"] is None


def test_keep_highest_column_and_where(tmp_path):
    run, uids, pairs = planted_datacomp_run(tmp_path)
    NearDup(threshold=0.95, descriptor="image", keep="highest:clip_b32_similarity_score").apply(run, progress=False)
    rows = connect(run).execute("SELECT uid, neardup_keep, clip_b32_similarity_score FROM samples").fetchall()
    got = {uid: (keep, score) for uid, keep, score in rows}
    for a, b in pairs:  # of each planted pair, the member with the higher score stays
        (keep_a, score_a), (keep_b, score_b) = got[uids[a]], got[uids[b]]
        assert keep_a == (score_a >= score_b) and keep_b != keep_a
    assert status(run)["neardup"] == "current"
    where = f"uid <> '{uids[pairs[0][0]]}'"  # one original left out: its copy has no near duplicate left
    counts = NearDup(threshold=0.95, descriptor="image", where=where).apply(run, progress=False)
    assert counts == dict(scored=131, kept=120, dropped=11, groups=11, largest_group=2, threshold=0.95)
    con = connect(run)  # a connection open while a stage reruns would still see the catalog it opened
    left_out = con.execute(f"SELECT neardup_keep, neardup_group FROM samples WHERE NOT ({where})").fetchall()
    assert left_out == [(None, None)]
    assert con.execute(f"SELECT neardup_group FROM samples WHERE uid = '{uids[pairs[0][1]]}'").fetchone() == (None,)


def test_keep_fraction_keeps_exactly_that_many(tmp_path):
    run, _, _ = planted_datacomp_run(tmp_path)
    for fraction, kept in [(0.5, 66), (0.25, 33), (120 / 132, 120), (1.0, 132)]:
        counts = NearDup(keep_fraction=fraction, descriptor="image").apply(run, progress=False)
        assert counts["kept"] == kept, fraction
        if counts["threshold"] is not None:  # the threshold found, given back on raw similarity, decides the same
            again = NearDup(threshold=counts["threshold"], descriptor="image", score_norm="none").apply(
                run, progress=False)
            assert again["kept"] == kept
    assert counts["threshold"] is None and counts["groups"] == 0


def test_a_new_descriptor_or_threshold_makes_the_stage_stale(run, tmp_path):
    NearDup(threshold=0.9).apply(run, progress=False)
    before = run.manifest()["stages"]["neardup"]["version"]
    NearDup(threshold=0.95).apply(run, progress=False)
    assert run.manifest()["stages"]["neardup"]["version"] != before
    other = thumbnail_model(tmp_path / "thumb2.pt", cells=2)
    describe(run, str(other), "copy", image_size=THUMB_SIZE, trust_torchscript=True, progress=False)
    assert status(run)["neardup"] == "stale"
    assert "neardup_keep" not in [c for (c,) in connect(run).execute("SELECT column_name FROM (DESCRIBE samples)")
                                  .fetchall()]
    assert write_report(run) == []  # no contact sheet of a stale stage
    assert NearDup(threshold=0.9).apply(run, progress=False)["scored"] == 12


def test_the_contact_sheet_shows_the_largest_groups(run):
    NearDup(threshold=0.9).apply(run, progress=False)
    [sheet] = [p for p in write_report(run) if p.name == "neardup-groups.png"]
    with Image.open(sheet) as image:
        assert image.format == "PNG" and image.width > 200 and image.height > 100


def test_ray_decides_the_same_as_local(run, ray_local):
    NearDup(threshold=0.9).apply(run, progress=False)
    local = keys_by_group(run)
    NearDup(threshold=0.8).apply(run, progress=False)
    counts = NearDup(threshold=0.9).apply(run, "ray", workers=2, progress=False)
    assert counts["dropped"] == 3 and keys_by_group(run) == local


def test_score_norm_unlinks_pairs_in_dense_parts_but_never_identical_images(run):
    raw = NearDup(threshold=0.18, score_norm="none").apply(run, progress=False)
    raw_groups = keys_by_group(run)
    normalized = NearDup(threshold=0.18).apply(run, progress=False)
    assert run.manifest()["stages"]["neardup"]["config"]["score_norm"] is None  # the default: pool with a threshold
    assert normalized["dropped"] < raw["dropped"]
    identical = connect(run).execute("SELECT count(DISTINCT neardup_group) FROM samples WHERE key IN ('00001', "
                                     "'10002')").fetchone()[0]
    assert identical == 1 and keys_by_group(run) != raw_groups


@pytest.mark.parametrize("options, message", [
    (dict(threshold=1.5), "--threshold must be a cosine similarity in [-1, 1]"),
    (dict(threshold=0.9, keep_fraction=0.5), "give exactly one of --threshold or --keep-fraction"),
    (dict(threshold=0.9, keep="best"), "unknown --keep rule 'best'"),
    (dict(threshold=0.9, keep="highest:"), "--keep highest:<column> needs a column"),
    (dict(threshold=0.9, keep="first:x"), "--keep first takes no column"),
    (dict(keep_fraction=0.5, score_norm="pool"), "--score-norm pool needs --threshold"),
])
def test_bad_options_are_one_line_errors(options, message):
    with pytest.raises(UsageError, match=message.replace("[", r"\[").replace("]", r"\]")):
        NearDup(**options)


def test_run_errors_name_the_fix(run, capsys):
    with pytest.raises(UsageError, match=r"no column 'no_such' in samples"):
        NearDup(threshold=0.9, keep='highest:no_such').apply(run, progress=False)
    with pytest.raises(UsageError, match=r"no column 'x\" OR 1=1 --' in samples"):
        NearDup(threshold=0.9, keep='highest:x" OR 1=1 --').apply(run, progress=False)
    with pytest.raises(UsageError, match=r"no 'sscd' descriptor set; make it with `curate embed RUN --model DIR "
                                         r"--as sscd`"):
        NearDup(threshold=0.9, descriptor="sscd").apply(run, progress=False)
    assert main(["filter", "neardup", str(run.path), "--threshold", "2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--threshold must be a cosine similarity in [-1, 1], got 2.0" in err
    assert "neardup" not in status(run)
    NearDup(threshold=0.9).apply(run, progress=False)
    with pytest.raises(UsageError, match="--keep highest:neardup_max_sim names a column neardup itself writes"):
        NearDup(threshold=0.8, keep="highest:neardup_max_sim").apply(run, progress=False)
    assert status(run)["neardup"] == "current"


def test_cli_filter_neardup(run):
    done = subprocess.run([sys.executable, "-m", "curate.cli.main", "filter", "neardup", str(run.path), "--threshold",
                           "0.9", "--keep", "first"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert '"dropped": 3' in done.stdout

"""DataComp's basic filter: each rule, with the reason recorded."""

import pyarrow as pa
import pytest

from curate.catalogs import connect
from curate.filters.basic import BasicFilter
from curate.rundir import RunDir
from curate.stages.ingest import ingest
from tests.shards import image_bytes, sample_members, write_tar


def _samples(rows):
    columns = ["uid", "caption", "width", "height", "json"]
    return pa.table({c: [r[i] for r in rows] for i, c in enumerate(columns)})


@pytest.fixture(scope="module")
def stage():
    stage = BasicFilter()
    stage.setup()
    return stage


def test_each_rule_and_its_reason(stage):
    rows = [
        ("ok", "a photo of a red circle on grass", 300, 250, None),
        ("words", "red circle", 300, 300, None),
        ("chars", "a b c", 300, 300, None),
        ("lang", "une photo d'un grand cercle rouge sur l'herbe", 300, 300, None),
        ("small", "a photo of a red circle on grass", 199, 400, None),
        ("aspect", "a photo of a red circle on grass", 1000, 300, None),
        ("orig", "a photo of a red circle on grass", 64, 64, '{"original_width": 640, "original_height": 480}'),
    ]
    out = stage.process_batch(_samples(rows)).to_pylist()
    reasons = {r["uid"]: r["basic_reason"] for r in out}
    assert reasons == {
        "ok": None, "words": "caption too short", "chars": "caption too short", "lang": "not English",
        "small": "image too small", "aspect": "aspect ratio too large", "orig": None,
    }
    assert [r["basic_keep"] for r in out] == [r["basic_reason"] is None for r in out]
    assert out[3]["basic_lang"] == "fr"


def test_runs_as_a_stage_into_the_catalog(tmp_path):
    members = sample_members("a", "a photo of a big blue square", image_bytes(size=(64, 64)), {})
    members += sample_members("b", "IMG_2031.JPG", image_bytes(size=(64, 64)), {})
    write_tar(tmp_path / "s.tar", members)
    run = RunDir(tmp_path / "run")
    ingest([str(tmp_path / "s.tar")], run, progress=False)
    counts = BasicFilter(min_side=32).apply(run, progress=False)
    assert counts == {"scored": 2, "kept": 1}
    con = connect(run)
    assert con.execute("SELECT key, basic_keep, basic_reason FROM samples ORDER BY key").fetchall() == [
        ("a", True, None), ("b", False, "caption too short"),
    ]

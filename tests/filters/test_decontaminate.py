"""Decontamination on a run: pool copies of evaluation images removed with the matched image's id, whatever the
eval set's form (Parquet, a folder of images, one tar, a brace pattern of tars); undecodable eval images counted;
the stage graph (a changed eval set, threshold or descriptor model); Ray; one-line errors."""

import functools
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.catalogs import connect
from curate.cli.main import main
from curate.copydetect.evalsets import eval_sources, iter_eval_images
from curate.copydetect.scorenorm import background_excess, normalized
from curate.errors import UsageError
from curate.filters.decontaminate import DEFAULT_THRESHOLD, Decontaminate
from curate.filters.neardup import NearDup
from curate.graph import status
from curate.stages.embeddings import load_embeddings
from tests.filters.test_neardup import encoded, image_run, pattern, pool_image, thumbnail_model
from tests.shards import copy_run, write_tar

Trusted = functools.partial(Decontaminate, trust_torchscript=True)  # the descriptor set's model is TorchScript

# Evaluation images: an exact copy of pool pattern 2, a darkened JPEG of pattern 5, two unrelated patterns and a
# file that is not an image. Pool samples 00002 and 00005 are the copies.
EVAL = [("copy2", "png", pool_image(2, 0)), ("near5", "jpg", encoded(pattern(5, -6), "JPEG")),
        ("other100", "png", encoded(pattern(100))), ("other101", "png", encoded(pattern(101))),
        ("broken", "jpg", b"not an image")]


def eval_parquet(path, rows=EVAL):
    pq.write_table(pa.table({"key": [k for k, _, _ in rows], "jpg": pa.array([d for _, _, d in rows], pa.binary()),
                             "label": ["x"] * len(rows)}), path)
    return path


def eval_folder(folder):
    for key, ext, data in EVAL:
        path = folder / ("copies" if key[0] in "cn" else "other") / f"{key}.{ext}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    (folder / ".hidden.png").write_bytes(EVAL[0][2])
    (folder / "notes.txt").write_text("not an image")
    return folder


def eval_tars(folder, shards):
    folder.mkdir(parents=True, exist_ok=True)
    for s in range(shards):
        members = [(f"{key}.{ext}", data) for key, ext, data in EVAL[s::shards]]
        write_tar(folder / f"ev-{s}.tar", members + [(f"{key}.cls", b"1") for key, _, _ in EVAL[s::shards]])
    return folder


def removed(run) -> dict:
    rows = connect(run).execute("SELECT key, decontam_match FROM samples WHERE NOT decontam_keep").fetchall()
    return dict(rows)


@pytest.fixture(scope="module")
def described(tmp_path_factory):
    """The pool of tests/filters/test_neardup.py ingested and described once; each test changes a copy (`run`)."""
    return image_run(tmp_path_factory.mktemp("decontaminate"))


@pytest.fixture
def run(described, tmp_path):
    return copy_run(described, tmp_path / "pool" / "run")


def test_copies_of_eval_images_are_removed_with_their_match(run, tmp_path):
    against = eval_parquet(tmp_path / "eval.parquet")
    counts = Trusted(against=str(against), threshold=0.9).apply(run, progress=False)
    assert counts == dict(scored=12, kept=10, dropped=2, threshold=0.9, eval_images=4, eval_skipped=1,
                          eval_matched=2)
    assert removed(run) == {"00002": "copy2", "00005": "near5"}
    con = connect(run)
    assert con.execute("SELECT count(decontam_sim), count(decontam_match) FROM samples").fetchone() == (12, 2)
    assert con.execute("SELECT decontam_sim FROM samples WHERE key = '00002'").fetchone()[0] == pytest.approx(1, 1e-5)
    assert con.execute("SELECT max(decontam_sim) FROM samples WHERE decontam_keep").fetchone()[0] < 0.9
    assert Decontaminate(against=str(against)).threshold == DEFAULT_THRESHOLD == 0.75


@pytest.mark.parametrize("form", ["folder", "tar", "brace"])
def test_every_eval_form_gives_the_same_matches(run, tmp_path, form):
    if form == "folder":
        against = str(eval_folder(tmp_path / "eval"))
        expected = {"00002": "copies/copy2.png", "00005": "copies/near5.jpg"}
    elif form == "tar":
        against = str(eval_tars(tmp_path / "eval", 1) / "ev-0.tar")
        expected = {"00002": "copy2", "00005": "near5"}
    else:
        against = str(eval_tars(tmp_path / "eval", 2)) + "/ev-{0..1}.tar"
        expected = {"00002": "ev-0.tar/copy2", "00005": "ev-1.tar/near5"}
    counts = Trusted(against=against, threshold=0.9).apply(run, progress=False)
    assert (counts["eval_images"], counts["eval_skipped"], counts["dropped"]) == (4, 1, 2)
    assert removed(run) == expected


def test_a_folder_of_tars_and_images_is_one_set(tmp_path):
    folder = eval_folder(tmp_path / "eval")
    eval_tars(folder / "shards", 1)
    ids = [image_id for image_id, _ in iter_eval_images(eval_sources(str(folder)))]
    assert ids[:2] == ["copies/copy2.png", "copies/near5.jpg"] and "shards/ev-0.tar/copy2" in ids
    assert len(ids) == 10 and not any("hidden" in i or "notes" in i for i in ids)


def test_the_stage_follows_its_eval_set_threshold_and_descriptor(tmp_path):
    run = image_run(tmp_path / "pool")  # its own, not a copy: the test changes the descriptor model the run read
    against = eval_parquet(tmp_path / "eval.parquet")
    first = Trusted(against=str(against), threshold=0.9).apply(run, progress=False)
    version = run.manifest()["stages"]["decontam"]["version"]
    NearDup(threshold=0.9, where="decontam_keep").apply(run, progress=False)
    assert Trusted(against=str(against), threshold=0.9).apply(run, progress=False) == first
    assert run.manifest()["stages"]["decontam"]["version"] == version and status(run)["neardup"] == "current"
    eval_parquet(against, EVAL[1:])  # the exact copy leaves the eval set
    counts = Trusted(against=str(against), threshold=0.9).apply(run, progress=False)
    assert counts["dropped"] == 1 and removed(run) == {"00005": "near5"}
    assert status(run)["neardup"] == "stale"
    Trusted(against=str(against), threshold=0.99).apply(run, progress=False)
    assert run.manifest()["stages"]["decontam"]["config"]["threshold"] == 0.99
    thumbnail_model(tmp_path / "pool" / "thumb.pt", cells=2)  # the descriptor model changes under the set
    with pytest.raises(UsageError, match=r"the model .*thumb.pt changed since it made the 'copy' descriptors; rerun"
                                         r" `curate embed RUN --model DIR --as copy` first"):
        Trusted(against=str(against), threshold=0.9).apply(run, progress=False)


def test_ray_matches_local(run, tmp_path, ray_local):
    against = str(eval_parquet(tmp_path / "eval.parquet"))
    counts = Trusted(against=against, threshold=0.9).apply(run, "ray", workers=2, progress=False)
    assert counts["dropped"] == 2 and removed(run) == {"00002": "copy2", "00005": "near5"}


def test_cli_and_its_one_line_errors(run, tmp_path, capsys):
    against = str(eval_parquet(tmp_path / "eval.parquet"))
    assert main(["decontaminate", str(run.path), "--against", against, "--threshold", "0.9",
                 "--trust-torchscript"]) == 0
    assert json.loads(capsys.readouterr().out)["dropped"] == 2
    for args, message in [
        (["--against", str(tmp_path / "missing.parquet")], "missing.parquet does not exist; give a Parquet file"),
        (["--against", against, "--threshold", "1.5"], "--threshold must be a cosine similarity in [-1, 1]"),
        (["--against", against, "--descriptor", "sscd"], "no 'sscd' descriptor set; make it with `curate embed RUN "
                                                         "--model DIR --as sscd`"),
        (["--against", against, "--descriptor", "image"], "not the CLIP image embeddings"),
        ([], "the following arguments are required: --against"),
    ]:
        assert main(["decontaminate", str(run.path), *args]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, err


def test_an_eval_set_without_a_decodable_image_is_refused(run, tmp_path):
    against = eval_parquet(tmp_path / "bad.parquet", [("a", "jpg", b"junk"), ("b", "jpg", b"")])
    with pytest.raises(UsageError, match="none of the 2 evaluation images could be decoded"):
        Trusted(against=str(against)).apply(run, progress=False)
    assert "decontam" not in status(run)  # refused before it was recorded


def test_score_norm_none_compares_the_raw_similarity_and_pool_the_normalized_one(run, tmp_path):
    against = str(eval_parquet(tmp_path / "eval.parquet"))
    Trusted(against=against, threshold=0.9, score_norm="none").apply(run, progress=False)
    differs = "SELECT count(*) FROM samples WHERE decontam_score IS DISTINCT FROM decontam_sim"
    assert connect(run).execute(differs).fetchone()[0] == 0
    where = "key <> '00001'"  # the input routed to each shard's task
    Trusted(against=against, threshold=0.1, where=where).apply(run, progress=False)  # most samples candidates
    assert run.manifest()["stages"]["decontam"]["config"]["score_norm"] == "pool"
    con = connect(run)
    assert con.execute(differs).fetchone()[0] > 0  # those with more background than the pool's median
    # the background searched by tasks per shard is the one searched in memory over the input's vectors
    vectors = load_embeddings(run, "copy", progress=False)
    chosen = [u for (u,) in con.execute(f"SELECT uid FROM samples WHERE {where}").fetchall()]
    inputs = np.isin(vectors.uids.to_numpy(zero_copy_only=False), chosen)
    sims = dict(con.execute("SELECT uid, decontam_sim FROM samples WHERE decontam_sim IS NOT NULL").fetchall())
    uids = vectors.uids.filter(pa.array(inputs)).to_pylist()
    assert sorted(uids) == sorted(sims)
    raw = np.array([sims[u] for u in uids], np.float32)
    candidates = np.flatnonzero(raw >= np.float32(0.1 - 1e-6))
    expected = raw.copy()
    expected[candidates] = normalized(raw[candidates], background_excess(vectors.vectors[inputs], candidates, 0.1))
    scores = dict(con.execute("SELECT uid, decontam_score FROM samples WHERE decontam_score IS NOT NULL").fetchall())
    np.testing.assert_allclose([scores[u] for u in uids], expected, atol=1e-5)
    assert con.execute("SELECT bool_and(decontam_score <= decontam_sim) FROM samples").fetchone()[0]
    assert con.execute("SELECT decontam_score FROM samples WHERE key = '00002'").fetchone()[0] == pytest.approx(1)
    assert main(["decontaminate", str(run.path), "--against", against, "--score-norm", "sscd"]) == 2

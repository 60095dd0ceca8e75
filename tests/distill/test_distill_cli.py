"""`curate distill` over a real ingested run: the set's folder, the catalog's `distilled` view, `curate export
--distilled`, the one-line errors, and resuming an interrupted distillation."""

import io
import json
import os
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

import curate
import curate.distill.tesla as tesla
from curate.catalogs import build_catalog, connect
from curate.cli.main import main
from curate.distill.run import DistillOptions, expert_map
from curate.runners.base import Runner
from tests.shards import ingested_tars

# Two classes (the two source shards) of six 8 px images; one expert, two iterations: about a second a set.
TINY = ["--label-column", "shard", "--ipc", "2", "--image-size", "8", "--experts", "1", "--expert-epochs", "2",
        "--max-start-epoch", "1", "--expert-epochs-match", "1", "--iterations", "2", "--syn-steps", "2",
        "--width", "4", "--depth", "1"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return ingested_tars(tmp_path_factory.mktemp("distill"), shards=2, per_shard=6)


@pytest.fixture(scope="module")
def soft_set(run):
    assert main(["distill", str(run.path), "--name", "soft", "--soft-labels", *TINY]) == 0
    return run.path / "distilled" / "soft"


def members(tar_path: Path) -> dict[str, bytes]:
    with tarfile.open(tar_path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}


def test_a_set_has_its_shards_labels_and_summary(run, soft_set):
    assert {p.name for p in soft_set.iterdir()} >= {"options.json", "experts", "checkpoint.pt", "shards",
                                                    "labels.parquet", "distilled.json"}
    assert (soft_set / "experts" / "expert_0.safetensors").exists()
    summary = json.loads((soft_set / "distilled.json").read_text())
    classnames = [str(run.path.parent / "0.tar"), str(run.path.parent / "1.tar")]
    assert summary["classnames"] == classnames and summary["ipc"] == 2 and summary["method"] == "tesla"
    assert summary["source"] | {"stage_versions": None} == dict(
        where=None, label_column="shard", stage_versions=None, selected=12, used=12, unlabelled=0, skipped={},
        undecodable_uids=[], class_counts=dict.fromkeys(classnames, 6))
    assert summary["iterations"] == 2 and isinstance(summary["lr"], float) and summary["curate_version"]
    stored = members(soft_set / "shards" / "00000.tar")
    keys = ["0000_0000", "0000_0001", "0001_0000", "0001_0001"]
    assert list(stored) == [f"{k}.{ext}" for k in keys for ext in ("png", "cls", "json")]
    assert Image.open(io.BytesIO(stored["0001_0000.png"])).size == (8, 8)
    assert stored["0001_0001.cls"] == b"1"
    meta = json.loads(stored["0001_0001.json"])
    assert meta["classname"] == classnames[1] and len(meta["soft_label"]) == 2
    assert sum(meta["soft_label"]) == pytest.approx(1, abs=1e-5)
    labels = pq.read_table(soft_set / "labels.parquet").to_pylist()
    assert [r["key"] for r in labels] == keys and [r["class"] for r in labels] == [0, 0, 1, 1]
    assert labels[0]["path"] == "distilled/soft/shards/00000.tar" and labels[0]["member"] == "0000_0000.png"


def test_the_distilled_view_lists_finished_sets_only(run, soft_set):
    con = connect(run)
    try:
        rows = con.sql("SELECT name, key, class, classname, len(soft_label) FROM distilled ORDER BY key").fetchall()
    finally:
        con.close()
    assert [(r[0], r[1], r[2], r[4]) for r in rows] == [("soft", k, c, 2) for k, c in
                                                      [("0000_0000", 0), ("0000_0001", 0), ("0001_0000", 1),
                                                       ("0001_0001", 1)]]
    unfinished = run.path / "distilled" / "zz-unfinished"
    unfinished.mkdir()
    (unfinished / "labels.parquet").write_bytes((soft_set / "labels.parquet").read_bytes())
    build_catalog(run)
    assert curate.open(run.path).arrow("SELECT count(*) AS n FROM distilled")["n"][0].as_py() == 4


def test_a_set_deleted_by_hand_leaves_the_distilled_view_working(run, soft_set, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run.path, copy)
    shutil.rmtree(copy / "distilled" / "soft")  # issue 26: the view failed until the next writer ran
    assert curate.open(copy).arrow("SELECT count(*) AS n FROM distilled")["n"][0].as_py() == 0


def test_a_run_without_sets_has_no_distilled_view(tmp_path):
    run = ingested_tars(tmp_path, shards=1, per_shard=2)
    with pytest.raises(curate.errors.UsageError, match="distilled"):
        curate.open(run.path).arrow("SELECT * FROM distilled")


def test_export_writes_images_classes_json_and_soft_labels(run, soft_set, tmp_path, capsys):
    assert main(["export", str(run.path), "--distilled", "soft", "--format", "webdataset",
                 "--out", str(tmp_path / "wds")]) == 0
    written = members(tmp_path / "wds" / "00000.tar")
    assert [n for n in written if n.startswith("0000_0001.")] == [
        "0000_0001.png", "0000_0001.cls", "0000_0001.json", "0000_0001.soft.npy"]
    soft = np.load(io.BytesIO(written["0000_0001.soft.npy"]), allow_pickle=False)
    assert soft.dtype == np.float32 and soft.tolist() == pytest.approx(json.loads(written["0000_0001.json"])
                                                                       ["soft_label"])
    assert written["0000_0001.png"] == members(soft_set / "shards" / "00000.tar")["0000_0001.png"]
    assert json.loads((tmp_path / "wds" / "sizes.json").read_text()) == {"00000.tar": 4}
    assert main(["export", str(run.path), "--distilled", "soft", "--format", "hf", "--out", str(tmp_path / "hf")]) == 0
    import datasets

    dataset = datasets.load_from_disk(str(tmp_path / "hf"))
    assert dataset["label"] == [0, 0, 1, 1] and dataset.features["label"].names[1].endswith("1.tar")
    assert dataset[2]["image"].size == (8, 8) and len(dataset[2]["soft_label"]) == 2
    capsys.readouterr()
    assert main(["export", str(run.path), "--distilled", "nope", "--format", "hf", "--out", str(tmp_path / "x")]) == 2
    assert capsys.readouterr().err.strip().endswith("has no distilled set 'nope'; distilled sets: soft")


@pytest.mark.parametrize(("extra", "message"), [
    (["--label-column", "nope"], "no column 'nope' in samples"),
    (["--ipc", "7"], "has 6 images, fewer than --ipc 7 (2 classes do)"),
    (["--ipc", "0"], "argument --ipc: invalid positive_int value: '0'"),
    (["--method", "nope"], "unknown --method 'nope'; choose one of tesla, cda, sre2l"),
    (["--where", "width < 0"], "no samples to distill: the run has none matching 'width < 0'"),
    (["--where", "nonsense ("], "invalid --where predicate"),
    (["--max-start-epoch", "2"], "exceeds the experts' --expert-epochs 2"),
    (["--name", "../x"], "--name '../x' must be letters"),
    (["--name", "soft", "--lr-img", "1"], "was distilled with other options (lr_img differ); pick another --name"),
])
def test_bad_requests_are_one_line_errors(run, soft_set, capsys, extra, message):
    name = [] if "--name" in extra else ["--name", "fresh"]
    assert main(["distill", str(run.path), *TINY, "--soft-labels", *name, *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not (run.path / "distilled" / "fresh" / "options.json").exists()  # a refused request records nothing


def test_an_interrupted_distillation_resumes_to_the_same_images(run, monkeypatch, capsys):
    args = ["distill", str(run.path), *TINY, "--iterations", "4", "--checkpoint-every", "2"]
    assert main([*args, "--name", "whole"]) == 0
    step = tesla.distill_step

    def interrupted(*a, **k):
        if a[-1] == 3:  # the iteration: after the checkpoint at 2
            raise KeyboardInterrupt
        return step(*a, **k)

    monkeypatch.setattr(tesla, "distill_step", interrupted)
    assert main([*args, "--name", "cut"]) == 130
    cut = run.path / "distilled" / "cut"
    assert (cut / "checkpoint.pt").exists() and not (cut / "distilled.json").exists()
    monkeypatch.setattr(tesla, "distill_step", step)
    source = (cut / "source.json").read_text()
    (cut / "source.json").write_text(json.dumps({"ingest": "another version"}))
    assert main([*args, "--name", "cut"]) == 2  # the selection changed under it: no resume
    assert "was started on another version of the stages its --where reads" in capsys.readouterr().err
    (cut / "source.json").write_text(source)
    calls = []
    monkeypatch.setattr(tesla, "distill_step", lambda *a, **k: calls.append(a[-1]) or step(*a, **k))
    assert main([*args, "--name", "cut"]) == 0
    assert calls == [2, 3]  # resumed from the checkpoint, not from the start
    whole = run.path / "distilled" / "whole"
    assert members(cut / "shards" / "00000.tar") == members(whole / "shards" / "00000.tar")
    assert json.loads((cut / "distilled.json").read_text())["lr"] == json.loads(
        (whole / "distilled.json").read_text())["lr"]
    assert main([*args, "--name", "cut"]) == 0 and calls == [2, 3]  # finished: a rerun changes nothing


def test_the_api_distills_like_the_command(run):
    summary = curate.open(run.path).distill("api", label_column="shard", ipc=1, image_size=8, experts=1,
                                            expert_epochs=2, max_start_epoch=1, expert_epochs_match=1, iterations=1,
                                            syn_steps=1, width=4, depth=1)
    assert summary["images"] == 2 and Path(summary["folder"]).name == "api"
    with pytest.raises(curate.errors.UsageError, match="unexpected keyword"):
        curate.open(run.path).distill("api2", label_column="shard", ipcs=1)


class Recording(Runner):
    name = "recording"

    def run_shards(self, job, tasks, run):
        raise NotImplementedError

    def completed(self, fn, shared, items, desc="tasks"):
        self.calls = [desc, list(items)]
        return enumerate(fn(shared, item) for item in items)


def test_experts_use_the_runners_map_except_locally():
    assert expert_map("local") is map
    runner = Recording()
    assert list(expert_map(runner)(lambda i: i * 10, iter([1, 2]))) == [10, 20]
    assert runner.calls == ["experts", [1, 2]]
    assert DistillOptions(label_column="x").as_dict()["method"] == "tesla"


def test_unlabelled_and_undecodable_samples_are_left_out_and_counted(tmp_path, monkeypatch):
    import curate.models.encode as encode
    from curate.distill.source import labelled_selection
    from curate.rundir import RunDir
    from curate.stages.ingest import ingest
    from tests.shards import clean_shard, image_bytes, sample_members, write_tar

    clean_shard(tmp_path / "0.tar", 3)  # json with a url: labelled by url
    write_tar(tmp_path / "1.tar", [m for i in range(2) for m in sample_members(f"b{i}", image=image_bytes())])
    run = RunDir(tmp_path / "run")
    ingest([str(tmp_path / "*.tar")], run, progress=False)
    decode = encode.image_to_pixels
    bad = {image_bytes((37, 90, 10))}  # sample 1 of shard 0
    monkeypatch.setattr(encode, "image_to_pixels", lambda data, size: 1 / 0 if data in bad else decode(data, size))
    data = labelled_selection(run, None, "url", 8)
    assert (data.selected, data.unlabelled, data.skipped) == (5, 2, {"image did not decode": 1})
    con = connect(run)
    try:
        bad_uid = con.execute("SELECT uid FROM samples WHERE url = 'http://example.com/1.jpg'").fetchall()[0][0]
    finally:
        con.close()
    assert data.undecodable == [bad_uid]  # named, so it does not vanish
    assert data.classnames == ["http://example.com/0.jpg", "http://example.com/2.jpg"]
    assert data.images.shape == (2, 3, 8, 8) and data.labels.tolist() == [0, 1]
    assert data.images.mean(dim=(0, 2, 3)).abs().max() < 1e-3  # normalized by its own mean


def test_the_pipeline_script_runs_alone_and_makes_the_same_set(run, soft_set, tmp_path):
    import shutil
    import subprocess
    import sys

    copy = tmp_path / "distill.py"  # copied elsewhere first, as `ray submit` does
    shutil.copy(Path(__file__).parents[2] / "pipelines" / "distill.py", copy)
    done = subprocess.run([sys.executable, str(copy), "--run", str(run.path), "--name", "piped", "--soft-labels",
                           "--runner", "local", *TINY], capture_output=True, text=True, cwd=tmp_path, timeout=120,
                          env=os.environ | {"OMP_NUM_THREADS": "1"})  # as the tests' one thread
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["folder"].endswith("distilled/piped")
    assert members(run.path / "distilled" / "piped" / "shards" / "00000.tar") == members(
        soft_set / "shards" / "00000.tar")


def test_settings_that_overshoot_the_expert_are_warned_about_and_recorded(run, capsys):
    # a student lr 100 times the experts': its steps land far past the expert's epoch
    assert main(["distill", str(run.path), *TINY, "--name", "overshoot", "--lr-teacher", "1.0"]) == 0
    out, err = capsys.readouterr()
    summary = json.loads(out)
    assert summary["first_loss"] > 4 and len(summary["warnings"]) == 1
    assert err.startswith("curate distill: warning: the first matching losses average") and "--syn-steps" in err
    recorded = json.loads((run.path / "distilled" / "overshoot" / "distilled.json").read_text())
    assert recorded["warnings"] == summary["warnings"]

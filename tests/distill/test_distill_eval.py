"""`curate distill-eval` over a real distilled set: rows in the `evaluations` view per seed and baseline, the
learned float images against the PNGs, and the one-line errors."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import load_file

from curate.catalogs import connect
from curate.cli.main import main
from curate.distill.eval_set import SetEvalOptions, evaluate_distilled, set_tensors
from curate.distill.output import read_set
from tests.distill.test_distill_cli import TINY
from tests.shards import ingested_tars, noise_heldout

EVAL = ["--epochs", "2"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    run = ingested_tars(tmp_path_factory.mktemp("distill-eval"), shards=2, per_shard=6, embedded=True)
    assert main(["distill", str(run.path), "--name", "hard", *TINY]) == 0
    assert main(["distill", str(run.path), "--name", "soft", "--soft-labels", *TINY]) == 0
    return run


@pytest.fixture(scope="module")
def heldout(run, tmp_path_factory):
    """A Parquet held-out set of the two classes (the source shards' paths), four images each."""
    meta, _ = read_set(run, "hard")
    return noise_heldout(tmp_path_factory.mktemp("heldout") / "heldout.parquet", meta["classnames"], 4)


def evaluations(run, sql="SELECT distilled, method, ipc, stored, soft_labels, subset_size, seed, epochs, "
                          "heldout_size, top1 FROM evaluations ORDER BY distilled, method, seed"):
    con = connect(run)
    try:
        return con.sql(sql).fetchall()
    finally:
        con.close()


def test_each_seed_is_a_row_of_the_evaluations_view(run, heldout, capsys):
    assert main(["distill-eval", str(run.path), "--name", "soft", "--test", str(heldout), "--seeds", "0,1",
                 *EVAL]) == 0
    result = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert result["summary"][0]["method"] == "tesla" and result["summary"][0]["seeds"] == 2
    rows = [r for r in evaluations(run) if r[0] == "soft"]
    assert [r[:9] for r in rows] == [("soft", "tesla", 2, "float", True, 4, seed, 2, 8) for seed in (0, 1)]
    assert all(0 <= r[9] <= 1 for r in rows)
    assert result["summary"][0]["mean"] == pytest.approx(np.mean([r[9] for r in rows]))


def test_baselines_train_on_the_sets_source_selection(run, heldout):
    options = SetEvalOptions(test=str(heldout), seeds=(0, 1), epochs=1, baselines=("random", "herding", "full"))
    result = evaluate_distilled(run, "hard", options)
    sizes = {(s["method"], s["size"]) for s in result["summary"]}
    assert sizes == {("tesla", 4), ("random", 4), ("herding", 4), ("full", 12)}
    table = pq.read_table(result["parquet"]).to_pylist()
    assert {(r["method"], r["stored"], r["soft_labels"]) for r in table} == {
        ("tesla", "float", False), ("random", "real", False), ("herding", "real", False), ("full", "real", False)}
    assert len(table) == 8 and len({r["evaluation"] for r in table}) == 1


def test_the_api_evaluates_like_the_command(run, heldout):
    import curate
    from curate.errors import UsageError

    result = curate.open(run.path).evaluate_distilled("soft", str(heldout), seeds=(0, 1), epochs=2)
    rows = [r for r in evaluations(run) if r[0] == "soft"]
    assert result["summary"][0]["mean"] == pytest.approx(np.mean([r[9] for r in rows]))
    with pytest.raises(UsageError, match="unexpected keyword argument 'epoch'"):
        curate.open(run.path).evaluate_distilled("soft", str(heldout), epoch=2)


def test_the_float_images_are_the_pngs_before_clipping(run):
    meta, rows = read_set(run, "soft")
    exact, labels, soft = set_tensors(run, "soft", meta, rows, "float")
    png, png_labels, png_soft = set_tensors(run, "soft", meta, rows, "png")
    mean = np.array(meta["normalization"]["mean"]).reshape(1, 3, 1, 1)
    std = np.array(meta["normalization"]["std"]).reshape(1, 3, 1, 1)
    expected = np.round(np.clip(exact.numpy() * std + mean, 0, 1) * 255)
    assert np.abs(png.numpy() * std + mean - expected / 255).max() < 1e-5
    assert labels.tolist() == png_labels.tolist() == [0, 0, 1, 1]
    assert np.allclose(soft.numpy(), png_soft.numpy()) and soft.shape == (4, 2)


@pytest.mark.parametrize("extra, message", [
    (["--name", "nope"], "has no distilled set 'nope'; distilled sets: hard, soft"),
    (["--name", "hard", "--baselines", "random,best"], "unknown --baselines best; choose from random,herding,full"),
    (["--name", "hard", "--stored", "jpeg"], "argument --stored: invalid choice"),
    (["--name", "hard", "--epochs", "0"], "argument --epochs"),
])
def test_bad_requests_are_one_line_errors(run, heldout, capsys, extra, message):
    assert main(["distill-eval", str(run.path), "--test", str(heldout), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_a_test_set_with_other_classes_is_refused(run, heldout, tmp_path, capsys):
    table = pq.read_table(heldout)
    other = tmp_path / "other.parquet"
    pq.write_table(table.set_column(1, "label", pa.array(["cat"] * table.num_rows)), other)
    assert main(["distill-eval", str(run.path), "--name", "hard", "--test", str(other)]) == 2
    assert "has classes the set 'hard' was not distilled on: cat" in capsys.readouterr().err
    assert main(["distill-eval", str(run.path), "--name", "hard", "--test", str(tmp_path / "missing")]) == 2
    assert "--test " in capsys.readouterr().err


def test_the_ray_runner_makes_and_evaluates_the_same_set(run, heldout, ray_local):
    two_experts = [*TINY[:TINY.index("--experts")], "--experts", "2", *TINY[TINY.index("--experts") + 2:]]
    assert main(["distill", str(run.path), "--name", "local2", *two_experts]) == 0
    assert main(["distill", str(run.path), "--name", "ray2", "--runner", "ray", *two_experts]) == 0
    sets = [run.path / "distilled" / name for name in ("local2", "ray2")]
    for file in ("images.safetensors", "experts/expert_1.safetensors"):  # Ray's workers may round differently
        local_tensors, ray_tensors = (load_file(str(folder / file)) for folder in sets)
        assert local_tensors.keys() == ray_tensors.keys()
        for key, value in local_tensors.items():
            assert torch.allclose(value.float(), ray_tensors[key].float(), atol=1e-5), (file, key)
    options = SetEvalOptions(test=str(heldout), seeds=(0, 1), epochs=2)
    local, ray = (evaluate_distilled(run, "ray2", options, runner) for runner in ("local", "ray"))
    assert [s["size"] for s in local["summary"]] == [s["size"] for s in ray["summary"]] == [4]
    assert local["summary"][0]["mean"] == pytest.approx(ray["summary"][0]["mean"], abs=1 / 8)  # a test image


def test_held_out_images_that_do_not_decode_are_counted(run, heldout, tmp_path):
    table = pq.read_table(heldout)
    corrupt = tmp_path / "corrupt.parquet"
    extra = pa.table({"jpg": pa.array([b"not an image"], pa.binary()), "label": [table["label"][0].as_py()]})
    pq.write_table(pa.concat_tables([table, extra]), corrupt)
    result = evaluate_distilled(run, "hard", SetEvalOptions(test=str(corrupt), epochs=1))
    assert result["test_undecoded"] == 1
    assert pq.read_table(result["parquet"])["heldout_size"].to_pylist() == [8]

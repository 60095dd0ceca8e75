"""evaluate_subset end to end on a tiny synth pool: outputs, catalog rows, metric ranges, argument errors."""

import json

import pyarrow.parquet as pq
import pytest

from curate.catalogs import connect
from curate.cli.evaluate import add_arguments, run
from curate.cli.main import OneLineArgumentParser, guarded
from curate.errors import UsageError
from curate.evaluate.run import METRICS, DynamicPruning, evaluate_subset, evaluation_name
from tests.shards import ingested_synth_pool

HELDOUT = 12


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    """A 120-sample synth pool in two shards ingested into a run, and its held-out set (one image of each of the first
    HELDOUT concepts: fewer prompts to encode, the same code path)."""
    return ingested_synth_pool(tmp_path_factory.mktemp("synth"), samples=120, shard_size=60,
                               heldout_classes=HELDOUT)


@pytest.fixture(scope="module")
def result(pool):
    run, heldout = pool
    return evaluate_subset(run, "width >= 0", heldout, samples_seen=64, seeds=[0], batch_size=32, progress=False)


def test_writes_json_and_parquet_with_metrics_in_range(pool, result):
    run, heldout = pool
    assert result["samples_seen"] == 64 and result["model_config"] == "curate-tiny"
    assert 0 < result["subset_size"] <= 120 and result["heldout_size"] == result["classes"] == HELDOUT
    json_path = run.path / "evaluations" / f"{result['evaluation']}.json"
    assert result["json"] == str(json_path)
    written = json.loads(json_path.read_text())
    assert written["per_seed"][0]["seed"] == 0 and written["predicate"] == "width >= 0"
    for metric in METRICS:
        assert 0.0 <= written["mean"][metric] <= 1.0 and written["std"][metric] == 0.0
    assert written["mean"]["zeroshot_top1"] <= written["mean"]["zeroshot_top5"]
    rows = pq.read_table(result["parquet"]).to_pylist()
    assert len(rows) == 1 and rows[0]["subset_size"] == result["subset_size"] and rows[0]["samples_seen"] == 64
    assert rows[0]["predicate"] == "width >= 0" and rows[0]["wall_seconds"] > 0
    assert result["evaluation"] == evaluation_name("width >= 0", [0], 64, "curate-tiny", heldout)
    con = connect(run)
    try:
        count = con.execute("SELECT count(*) FROM evaluations WHERE seed = 0").fetchone()[0]
    finally:
        con.close()
    assert count == 1


def test_bad_arguments_are_one_line_usage_errors(pool, tmp_path):
    run, heldout = pool
    cases = [
        (dict(where=None, heldout=heldout, model_config="no-such-model"), "unknown model"),
        (dict(where=None, heldout=tmp_path / "missing.parquet"), "does not exist"),
        (dict(where="uid = 'no such uid'", heldout=heldout), "no samples"),
        (dict(where=None, heldout=heldout, seeds=[]), "at least one seed"),
        (dict(where=None, heldout=heldout, dynamic=DynamicPruning("seta", 1.5)), "prune_ratio"),
        (dict(where=None, heldout=heldout, dynamic=DynamicPruning("nope", 0.5)), "nope"),
        (dict(where=None, heldout=heldout, dynamic=DynamicPruning("seta", 0.3, (("groups", 5),))), "groups"),
    ]
    for kwargs, message in cases:
        with pytest.raises(UsageError, match=message) as info:
            evaluate_subset(run, samples_seen=8, progress=False, **kwargs)
        assert "\n" not in str(info.value)


def test_cli_rejects_a_bad_model_config_with_exit_code_2(pool, capsys):
    run_dir, heldout = pool
    parser = OneLineArgumentParser(prog="curate evaluate")
    add_arguments(parser)
    args = parser.parse_args([str(run_dir.path), "--heldout", str(heldout), "--model-config", "nope",
                              "--seeds", "0,1"])
    assert args.seeds == [0, 1]
    assert guarded(run, args) == 2
    assert "unknown model" in capsys.readouterr().err
    with pytest.raises(UsageError):
        parser.parse_args([str(run_dir.path), "--heldout", str(heldout), "--seeds", ","])


def test_dynamic_pruning_forwards_less_and_records_it(pool):
    run, heldout = pool
    result = evaluate_subset(run, None, heldout, samples_seen=240, seeds=[0], progress=False,
                             dynamic=DynamicPruning("random", 0.5))
    [seed] = result["per_seed"]
    epochs = -(-240 // result["subset_size"])
    assert epochs >= 2
    assert seed["samples_forwarded"] == epochs * (result["subset_size"] // 2)
    assert seed["saved_fraction"] == pytest.approx(1 - seed["samples_forwarded"] / (epochs * result["subset_size"]))
    row = pq.read_table(result["parquet"]).to_pylist()[0]
    assert (row["dynamic"], row["prune_ratio"], row["samples_forwarded"]) == ("random", 0.5, seed["samples_forwarded"])
    assert result["evaluation"] != evaluation_name(None, [0], 240, "curate-tiny", heldout)


def test_cli_passes_pruner_options_to_seta_and_records_them(pool, capsys):
    run_dir, heldout = pool
    parser = OneLineArgumentParser(prog="curate evaluate")
    add_arguments(parser)
    args = parser.parse_args([str(run_dir.path), "--heldout", str(heldout), "--samples-seen", "120", "--dynamic",
                              "seta", "--prune-ratio", "0.2", "--pruner-option", "num_groups=5",
                              "--pruner-option", "window_scale=0.9"])
    assert guarded(run, args) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["dynamic"] == dict(method="seta", prune_ratio=0.2, options=dict(num_groups=5, window_scale=0.9))
    row = pq.read_table(result["parquet"]).to_pylist()[0]
    assert json.loads(row["pruner_options"]) == dict(num_groups=5, window_scale=0.9)
    args = parser.parse_args([str(run_dir.path), "--heldout", str(heldout), "--pruner-option", "num_groups=5"])
    assert guarded(run, args) == 2
    assert "needs --dynamic" in capsys.readouterr().err
    with pytest.raises(UsageError):
        parser.parse_args([str(run_dir.path), "--heldout", str(heldout), "--pruner-option", "num_groups"])

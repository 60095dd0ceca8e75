"""The baselines mode: which subsets it builds, equal compute for each, and its table and chart."""

import pytest
from PIL import Image

from curate.catalogs import connect
from curate.evaluate.baselines import baseline_subsets, format_table, run_baselines, subset_size
from tests.shards import ingested_synth_pool
from tests.toy_stages import A, B


@pytest.fixture(scope="module")
def run_with_flags(tmp_path_factory):
    run, heldout = ingested_synth_pool(tmp_path_factory.mktemp("baselines"), samples=200, shard_size=200,
                                       heldout_classes=12)
    A().apply(run, progress=False)
    B().apply(run, progress=False)
    return run, heldout, connect(run).execute("SELECT count(*) FROM samples").fetchone()[0]


def test_subsets_are_the_pool_each_flag_their_conjunction_and_same_size_random_ones(run_with_flags):
    run, _, n = run_with_flags
    subsets = dict(baseline_subsets(run))
    assert next(iter(subsets)) == "full pool" and subsets["full pool"] is None
    assert {"a_keep", "b_keep", "a_keep AND b_keep"} <= set(subsets)
    for curated in ("a_keep", "b_keep", "a_keep AND b_keep"):
        size = subset_size(run, curated)
        [random_label] = [label for label in subsets if label.endswith(f"(as {curated})")]
        assert subset_size(run, subsets[random_label]) == size
        assert subsets[random_label] != curated
    assert subset_size(run, "a_keep") == (n + 1) // 2


def test_run_baselines_writes_table_and_chart(run_with_flags):
    run, heldout, _ = run_with_flags
    # one step of 16 samples per subset: every row's model is trained and measured, at the same compute
    summary = run_baselines(run, heldout, samples_seen=16, seeds=[0], batch_size=16, progress=False)
    assert len(summary["rows"]) == 7 and all(r["mean"]["zeroshot_top1"] is not None for r in summary["rows"])
    assert (run.path / "evaluations" / "baselines.json").exists()
    with Image.open(summary["chart"]) as im:
        assert im.format == "PNG"
    table = format_table(summary["rows"]).splitlines()
    assert len(table) == 8 and table[1].startswith("full pool | 200 |")
    seen = connect(run).execute("SELECT DISTINCT samples_seen FROM evaluations").fetchall()
    assert seen == [(16,)]

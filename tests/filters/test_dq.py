"""DQ on a run: bins within concept clusters or over the whole input, the exact kept share, its columns and the
dq_bins view, its place in the stage graph, both runners, and one-line errors."""

import pytest

from curate.api import open as open_run
from curate.catalogs import connect
from curate.concepts.quantization import graphcut_bins
from curate.errors import UsageError
from curate.filters.dq import DQ
from curate.filters.semdedup import SemDeDup
from curate.graph import status
from curate.rundir import RunDir
from curate.stages.embeddings import load_embeddings
from tests.shards import planted_datacomp_run


def datacomp_run(folder) -> RunDir:
    return planted_datacomp_run(folder)[0]


def test_bins_within_clusters_keep_the_same_share_of_each_bin(tmp_path):
    run = datacomp_run(tmp_path)
    counts = DQ(keep_fraction=0.5, bins=4, clusters=3).apply(run, progress=False)
    assert counts == dict(input=132, kept=66, dropped=66, groups=3, bins=12, groups_with_fewer_bins=0,
                          bins_keeping_none=0)
    bins = open_run(run.path).sql('SELECT * FROM dq_bins ORDER BY "group", bin')
    assert bins.height == 12 and bins["size"].sum() == 132 and bins["kept"].sum() == 66
    assert (bins["kept"] - bins["size"] / 2).abs().max() <= 1  # the same share of every bin, rounded
    con = connect(run)
    per_bin = con.execute("SELECT cluster_id, dq_bin, count(*), count(DISTINCT dq_rank), max(dq_rank) FROM samples"
                          " GROUP BY 1, 2").fetchall()
    assert all(n == distinct == top + 1 for _, _, n, distinct, top in per_bin)  # ranks 0..size-1 in every bin


def test_over_the_whole_input_the_bins_are_graphcuts(tmp_path):
    run = datacomp_run(tmp_path)
    DQ(keep_fraction=0.3, bins=5, per="none").apply(run, progress=False)
    embeddings = load_embeddings(run)
    expected = graphcut_bins(embeddings.vectors, 5)
    uids = embeddings.uids.to_pylist()
    got = dict(connect(run).execute("SELECT uid, dq_bin * 1000 + dq_rank FROM samples").fetchall())
    assert all(got[uids[row]] == k * 1000 + rank for k, rows in enumerate(expected) for rank, row in enumerate(rows))
    assert "kmeans" not in status(run)  # no clustering needed


def test_where_chooses_the_input_and_the_graph_tracks_it(tmp_path, ray_local):
    run = datacomp_run(tmp_path)
    SemDeDup(eps=0.01, clusters=3).apply(run, progress=False)
    counts = DQ(keep_fraction=0.5, bins=2, clusters=3, where="semdedup_keep").apply(run, progress=False)
    assert counts["input"] == 120 and counts["kept"] == 60
    local = connect(run).execute("SELECT uid, dq_bin, dq_rank, dq_keep FROM samples ORDER BY uid").fetchall()
    assert DQ(keep_fraction=0.5, bins=2, clusters=3, where="semdedup_keep").apply(run, "ray", workers=2,
                                                                                  progress=False) == counts
    assert connect(run).execute("SELECT uid, dq_bin, dq_rank, dq_keep FROM samples ORDER BY uid").fetchall() == local
    SemDeDup(eps=0.001, clusters=3).apply(run, progress=False)
    assert status(run)["dq"] == "stale"


def test_a_cluster_too_small_for_the_bins_gets_as_many_as_each_keep_a_sample(tmp_path):
    run = datacomp_run(tmp_path)
    counts = DQ(keep_fraction=0.1, bins=8, clusters=3).apply(run, progress=False)
    sizes = [n for (n,) in connect(run).execute("SELECT count(*) FROM samples GROUP BY cluster_id").fetchall()]
    assert counts["bins"] == sum(min(8, max(1, int(n * 0.1))) for n in sizes) < 24
    assert counts["groups_with_fewer_bins"] == sum(int(n * 0.1) < 8 for n in sizes) > 0
    assert counts["kept"] == int(132 * 0.1)
    kept_per_bin = open_run(run.path).sql("SELECT kept FROM dq_bins")["kept"]
    assert kept_per_bin.min() >= 1  # every bin of size >= 1 / fraction keeps a sample


def test_bad_options_are_one_line_errors(tmp_path, monkeypatch):
    run = datacomp_run(tmp_path)
    with monkeypatch.context() as patched:
        patched.setenv("CURATE_PARTITION_BYTES", "1000")  # under the input's vectors: one task could not hold them
        with pytest.raises(UsageError, match=r"--per label bins the whole input in one task: .* --per cluster"):
            DQ(keep_fraction=0.5, bins=2, per="label", label_column="shard").apply(run, progress=False)
    assert "dq" not in status(run)
    with pytest.raises(UsageError, match=r"holds \d+ samples, fewer than --bins 80 \(2 groups do\)"):
        DQ(keep_fraction=0.5, bins=80, per="label", label_column="shard").apply(run, progress=False)
    with pytest.raises(UsageError, match="none from some of the 40 bins"):
        DQ(keep_fraction=0.05, bins=40, per="none").apply(run, progress=False)
    with pytest.raises(UsageError, match=r"keep-fraction must be in \(0, 1\]"):
        DQ(keep_fraction=0)


def test_bins_per_label_group_by_a_column(tmp_path):
    run = datacomp_run(tmp_path)
    counts = DQ(keep_fraction=0.5, bins=3, per="label", label_column="shard").apply(run, progress=False)
    assert (counts["groups"], counts["bins"], counts["kept"]) == (2, 6, 66)  # the two shards: 70 and 62 samples
    sizes = open_run(run.path).sql('SELECT "group", sum(size) AS n FROM dq_bins GROUP BY 1 ORDER BY 1')
    assert sizes["n"].to_list() == [70, 62]
    for bad, message in ((dict(per="label"), "needs --label-column"),
                         (dict(label_column="shard"), "needs --per label")):
        with pytest.raises(UsageError, match=message):
            DQ(keep_fraction=0.5, **bad)
    with pytest.raises(UsageError, match="no column 'nope' in samples"):
        DQ(keep_fraction=0.5, per="label", label_column="nope").apply(run, progress=False)

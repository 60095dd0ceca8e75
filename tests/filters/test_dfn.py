"""DFN filtering: DataComp's whole-pool keep rule, scores equal to the embeddings' cosine."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.catalogs import connect
from curate.errors import UsageError
from curate.filters.dfn import DFNFilter
from curate.runners import make_runner
from curate.stages.ranks import ColumnRanks
from curate.stages.threshold import fraction_threshold
from tests.shards import ingested_tars


def ranked(folder, *parts) -> ColumnRanks:
    """Returns the ranks of the scores written as one Parquet file per part."""
    for i, part in enumerate(parts):
        pq.write_table(pa.table({"s": np.array(part, np.float32)}), folder / f"{i}.parquet")
    return ColumnRanks(make_runner("local", progress=False), sorted(folder.glob("*.parquet")), "s")


def test_fraction_threshold_follows_datacomp(tmp_path):
    scores = np.array([0.1, 0.9, 0.5, 0.3, 0.7, 0.2, 0.8, 0.4, 0.6, 0.0], np.float32)
    ranks = ranked(tmp_path, scores[:4], scores[4:])
    # descending: .9 .8 .7 .6 .5 ...; the int(10 * 0.3) = 3rd best is 0.7, and >= keeps 3
    assert fraction_threshold(ranks, 0.3) == pytest.approx(0.7)
    assert (scores >= np.float32(fraction_threshold(ranks, 0.3))).sum() == 3
    assert fraction_threshold(ranks, 0.05) == float("inf")  # int(10 * 0.05) = 0: none
    assert fraction_threshold(ranks, 1.0) == pytest.approx(0.0)
    (tmp_path / "empty").mkdir()
    assert fraction_threshold(ranked(tmp_path / "empty", []), 0.5) == float("-inf")
    with pytest.raises(UsageError):
        fraction_threshold(ranks, 0)


@pytest.fixture
def embedded_run(tmp_path):
    return ingested_tars(tmp_path, shards=3, per_shard=7, embedded=True)


def test_keep_is_decided_over_the_whole_pool(embedded_run):
    counts = DFNFilter(keep_fraction=0.3).apply(embedded_run)
    con = connect(embedded_run)
    rows = con.execute(
        "SELECT dfn_score, dfn_keep, list_dot_product(image_embedding, text_embedding) "
        "FROM samples JOIN embeddings USING (uid)"
    ).fetchall()
    scores = np.array([r[0] for r in rows], np.float32)
    np.testing.assert_allclose(scores, [r[2] for r in rows], atol=1e-5)
    expected_cut = -np.sort(-scores)[int(21 * 0.3) - 1]
    assert counts["threshold"] == pytest.approx(expected_cut)
    assert [r[1] for r in rows] == [s >= expected_cut for s in scores]
    assert counts["kept"] == 6 and counts["kept"] + counts["dropped"] == 21
    assert con.execute("SELECT kept, dropped FROM stage_counts WHERE stage = 'dfn_keep'").fetchone() == (6, 15)


def test_threshold_and_rerun_with_other_options(embedded_run):
    DFNFilter(keep_fraction=0.5).apply(embedded_run)
    counts = DFNFilter(threshold=2.0).apply(embedded_run)  # cosine never reaches 2: nothing kept
    assert counts["kept"] == 0
    assert connect(embedded_run).execute("SELECT count(*) FROM samples WHERE dfn_keep").fetchone() == (0,)
    with pytest.raises(UsageError, match="exactly one"):
        DFNFilter()


def test_dfn_needs_embeddings(tmp_path):
    run = ingested_tars(tmp_path, shards=1, per_shard=2)
    with pytest.raises(UsageError, match="has no embeddings; run `curate embed`"):
        DFNFilter(keep_fraction=0.5).apply(run)

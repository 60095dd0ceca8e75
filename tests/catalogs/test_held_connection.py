"""A connection held open in the same process (a notebook's) does not pin the catalog: a stage rerun with other
options rebuilds it, and later connections and runs see the rebuilt one while the held one keeps the old."""

import duckdb

import curate
from curate.catalogs import connect
from tests.shards import planted_datacomp_run


def view_names(con: duckdb.DuckDBPyConnection) -> set[str]:
    return {name for (name,) in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}


def test_a_held_connection_neither_breaks_a_rerun_nor_pins_the_old_catalog(tmp_path):
    run = curate.open(planted_datacomp_run(tmp_path)[0].path)  # 132 embedded samples
    assert run.filter("dfn", keep_fraction=0.5, progress=False)["kept"] == 66
    assert run.filter("dq", keep_fraction=0.5, bins=2, per="none", where="dfn_keep", progress=False)["kept"] == 33
    held = connect(run.path)
    assert held.execute("SELECT count(*) FROM samples WHERE dfn_keep AND dq_keep").fetchone()[0] == 33

    # DFN with another keep fraction invalidates DQ (it read dfn_keep) and deletes its scores; DQ's rerun reads
    # the samples view of the rebuilt catalog, and so does every later query.
    assert run.filter("dfn", keep_fraction=0.25, progress=False)["kept"] == 33
    assert run.filter("dq", keep_fraction=0.5, bins=2, per="none", where="dfn_keep", progress=False)["kept"] == 16
    assert run.samples("dfn_keep").count() == 33 and run.samples("dq_keep").count() == 16
    assert run.filter("random", keep_fraction=0.5, progress=False)["kept"] == 66  # a new stage's columns show
    assert "random_keep" in run.sql("DESCRIBE samples")["column_name"].to_list()
    fresh = connect(run.path)
    assert fresh.execute("SELECT count(*) FROM samples WHERE dq_keep AND NOT dfn_keep").fetchone()[0] == 0
    assert view_names(fresh) >= {"scores_dfn", "scores_dq", "scores_random"}
    fresh.close()

    # The held connection still has the catalog it opened: its views, over the files the run holds now.
    assert "scores_dq" in view_names(held) and "scores_random" not in view_names(held)
    held.close()

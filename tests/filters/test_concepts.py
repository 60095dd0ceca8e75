"""SemDeDup and DBP on a run: DataComp shards with planted duplicates, both runners, the catalog's columns."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from curate.catalogs import connect
from curate.errors import UsageError
from curate.filters.dbp import DBP
from curate.filters.semdedup import SemDeDup
from curate.report import write_report
from curate.rundir import RunDir
from tests.shards import planted_datacomp_run

KMEANS = dict(clusters=3, kmeans_seed=0)
SCRIPT = Path(__file__).parents[2] / "pipelines" / "prune.py"


@pytest.fixture
def pruned_run(tmp_path):
    return planted_datacomp_run(tmp_path)


def decisions(run: RunDir) -> dict[str, tuple]:
    con = connect(run)
    rows = con.execute("SELECT uid, cluster_id, semdedup_keep, semdedup_dup_of FROM samples").fetchall()
    return {r[0]: r[1:] for r in rows}


def test_semdedup_removes_one_of_each_planted_pair_and_nothing_else(pruned_run):
    run, uids, pairs = pruned_run
    counts = SemDeDup(eps=0.01, **KMEANS).apply(run, progress=False)
    assert counts == dict(scored=132, kept=120, dropped=12, eps=0.01, clusters=3)
    got = decisions(run)
    for a, b in pairs:
        (_, keep_a, dup_a), (_, keep_b, dup_b) = got[uids[a]], got[uids[b]]
        assert keep_a != keep_b
        assert (dup_a, dup_b) == ((None, uids[a]) if keep_a else (uids[b], None))
    con = connect(run)
    clusters = con.execute("SELECT sum(size), sum(semdedup_kept) FROM clusters").fetchone()
    assert clusters == (132, 120)
    assert con.execute("SELECT kept, dropped FROM stage_counts WHERE stage = 'semdedup_keep'").fetchone() == (120, 12)


def test_keep_fraction_and_dbp_after_semdedup(pruned_run):
    run, _, _ = pruned_run
    counts = SemDeDup(keep_fraction=0.5, **KMEANS).apply(run, progress=False)
    assert counts["kept"] == 66
    dbp = DBP(keep_fraction=0.5, **KMEANS).apply(run, progress=False)  # int(0.5 x its input of 66)
    assert dbp == dict(input=66, kept=33, dropped=33, pool=132, clusters=3)
    con = connect(run)
    unscored = con.execute("SELECT count(*) FROM samples WHERE NOT semdedup_keep AND dbp_keep IS NOT NULL")
    assert unscored.fetchone() == (0,)
    quota, inputs = con.execute("SELECT sum(quota), sum(dbp_input) FROM clusters").fetchone()
    assert (quota, inputs) == (33, 66)
    per_cluster = con.execute("SELECT cluster_id, count(*) FILTER (dbp_keep) FROM samples GROUP BY 1 ORDER BY 1")
    assert [n for _, n in per_cluster.fetchall()] == [q for (q,) in con.execute(
        "SELECT quota FROM clusters ORDER BY cluster_id").fetchall()]
    hardest = con.execute("SELECT bool_and(dist_to_centroid >= (SELECT max(dist_to_centroid) FROM samples s2"
                          " WHERE s2.cluster_id = s.cluster_id AND s2.semdedup_keep AND NOT s2.dbp_keep))"
                          " FROM samples s WHERE dbp_keep").fetchone()
    assert hardest == (True,)
    con.close()  # DuckDB shares one instance per file in a process: a connection held open pins the old catalog
    again = DBP(keep_fraction=0.25, fraction_of="pool", **KMEANS).apply(run, progress=False)  # 0.25 x 132
    assert again == dbp
    figure = write_report(run)[-1]
    assert figure == run.path / "report" / "clusters.png"
    with Image.open(figure) as image:
        assert image.format == "PNG" and image.width >= 1000  # two panels: sizes and complexity vs quota


def test_new_clusters_discard_old_decisions(pruned_run):
    run, _, _ = pruned_run
    SemDeDup(eps=0.01, **KMEANS).apply(run, progress=False)
    DBP(keep_fraction=0.5, **KMEANS).apply(run, progress=False)
    SemDeDup(eps=0.01, clusters=4).apply(run, progress=False)
    con = connect(run)
    assert con.execute("SELECT count(DISTINCT cluster_id) FROM samples").fetchone() == (4,)
    assert "dbp_keep" not in [c for (c,) in con.execute("SELECT column_name FROM (DESCRIBE samples)").fetchall()]
    with pytest.raises(UsageError, match="of the pool's 132 samples keeps 132, more than the 120 of the input"):
        DBP(keep_fraction=1.0, fraction_of="pool", clusters=4).apply(run, progress=False)
    with pytest.raises(UsageError, match="invalid --where"):
        DBP(keep_fraction=0.5, where="no_such_column", clusters=4).apply(run, progress=False)


def test_prune_pipeline_script(pruned_run, tmp_path):
    run, _, _ = pruned_run
    copy = tmp_path / "submitted" / "prune.py"  # as `ray submit` does: nothing beside the script is importable
    copy.parent.mkdir()
    shutil.copy(SCRIPT, copy)

    def script(*args):
        return subprocess.run([sys.executable, str(copy), "--run", str(run.path), *args],
                              capture_output=True, text=True, cwd=tmp_path)

    done = script("--method", "semdedup", "--eps", "0.01", "--clusters", "3", "--runner", "local")
    assert done.returncode == 0, done.stderr
    dbp = script("--method", "dbp", "--keep-fraction", "0.5", "--fraction-of", "pool", "--clusters", "3", "--runner",
                 "local", "--workers", "2")
    assert dbp.returncode == 0, dbp.stderr
    assert connect(run).execute("SELECT count(*) FILTER (dbp_keep) FROM samples").fetchone() == (66,)
    shown = script("--method", "dbp", "--help")  # the chosen method's options, the methods from the registry
    assert shown.returncode == 0 and "--tau" in shown.stdout and "{semdedup,dbp,dq}" in shown.stdout
    bad = script("--method", "dbp")
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "--keep-fraction" in bad.stderr

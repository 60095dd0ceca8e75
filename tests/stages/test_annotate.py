"""`curate annotate`: a user's table joined to the samples as a stage, counted, refused in one line when it cannot
be, and tracked by the stage graph."""

import json
import random
import shutil

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import curate
from curate.cli.main import main
from curate.errors import UsageError
from curate.filters.dq import DQ
from curate.graph import status
from curate.rundir import RunDir
from tests.shards import ingested_tars


@pytest.fixture(scope="module")
def ingested(tmp_path_factory):
    """A run of 10 samples (keys 000000000..000000009) that no test changes: the refusals use it as it is."""
    return ingested_tars(tmp_path_factory.mktemp("annotate"), shards=2, per_shard=5)


@pytest.fixture
def run(ingested, tmp_path):
    """A copy of the ingested run for a test that annotates it (the shards stay where the run recorded them)."""
    shutil.copytree(ingested.path, tmp_path / "run")
    return RunDir(tmp_path / "run")


def samples(run, columns: str) -> list[tuple]:
    return curate.open(run.path).arrow(f"SELECT key, {columns} FROM samples ORDER BY key").to_pylist()


def snapshot(run) -> dict:
    """Returns the run's files, relative path -> bytes, but the catalog (rebuilt by a refused step, unchanged)."""
    return {p.relative_to(run.path).as_posix(): p.read_bytes() for p in run.path.rglob("*")
            if p.is_file() and p.name != "catalog.duckdb"}


def test_a_csv_joins_on_key_with_its_counts_and_prefixed_columns(run, tmp_path, capsys):
    table = tmp_path / "scores.csv"
    # Keys keep their leading zeros (read as text); one row matches no sample, one has no key.
    table.write_text("key,aesthetic,licence\n000000001,5.5,cc-by\n000000003,4.0,\n000000404,1.0,x\n,2.0,y\n")
    assert main(["annotate", str(run.path), "--from", str(table), "--on", "key", "--name", "user"]) == 0
    counts = json.loads(capsys.readouterr().out)
    assert counts == dict(rows=4, matched=2, unmatched_rows=1, rows_without_key=1, samples_without_row=8)
    rows = samples(run, "user_aesthetic, user_licence")
    assert rows[1] == {"key": "000000001", "user_aesthetic": 5.5, "user_licence": "cc-by"}
    assert rows[3] == {"key": "000000003", "user_aesthetic": 4.0, "user_licence": None}
    assert rows[0]["user_aesthetic"] is None
    assert curate.open(run.path).sql("SELECT count(*) AS n FROM samples WHERE user_aesthetic > 5")["n"][0] == 1
    stage = curate.open(run.path).stages().filter(pl.col("stage") == "user").row(0, named=True)
    assert stage["status"] == "current" and stage["columns"] == ["user_aesthetic", "user_licence"]


def test_a_frame_from_python_a_jsonl_file_and_no_prefix(run, tmp_path):
    api = curate.open(run.path)
    uids = api.sql("SELECT uid FROM samples ORDER BY key")["uid"].to_list()
    counts = api.annotate("nsfw", pl.DataFrame({"uid": uids[:3], "flag": [True, False, True]}))
    assert counts["matched"] == 3 and counts["samples_without_row"] == 7
    lines = [json.dumps({"url": f"http://example.com/{i}.jpg", "lang": "en", "tags": ["a"]}) for i in range(4)]
    (tmp_path / "langs.jsonl").write_text("\n".join(lines) + "\n")
    counts = api.annotate("langs", tmp_path / "langs.jsonl", on="url", columns=["lang"], prefix=False)
    assert counts["matched"] == 4
    rows = samples(run, "nsfw_flag, lang")
    assert [r["nsfw_flag"] for r in rows[:4]] == [True, False, True, None]
    assert [r["lang"] for r in rows[3:5]] == ["en", None]


def test_another_table_makes_the_stages_that_read_its_columns_stale(tmp_path):
    run = ingested_tars(tmp_path / "pool", shards=2, per_shard=5, embedded=True)
    path = tmp_path / "a.parquet"
    uids = curate.open(run.path).sql("SELECT uid FROM samples ORDER BY key")["uid"].to_list()
    pq.write_table(pa.table({"uid": uids, "score": [float(i) for i in range(10)]}), path)
    curate.open(run.path).annotate("mine", path)
    DQ(keep_fraction=0.5, bins=2, clusters=2, where="mine_score > 2").apply(run, progress=False)
    curate.open(run.path).annotate("mine", path)  # the same table again: nothing changes
    assert status(run)["dq"] == "current"
    pq.write_table(pa.table({"uid": uids, "score": [float(-i) for i in range(10)]}), path)
    curate.open(run.path).annotate("mine", path)
    assert status(run)["dq"] == "stale"
    assert samples(run, "mine_score")[3]["mine_score"] == -3.0


REFUSALS = [
    ("key,score\n000000001,1\n000000001,2\n", ["--on", "key"], "repeats the key '000000001' (2 rows)"),
    ("score\n1\n", [], "has no column 'uid' to match on"),
    ("uid\nabc\n", [], "has no column besides uid"),
    ("key,score\n000000001,1\n", ["--on", "key", "--columns", "nope"], "--columns names 'nope'"),
    ("key,caption\n000000001,x\n", ["--on", "key", "--no-prefix"], "clashes with curate's column caption"),
    ("key,dfn_score\n000000001,1\n", ["--on", "key", "--no-prefix"], "clashes with curate's column dfn_*"),
    ("key,score\n000000001,1\n", ["--on", "key", "--name", "dfn"], "is a name of curate's own stages"),
    ("key,score\n000000001,1\n", ["--on", "key", "--name", "Bad-Name"], "use lowercase letters"),
]


@pytest.mark.parametrize(("text", "extra", "message"), REFUSALS)
def test_a_refused_table_is_one_line_and_changes_nothing(ingested, tmp_path, capsys, text, extra, message):
    run = ingested
    table = tmp_path / "t.csv"
    table.write_text(text)
    before = snapshot(run)
    arguments = ["annotate", str(run.path), "--from", str(table), "--name", "user", *extra]
    if "--name" in extra:
        arguments = arguments[:5] + arguments[7:]  # the case's own --name
    assert main(arguments) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err, err
    assert snapshot(run) == before


def test_a_key_of_another_type_and_an_unreadable_table_are_one_line(ingested, tmp_path):
    run = ingested
    pq.write_table(pa.table({"uid": [1, 2], "score": [1.0, 2.0]}), tmp_path / "ints.parquet")
    with pytest.raises(UsageError, match="holds int64 values, the run's uid is text"):
        curate.open(run.path).annotate("a", tmp_path / "ints.parquet")
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(UsageError, match="cannot read it as a table"):
        curate.open(run.path).annotate("a", tmp_path / "bad.parquet")
    (tmp_path / "sheet.xlsx").write_bytes(b"PK")
    with pytest.raises(UsageError, match=r"give a \.parquet, \.csv"):
        curate.open(run.path).annotate("a", tmp_path / "sheet.xlsx")
    with pytest.raises(UsageError, match=r"cannot read it \(No such file"):
        curate.open(run.path).annotate("a", tmp_path / "missing.csv")


def test_generated_column_names_join_or_are_refused_in_one_line(run, tmp_path):
    rng = random.Random(0)
    alphabet = ["a", "Z", " ", '"', "'", ";", "-", "é", "中", "select", "from", "_", "1", "\t", "uid"]
    uids = curate.open(run.path).sql("SELECT uid FROM samples ORDER BY key")["uid"].to_list()
    for case in range(12):
        name = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 4)))
        table = pa.table({"uid": uids[:2], name: [case, case + 1]}) if name != "uid" else None
        if table is None:
            continue
        try:
            curate.open(run.path).annotate(f"g{case}", table, prefix=rng.random() < 0.5)
        except UsageError as exc:
            assert "\n" not in str(exc)
            continue
        column = next(c for c in curate.open(run.path).stages().filter(pl.col("stage") == f"g{case}")["columns"][0])
        values = curate.open(run.path).arrow(f'SELECT "{column.replace(chr(34), chr(34) * 2)}" AS v FROM samples '
                                             "ORDER BY key").column("v").to_pylist()
        assert values[:3] == [case, case + 1, None]

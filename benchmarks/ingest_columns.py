"""Ingest with the shards' own columns: 20 extra columns against none, side by side.

    python benchmarks/ingest_columns.py [--samples 4000] [--repeats 3]

From one synth pool (64 px JPEGs), two layouts, each written twice: image Parquet files with 20 extra scalar columns
(5 each of BIGINT, DOUBLE, text and boolean) and without them, and WebDataset tars whose json holds the same 20
fields, ingested with `--json-columns all` and without it. Each case is a fresh `curate ingest` on the local runner
(one worker, in its process), its median of `--repeats` interleaved runs; it reports samples/s, the ratio with
columns to without, the bytes of the run's samples/ files and catalog, and the time of a filter on one extra column
through the catalog. Writes benchmarks/results/ingest_columns.json.
"""

import argparse
import json
import shutil
import statistics
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).parent))
from common import ensure_synth, timed, write_results

from curate.catalogs import connect
from curate.io.samples import ReadOptions
from curate.rundir import RunDir
from curate.stages.ingest import ingest
from curate.synth.hostile import write_tar

EXTRA = 20
KINDS = ("int", "float", "text", "bool")


def extra_values(count: int, seed: int) -> dict[str, list]:
    """Returns EXTRA seeded columns of `count` values, name -> values (col_int_0, col_float_0, ...)."""
    rng = np.random.default_rng(seed)
    columns = {}
    for i in range(EXTRA):
        kind = KINDS[i % len(KINDS)]
        name = f"col_{kind}_{i // len(KINDS)}"
        if kind == "int":
            columns[name] = rng.integers(0, 1_000_000, count).tolist()
        elif kind == "float":
            columns[name] = rng.random(count).round(6).tolist()
        elif kind == "text":
            columns[name] = [f"value-{v}" for v in rng.integers(0, 10_000, count)]
        else:
            columns[name] = (rng.random(count) < 0.5).tolist()
    return columns


def read_samples(pool: Path) -> list[dict]:
    """Returns the synth pool's samples (key, url, caption, jpg bytes), in shard order."""
    rows = []
    for shard in sorted(pool.glob("*.tar")):
        with tarfile.open(shard) as tar:
            members = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
        for name in sorted(n for n in members if n.endswith(".jpg")):
            key = name[:-4]
            meta = json.loads(members[f"{key}.json"])
            rows.append(dict(key=key, url=meta.get("url"), caption=members[f"{key}.txt"].decode(),
                             jpg=members[name], meta=meta))
    return rows


def write_layouts(rows: list[dict], folder: Path, shard_size: int = 500) -> dict[str, Path]:
    """Writes the four inputs: parquet and tars, with and without the extra columns; returns name -> folder."""
    extra = extra_values(len(rows), 0)
    names = {case: folder / case for case in ("parquet", "parquet+20", "webdataset", "webdataset+20")}
    for path in names.values():
        path.mkdir(parents=True, exist_ok=True)
    for index, start in enumerate(range(0, len(rows), shard_size)):
        part = rows[start:start + shard_size]
        base = {c: [r[c] for r in part] for c in ("key", "url", "caption", "jpg")}
        more = {n: v[start:start + shard_size] for n, v in extra.items()}
        pq.write_table(pa.table(base), names["parquet"] / f"{index:05d}.parquet")
        pq.write_table(pa.table(base | more), names["parquet+20"] / f"{index:05d}.parquet")
        _write_tar(names["webdataset"] / f"{index:05d}.tar", part, None)
        _write_tar(names["webdataset+20"] / f"{index:05d}.tar", part, more)
    return names


def _write_tar(path: Path, rows: list[dict], extra: dict[str, list] | None) -> None:
    samples = []
    for i, row in enumerate(rows):
        meta = row["meta"] | ({n: v[i] for n, v in extra.items()} if extra else {})
        members = (("jpg", row["jpg"]), ("txt", row["caption"].encode()), ("json", json.dumps(meta).encode()))
        samples.append((row["key"], [(f"{row['key']}.{suffix}", data, 0) for suffix, data in members]))
    write_tar(path, samples)


def ingest_once(source: Path, run: Path, with_columns: bool) -> tuple[float, dict]:
    """Ingests `source` into a fresh run; returns (seconds, sizes and the filter's time)."""
    shutil.rmtree(run, ignore_errors=True)
    options = ReadOptions(json_columns=("all",) if with_columns and "webdataset" in source.name else None)
    seconds, counts = timed(ingest, [str(source)], RunDir(run), options=options, progress=False)
    samples = sum(p.stat().st_size for p in (run / "samples").glob("*.parquet"))
    column = "col_float_0" if with_columns else "width"
    con = connect(RunDir(run))
    try:
        query, (kept,) = timed(lambda: con.execute(f"SELECT count(*) FROM samples WHERE {column} > 0.5").fetchone())
    finally:
        con.close()
    return seconds, dict(kept=counts["kept"], samples_bytes=samples,
                         catalog_bytes=(run / "catalog.duckdb").stat().st_size, filter_seconds=query,
                         filter_kept=kept)


def main() -> None:
    """Runs the benchmark, prints its figures and writes its results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=4000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "curate-bench-ingest-columns")
    args = parser.parse_args()
    pool = ensure_synth(args.work / "synth", args.samples) / "pool"
    inputs = write_layouts(read_samples(pool), args.work / "inputs")
    seconds: dict[str, list[float]] = {case: [] for case in inputs}
    facts = {}
    for _ in range(args.repeats):
        for case, source in inputs.items():
            elapsed, facts[case] = ingest_once(source, args.work / "run", case.endswith("+20"))
            seconds[case].append(elapsed)
    rows = {}
    for case in inputs:
        median = statistics.median(seconds[case])
        rows[case] = facts[case] | dict(seconds=round(median, 2), samples_per_s=round(facts[case]["kept"] / median))
        print(f"{case:15s} {rows[case]['samples_per_s']:6d} samples/s  samples/ {rows[case]['samples_bytes']:>10,d} B"
              f"  catalog {rows[case]['catalog_bytes']:>8,d} B  filter {rows[case]['filter_seconds'] * 1000:.0f} ms")
    for layout in ("parquet", "webdataset"):
        ratio = rows[f"{layout}+20"]["samples_per_s"] / rows[layout]["samples_per_s"]
        rows[f"{layout}: with / without"] = round(ratio, 3)
        print(f"{layout}: 20 columns / none = {ratio:.2f}x")
    print(f"wrote {write_results('ingest_columns', dict(samples=args.samples, repeats=args.repeats, cases=rows))}")


if __name__ == "__main__":
    main()

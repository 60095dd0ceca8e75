"""A DataComp-layout pool ingested the DataComp way (metadata Parquet + .npz, no images): memory of every process,
time, and the embeddings checked against the .npz.

    python benchmarks/datacomp_ingest.py [--samples 2000000] [--rows-per-file 500000] [--runner local|ray]

The pool is what DataComp's download_upstream.py --download_npz leaves: metadata .parquet files (uid, url, text,
sizes, CLIP scores, face boxes, sha256) with one .npz beside each holding l14_img/l14_txt (768-d) and
b32_img/b32_txt (512-d) in float16, written by np.savez (--compressed: np.savez_compressed). DataComp-1B's 2,663
metadata files hold about 525,000 rows each; --rows-per-file sets it. The command is `curate ingest POOL --run RUN
--dtype float16` on the chosen runner with --workers; memory is the PSS of the command and all its processes
summed (web_scale.py's sampler). Writes benchmarks/results/datacomp_ingest_<N>.json.
"""

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from common import machine, write_results
from web_scale import measured

DIMS = {"l14": 768, "b32": 512}
CHECKED_ROWS = 2000  # rows whose stored embeddings are compared with the .npz


def write_pool(folder: Path, samples: int, rows_per_file: int, compressed: bool, seed: int = 0) -> list[Path]:
    """Writes the metadata files and their .npz; returns the metadata paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, start in enumerate(range(0, samples, rows_per_file)):
        rng = np.random.default_rng([seed, index])
        n = min(rows_per_file, samples - start)
        name = f"{rng.integers(2**63):016x}{index:016x}"  # DataComp names files by a hash
        uids = [f"{start + i:032x}" for i in range(n)]
        pq.write_table(pa.table({
            "uid": uids, "url": [f"https://example.com/{start + i}.jpg" for i in range(n)],
            "text": [f"a photo of thing {start + i}" for i in range(n)],
            "original_width": rng.integers(64, 2048, n), "original_height": rng.integers(64, 2048, n),
            "clip_b32_similarity_score": rng.random(n, np.float32),
            "clip_l14_similarity_score": rng.random(n, np.float32),
            "face_bboxes": pa.array([[] for _ in range(n)], pa.list_(pa.list_(pa.float64()))),
            "sha256": [f"{start + i:064x}" for i in range(n)],
        }), folder / f"{name}.parquet")
        arrays = {f"{model}_{kind}": rng.standard_normal((n, dim), np.float32).astype(np.float16)
                  for model, dim in DIMS.items() for kind in ("img", "txt")}
        (np.savez_compressed if compressed else np.savez)(folder / f"{name}.npz", **arrays)
        paths.append(folder / f"{name}.parquet")
        del arrays
    return paths


def check_embeddings(run: Path, paths: list[Path], seed: int = 1) -> dict:
    """Returns how many of CHECKED_ROWS seeded rows have the .npz's l14 image embedding (normalized, float16) in the
    run, and the largest difference."""
    from curate.catalogs import connect

    con = connect(run)
    rng = np.random.default_rng(seed)
    worst, matched = 0.0, 0
    per_file = max(1, CHECKED_ROWS // len(paths))
    for path in paths:
        uids = pq.read_table(path, columns=["uid"])["uid"].to_numpy(zero_copy_only=False)
        rows = np.sort(rng.choice(len(uids), min(per_file, len(uids)), replace=False))
        with np.load(path.with_suffix(".npz")) as npz:
            expected = npz["l14_img"][rows].astype(np.float32)
        expected /= np.linalg.norm(expected, axis=1, keepdims=True)
        con.register("wanted", pa.table({"uid": uids[rows], "row": np.arange(len(rows))}))
        got = con.execute("SELECT w.row, e.image_embedding FROM wanted AS w JOIN embeddings AS e USING (uid) "
                          "ORDER BY w.row").fetchall()
        for row, vector in got:
            worst = max(worst, float(np.abs(np.asarray(vector, np.float32) - expected[row]).max()))
        matched += len(got)
    return dict(checked=per_file * len(paths), found=matched, max_abs_difference=worst)


def main() -> None:
    """Writes the pool, measures the ingest, checks it; prints and writes the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=2_000_000)
    parser.add_argument("--rows-per-file", type=int, default=500_000)
    parser.add_argument("--runner", default="local", choices=("local", "ray"))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--compressed", action="store_true", help="np.savez_compressed instead of np.savez")
    parser.add_argument("--work", type=Path, default=Path("/tmp/curate_datacomp_ingest"))
    parser.add_argument("--reuse", action="store_true", help="ingest the pool --work already holds again")
    args = parser.parse_args()
    pool = args.work / "pool"
    start = time.perf_counter()
    if not args.reuse:
        shutil.rmtree(args.work, ignore_errors=True)
        write_pool(pool, args.samples, args.rows_per_file, args.compressed)
    paths = sorted(pool.glob("*.parquet"))
    written = time.perf_counter() - start
    run = args.work / f"run-{args.runner}"
    shutil.rmtree(run, ignore_errors=True)
    argv = ["-m", "curate.cli.main", "ingest", str(pool), "--run", str(run), "--dtype", "float16",
            "--runner", args.runner, "--workers", str(args.workers)]
    figures = measured(argv) | dict(command="curate " + " ".join(argv[2:]))
    results = dict(machine=machine(), samples=args.samples, rows_per_file=args.rows_per_file, files=len(paths),
                   compressed=args.compressed, pool_mib=round(sum(p.stat().st_size for p in pool.iterdir()) / 2**20),
                   written_seconds=round(written, 1), ingest=figures,
                   run_mib=round(sum(p.stat().st_size for p in run.rglob("*") if p.is_file()) / 2**20),
                   check=check_embeddings(run, paths))
    print(json.dumps(results, indent=1))
    suffix = "" if args.runner == "local" else f"_{args.runner}"
    write_results(f"datacomp_ingest_{args.samples}{suffix}", results)


if __name__ == "__main__":
    main()

"""How separable the synth pool's planted near duplicates are from distinct samples of the same concept, in
pixel space: SemDeDup (k-means, hard order) on raw-pixel embeddings (each image box-downsampled, mean-centred
and L2-normalized, so cosine similarity is normalized cross-correlation), over a grid of eps.

concept_quality.py measures SemDeDup on the tiny DFN's embeddings; this script asks whether any embedding that
only sees pixels, not the generator's truth, could do better on this pool. A near duplicate here is a 1-3 px
shift and/or a 86-96% crop resized back, re-encoded; distinct samples of one concept differ in position, scale,
rotation, fill jitter and background, so the two overlap.

    python benchmarks/near_dup_separability.py [--samples 4000] [--sides 8,16,32]

Writes benchmarks/results/near_dup_separability.json.
"""

import argparse
import io
import sys
import tarfile
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import numpy as np
import pyarrow.parquet as pq
from common import ensure_synth, write_results
from concept_quality import EPS_GRID, MAX_FALSE_REMOVALS, duplicate_figures
from PIL import Image

from curate.concepts.kmeans import spherical_kmeans
from curate.concepts.members import cluster_members
from curate.concepts.similarity import cluster_similarities, gather_scores

PIXEL_EPS_GRID = (*EPS_GRID, 0.05, 0.1, 0.2)  # pixel similarities of near copies are far below the DFN's


def pool_images(synth: Path, truth: dict) -> list[bytes]:
    """Returns the pool's JPEG bytes in truth order (truth's shard and key name each one's tar member)."""
    members: dict[tuple[str, str], bytes] = {}
    for tar_path in sorted((synth / "pool").glob("*.tar")):
        with tarfile.open(tar_path) as tar:
            for member in tar.getmembers():
                if member.name.endswith(".jpg"):
                    members[(tar_path.stem, member.name[:-4])] = tar.extractfile(member).read()
    return [members[(str(shard), key)] for shard, key in zip(truth["shard"], truth["key"], strict=True)]


def pixel_embeddings(images: list[bytes], side: int) -> np.ndarray:
    """Returns N x (side*side*3) float32 rows: each image box-downsampled to side x side, mean-centred, unit norm."""
    rows = np.empty((len(images), side * side * 3), dtype=np.float32)
    for i, jpg in enumerate(images):
        with Image.open(io.BytesIO(jpg)) as image:
            pixels = np.asarray(image.convert("RGB").resize((side, side), Image.Resampling.BOX), dtype=np.float32)
        row = pixels.ravel() - pixels.mean()
        rows[i] = row / max(float(np.linalg.norm(row)), 1e-6)
    return rows


def semdedup_max_similarity(x: np.ndarray) -> np.ndarray:
    """Returns each row's SemDeDup score: its max similarity to an earlier member of its k-means cluster."""
    clustering = spherical_kmeans(x)
    members = cluster_members(clustering.assignment, clustering.distance, "hard", seed=0)
    return gather_scores(len(x), members, cluster_similarities(x, members)).max_similarity.astype(np.float64)


def main() -> None:
    """Runs the benchmark, prints its figures and writes its results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=4000)
    parser.add_argument("--sides", type=lambda t: [int(s) for s in t.split(",")], default=[8, 16, 32])
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "curate-bench-separability")
    args = parser.parse_args()
    synth = ensure_synth(args.work / f"synth-{args.samples}", args.samples, hq_samples=0)
    truth = pq.read_table(synth / "truth.parquet").to_pydict()
    images = pool_images(synth, truth)
    results = {}
    for side in args.sides:
        rows = dict(uid=np.array(truth["uid"]), kind=np.array(truth["kind"]), dup_of=np.array(truth["dup_of"]),
                    semdedup_max_sim=semdedup_max_similarity(pixel_embeddings(images, side)))
        grid = [duplicate_figures(rows, eps) for eps in PIXEL_EPS_GRID]
        allowed = [g for g in grid if g["false_removals"] < MAX_FALSE_REMOVALS]
        best = max(allowed, key=lambda g: g["near_dup_recall"]) if allowed else None
        results[f"pixels-{side}"] = dict(grid=grid, best_under_false_limit=best)
        for g in grid:
            print(f"pixels {side:>2}px eps {g['eps']:<7}: exact {g['exact_dup_recall']:.3f}  "
                  f"near {g['near_dup_recall']:.3f}  false {g['false_removals']:.4f}")
    path = write_results("near_dup_separability", dict(config=dict(samples=args.samples, sides=args.sides),
                                                       results=results))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

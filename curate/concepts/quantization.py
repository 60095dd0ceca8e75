"""Dataset quantization, DQ (Zhou et al., ICCV 2023): split a group of samples into K bins by GraphCut, one bin
after the other, then draw the same share of every bin at random.

Bin k is chosen greedily from what earlier bins left (V), maximizing GraphCut: a candidate x's gain given the
bin so far S is  lam * sum_{v in V} s(x, v) - 2 * sum_{j in S} s(x, j)  (NaiveGreedy: one argmax per pick,
the lowest index on ties, gains within TIE counting as tied), with s the dot product (the reference's embedding
path) or the cosine similarity (its image path); on L2-normalized embeddings they coincide. Each bin has
round(N / K) members, the last the rest. With s bilinear, both sums are dot products with running sum vectors,
so a pick costs one matrix-vector product (graphcut_bins) instead of the reference's cached N x N similarity
matrix (graphcut_bins_dense, kept as the oracle the tests compare with: the same picks in the same order).
"""

from __future__ import annotations

import numpy as np

from curate.errors import UsageError

SIMILARITIES = ("cosine", "dot")


def _features(x: np.ndarray, similarity: str) -> np.ndarray:
    if similarity not in SIMILARITIES:
        raise UsageError(f"unknown --similarity {similarity!r}; choose one of {', '.join(SIMILARITIES)}")
    x = np.asarray(x, dtype=np.float64)
    if similarity == "cosine":
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        x = x / np.where(norms > 0, norms, 1)
    return x


# Gains within this much (relative to the largest) count as a tie, which the lowest index wins: both ways of
# computing a gain round differently in the last bits, and the picks must not depend on which ran.
TIE = 1e-9


def _pick(gain: np.ndarray, taken: np.ndarray) -> int:
    """Returns the untaken index of the highest gain, the lowest of those within TIE of it."""
    open_gain = np.where(taken, -np.inf, gain)
    best = open_gain.max()
    return int(np.argmax(open_gain >= best - TIE * max(1.0, abs(best))))


def bin_sizes(n: int, bins: int) -> list[int]:
    """Returns the sizes of `bins` bins over n samples: round(n / bins) each, the last the rest; raises
    UsageError when there are more bins than samples."""
    if bins < 1 or n < bins:
        raise UsageError(f"cannot make {bins} bins from {n} samples: pass fewer --bins (at most {n})")
    size = max(1, round(n / bins))
    sizes = [size] * (bins - 1)
    if sum(sizes) >= n:  # rounding up left the last bin nothing: shrink the first ones by one until it has some
        sizes = [n // bins] * (bins - 1)
    return [*sizes, n - sum(sizes)]


def group_bin_count(size: int, bins: int, fraction: float) -> int:
    """Returns the bins for a group of `size` at keep `fraction`: `bins`, or fewer when the group is too small for
    that many bins to keep a sample each: floor(size * fraction), at least one."""
    return int(min(bins, max(1, np.floor(size * fraction))))


def _greedy(rows: np.ndarray, size: int, lam: float) -> np.ndarray:
    """Returns the `size` row indices NaiveGreedy picks from `rows` (V = all of them), in pick order."""
    gain = lam * (rows @ rows.sum(axis=0))  # lam * sum over V, itself included
    taken = np.zeros(len(rows), dtype=bool)
    picks = np.empty(size, dtype=np.int64)
    for i in range(size):
        picks[i] = best = _pick(gain, taken)
        taken[best] = True
        gain -= 2 * (rows @ rows[best])
    return picks


def graphcut_bins(x: np.ndarray, bins: int, similarity: str = "cosine", lam: float = 1.0) -> list[np.ndarray]:
    """Returns the DQ bins of the rows of x: per bin, the row indices in the order GraphCut picked them."""
    features = _features(x, similarity)
    remaining = np.arange(len(features))
    result = []
    for size in bin_sizes(len(features), bins):
        picks = _greedy(features[remaining], size, lam)
        result.append(remaining[picks])
        remaining = np.delete(remaining, picks)
    return result


def graphcut_coreset(x: np.ndarray, size: int, similarity: str = "cosine", lam: float = 1.0) -> np.ndarray:
    """Returns the row indices of one GraphCut coreset of `size` over all of x, in pick order: the plain
    submodular selection DQ's bins generalize (its first bin, when size = round(N / K))."""
    return _greedy(_features(x, similarity), size, lam)


def graphcut_bins_dense(x: np.ndarray, bins: int, similarity: str = "cosine", lam: float = 1.0) -> list[np.ndarray]:
    """Returns what graphcut_bins returns, computed as the reference does: a full similarity matrix of the
    unbinned samples per bin, and each gain summed from its columns. O(N^2) memory: the tests' oracle."""
    features = _features(x, similarity)
    remaining = np.arange(len(features))
    result = []
    for size in bin_sizes(len(features), bins):
        sim = features[remaining] @ features[remaining].T
        column_sums = sim.sum(axis=0)
        selected = np.zeros(len(remaining), dtype=bool)
        picks = []
        for _ in range(size):
            gain = np.zeros(len(remaining))
            gain[~selected] = lam * column_sums[~selected] - 2 * sim[np.ix_(selected, ~selected)].sum(axis=0)
            best = _pick(gain, selected)
            picks.append(best)
            selected[best] = True
        result.append(remaining[picks])
        remaining = remaining[~selected]
    return result


def keep_counts(sizes: np.ndarray, total: int, allow_empty: bool = False) -> np.ndarray:
    """Returns how many samples to draw from each bin: the same share of every bin, rounded so that they sum to
    `total` (the largest remainders round up, ties to the earlier bin). Raises UsageError when a bin would keep
    none, unless allow_empty."""
    sizes = np.asarray(sizes, dtype=np.int64)
    exact = sizes * (total / max(1, sizes.sum()))  # no bins at all: an empty input keeps nothing
    counts = np.floor(exact).astype(np.int64)
    order = np.lexsort((np.arange(len(sizes)), -(exact - counts)))
    counts[order[: total - int(counts.sum())]] += 1
    if not allow_empty and (counts == 0).any():
        raise UsageError(f"--keep-fraction keeps {total} of {int(sizes.sum())} samples, none from some of the "
                         f"{len(sizes)} bins (the smallest holds {int(sizes.min())}): pass fewer --bins or a larger "
                         "--keep-fraction")
    return counts


def sample_bins(bins: list[np.ndarray], counts: np.ndarray, seed: int) -> np.ndarray:
    """Returns the indices drawn uniformly at random, counts[k] from bin k (seeded by (seed, k)), sorted."""
    drawn = [np.random.default_rng([seed, k]).choice(members, size=int(count), replace=False)
             for k, (members, count) in enumerate(zip(bins, counts, strict=True))]
    return np.sort(np.concatenate(drawn)) if drawn else np.zeros(0, dtype=np.int64)

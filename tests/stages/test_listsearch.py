"""The inverted lists on disk searched by tasks (curate.stages.listsearch): exactly the in-memory search's pairs and
neighbours up to its exact limit; past it, inverted lists in several buckets that find the planted near copies'
pairs with their exact similarities; resumed from what an interrupted search wrote."""

import numpy as np
import pytest

from curate.copydetect.search import similar_pairs
from curate.rundir import RunDir
from curate.runners import as_runner
from curate.stages import listsearch
from curate.stages.buckets import BUCKET_BYTES_VARIABLE
from curate.stages.listsearch import ListSearch
from tests.shards import vector_input_files


def planted(n: int, copies: int, dim: int = 16, seed: int = 0) -> np.ndarray:
    """Returns n unit vectors around a few centres, the last `copies` of them near copies of earlier ones."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(5, dim))
    x = centres[rng.integers(0, 5, n)] + 0.6 * rng.normal(size=(n, dim))
    x[n - copies:] = x[rng.choice(n - copies, copies, replace=False)] + 0.05 * rng.normal(size=(copies, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def as_set(i, j) -> set:
    return set(zip(i.tolist(), j.tolist(), strict=True))


def test_one_list_is_the_exact_search(tmp_path):
    x = planted(300, 30)
    files, x = vector_input_files(tmp_path, x, [90, 70, 0, 50, 90], np.random.default_rng(1).random(300) < 0.8)
    search = ListSearch(RunDir(tmp_path / "run"), files, "work", as_runner("local"))
    assert len(search) == len(x) and len(search.lists.centroids) == 1
    i, j, s = search.pairs(0.8, 10**6)
    ei, ej, es = similar_pairs(x, 0.8)
    assert as_set(i, j) == as_set(ei, ej) and len(i) > 20
    np.testing.assert_allclose(s, es, atol=1e-5)
    rows = np.array([7, 0, len(x) - 1, 7])
    sims, found = search.nearest(rows, 5)
    exact = x[rows] @ x.T
    np.testing.assert_allclose(sims, -np.sort(-exact, axis=1)[:, :5], atol=1e-5)
    np.testing.assert_allclose(np.take_along_axis(exact, found, axis=1), sims, atol=1e-5)


@pytest.mark.parametrize("runner", ["local", "ray"])
def test_lists_in_buckets_find_the_near_copies_and_resume(tmp_path, monkeypatch, runner, request):
    if runner == "ray":
        request.getfixturevalue("ray_local")
    monkeypatch.setattr(listsearch, "EXACT_LIMIT", 100)  # 98 lists for 600 rows
    monkeypatch.setenv(BUCKET_BYTES_VARIABLE, "20000")
    x = planted(600, 60)
    files, x = vector_input_files(tmp_path, x, [200, 150, 250], np.ones(600, bool))
    run = RunDir(tmp_path / "run")
    search = ListSearch(run, files, "work", as_runner(runner, workers=2 if runner == "ray" else None))
    assert len(search.lists.centroids) == 98 and search.lists.buckets > 2
    i, j, s = search.pairs(0.95, 10**6)
    assert not list((run.path / "work").glob("probes-*"))  # a search's query rows are removed after it
    exact = as_set(*similar_pairs(x, 0.95)[:2])
    assert len(exact) >= 60 and len(exact & as_set(i, j)) >= 0.99 * len(exact)
    np.testing.assert_allclose(s, np.einsum("ij,ij->i", x[i], x[j]), atol=1e-5)  # similarities are exact
    sims, found = search.nearest(np.arange(len(x)), 3)
    assert (found[:, 0] == np.arange(len(x))).all()  # every row finds itself
    np.testing.assert_allclose(sims, np.einsum("ij,ikj->ik", x, x[found]), atol=1e-4)
    exact = -np.sort(-(x @ x.T), axis=1)[:, 1]
    assert np.mean(np.abs(sims[:, 1] - exact) < 1e-4) > 0.95  # the nearest other row, as 32 probes find it
    ei, ej, es = search.edges(4)  # true pairs within each home list
    np.testing.assert_allclose(es, np.einsum("ij,ij->i", x[ei], x[ej]), atol=1e-4)
    assert len(ei) >= 4 * len(x) // 2
    pairs = sorted((run.path / "work").glob("pairs-*/*.parquet"))
    pairs[0].unlink()
    again = ListSearch(run, files, "work", as_runner("local"))
    np.testing.assert_array_equal(again.lists.centroids, search.lists.centroids)
    for got, expected in zip(again.pairs(0.95, 10**6), (i, j, s), strict=True):
        np.testing.assert_array_equal(got, expected)
    with pytest.raises(Exception, match="not near-duplication"):
        again.pairs(0.0, 100)

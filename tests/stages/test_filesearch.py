"""The pool searched by tasks per input file: the same neighbours and score-normalization background as the
vectors in memory, with the input selected per file, on both runners."""

import numpy as np
import pyarrow.parquet as pq
import pytest

from curate.copydetect import scorenorm
from curate.copydetect.scorenorm import background_excess
from curate.runners import as_runner
from curate.stages.filesearch import FileNeighbours
from tests.shards import vector_input_files


@pytest.mark.parametrize("runner", ["local", "ray"])
def test_file_tasks_find_the_neighbours_and_background_of_the_vectors_in_memory(tmp_path, monkeypatch, runner,
                                                                               request):
    if runner == "ray":
        request.getfixturevalue("ray_local")
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(6, 16))
    vectors = (centres[rng.integers(0, 6, 300)] + 0.4 * rng.normal(size=(300, 16))).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    chosen = rng.random(300) < 0.8
    files, x = vector_input_files(tmp_path, vectors, [90, 70, 0, 50, 90], chosen)
    counts = [pq.read_table(f.selected).num_rows for f in files]
    pool = FileNeighbours(files, counts, as_runner(runner, workers=2 if runner == "ray" else None))
    assert len(pool) == len(x)
    rows = np.array([5, 0, len(x) - 1, 77])
    np.testing.assert_allclose(pool.vectors(rows), x[rows], atol=1e-6)
    sims, found = pool.nearest(rows, 9)
    exact = x[rows] @ x.T
    np.testing.assert_allclose(sims, -np.sort(-exact, axis=1)[:, :9], atol=1e-5)
    np.testing.assert_allclose(np.take_along_axis(exact, found, axis=1), sims, atol=1e-5)
    monkeypatch.setattr(scorenorm, "MEDIAN_SAMPLE", 60)  # the median's sample drawn, some rows outside it
    candidates = np.array([3, 40, 100, 150, 200])
    np.testing.assert_allclose(background_excess(pool, candidates, 0.9), background_excess(x, candidates, 0.9),
                               atol=1e-5)

"""The pool searched by tasks per input file: the same neighbours and score-normalization background as the
vectors in memory, with the input selected per file, on both runners."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.copydetect import scorenorm
from curate.copydetect.scorenorm import background_excess
from curate.runners import as_runner
from curate.stages.filesearch import FileNeighbours
from curate.stages.inputfiles import InputFile


def pool_files(tmp_path, vectors, sizes, chosen):
    """Writes `vectors` as descriptor files of `sizes` rows (float16 in one of them), and a selection for each
    file from the mask `chosen`; returns the InputFiles and the selected rows of `vectors`."""
    files, start = [], 0
    for f, size in enumerate(sizes):
        block = vectors[start:start + size].astype(np.float16 if f == 1 else np.float32)
        uids = pa.array([f"u{start + i}" for i in range(size)])
        path, selected = tmp_path / f"{f:03d}.parquet", tmp_path / f"{f:03d}.uids.parquet"
        pq.write_table(pa.table({"uid": uids, "descriptor": pa.FixedSizeListArray.from_arrays(
            pa.array(block.reshape(-1)), vectors.shape[1])}), path)
        pq.write_table(pa.table({"uid": uids.filter(pa.array(chosen[start:start + size]))}), selected)
        files.append(InputFile(str(path), "descriptor", str(selected)))
        start += size
    rows = np.flatnonzero(chosen)
    stored = np.concatenate([vectors[:sizes[0]], vectors[sizes[0]:sizes[0] + sizes[1]].astype(np.float16),
                             vectors[sizes[0] + sizes[1]:]]).astype(np.float32)[rows]
    return files, stored / np.linalg.norm(stored, axis=1, keepdims=True)


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
    files, x = pool_files(tmp_path, vectors, [90, 70, 0, 50, 90], chosen)
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

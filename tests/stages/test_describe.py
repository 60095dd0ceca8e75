"""Copy descriptors as a stage (`curate embed RUN --model DIR --as NAME`): one unit vector per accepted sample in
descriptors/NAME/, the same on Ray, resumed on rerun, recomputed (and what read them made stale) with another
model, and one-line errors."""

import numpy as np
import pyarrow.parquet as pq
import pytest

from curate.cli.main import main
from curate.copydetect.model import DescriptorConfig, build_descriptor, save_descriptor
from curate.errors import UsageError
from curate.filters.neardup import NearDup
from curate.graph import status
from curate.stages.describe import describe
from curate.stages.embeddings import load_embeddings
from tests.shards import ingested_tars

CONFIG = DescriptorConfig(dim=8, image_size=24, width=8)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("descriptors")
    return [str(save_descriptor(build_descriptor(CONFIG, seed), CONFIG, folder / f"m{seed}")) for seed in (0, 1)]


def run_of(tmp_path):
    return ingested_tars(tmp_path / "pool", shards=2, per_shard=6)


def test_one_unit_descriptor_per_accepted_sample_in_samples_order(tmp_path, models):
    run = run_of(tmp_path)
    assert describe(run, models[0], "copy", progress=False) == {"described": 12}
    vectors = load_embeddings(run, "copy")
    samples = pq.read_table(run.path / "samples").column("uid")
    assert vectors.uids.to_pylist() == samples.to_pylist()
    assert vectors.vectors.shape == (12, 8)
    assert np.allclose(np.linalg.norm(vectors.vectors, axis=1), 1, atol=1e-5)
    assert status(run)["embed_copy"] == "current"
    first_file = sorted((run.path / "descriptors" / "copy").glob("*.parquet"))[0]
    before = first_file.stat().st_mtime_ns
    assert describe(run, models[0], "copy", progress=False) == {"described": 12}  # a rerun resumes: no work
    assert first_file.stat().st_mtime_ns == before


def test_ray_gives_the_same_descriptors(tmp_path, models, ray_local):
    local, remote = run_of(tmp_path / "a"), run_of(tmp_path / "b")
    describe(local, models[0], "copy", progress=False)
    describe(remote, models[0], "copy", runner="ray", progress=False)
    assert np.allclose(load_embeddings(local, "copy").vectors, load_embeddings(remote, "copy").vectors, atol=1e-6)


def test_another_model_recomputes_and_makes_neardup_stale(tmp_path, models):
    run = run_of(tmp_path)
    describe(run, models[0], "copy", progress=False)
    first = load_embeddings(run, "copy").vectors
    NearDup(threshold=0.99).apply(run)
    assert status(run)["neardup"] == "current"
    describe(run, models[1], "copy", progress=False)
    assert not np.allclose(load_embeddings(run, "copy").vectors, first)
    assert status(run)["neardup"] == "stale" and status(run)["embed_copy"] == "current"


def test_a_neardup_on_a_run_with_only_descriptors(tmp_path, models):
    run = run_of(tmp_path)
    describe(run, models[0], "copy", progress=False)
    counts = NearDup(threshold=1.0).apply(run)  # clean_shard's images are distinct
    assert counts["scored"] == 12


@pytest.mark.parametrize("name", ["image", "Copy", "../x", "a b"])
def test_bad_set_names_are_refused(tmp_path, models, name):
    with pytest.raises(UsageError, match="cannot name a descriptor set"):
        describe(run_of(tmp_path), models[0], name, progress=False)


def test_the_cli_reports_a_missing_model_in_one_line(tmp_path, capsys):
    run = run_of(tmp_path)
    assert main(["embed", str(run.path), "--model", str(tmp_path / "nope"), "--as", "copy"]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and err.count("\n") == 1

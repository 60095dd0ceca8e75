"""The embedding stage on real tiny open_clip models, on both runners."""

import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.catalogs import connect
from curate.cli.main import main
from curate.errors import UsageError
from curate.models import ModelSpec
from curate.models.encode import encode_batch, image_to_pixels
from curate.models.loading import load_model
from curate.rundir import RunDir
from curate.stages.embed import embed
from curate.stages.ingest import ingest
from tests.shards import clean_shard, image_bytes, image_parquet, sample_members, write_tar

TINY = ModelSpec(random_weights=True)


@pytest.fixture
def pool(tmp_path):
    clean_shard(tmp_path / "a.tar", 5)
    write_tar(tmp_path / "b.tar", sample_members("p", image=image_bytes(fmt="PNG"), ext="png", meta={})
              + sample_members("dup", meta={"uid": "ab" * 16}) + sample_members("dup2", meta={"uid": "ab" * 16})
              + sample_members("bad", caption="", meta={}))
    write_tar(tmp_path / "c.tar", sample_members("only-bad", image=b"junk"))
    image_parquet(tmp_path / "d.parquet", 3)
    return tmp_path


def _embeddings(run: RunDir) -> dict:
    rows = connect(run).execute("SELECT uid, image_embedding, text_embedding FROM embeddings").fetchall()
    return {uid: (np.array(i), np.array(t)) for uid, i, t in rows}


def test_every_accepted_sample_gets_normalized_embeddings(pool, tmp_path):
    run = RunDir(tmp_path / "run")
    ingest([str(pool / "*.tar"), str(pool / "d.parquet")], run, progress=False)
    assert embed(run, TINY, batch_size=4, progress=False) == {"embedded": 10}
    con = connect(run)
    samples = {u for (u,) in con.execute("SELECT uid FROM samples").fetchall()}
    got = _embeddings(run)
    assert set(got) == samples and len(samples) == 10  # the duplicate uid is embedded once
    assert con.execute("SELECT typeof(image_embedding) FROM embeddings LIMIT 1").fetchone() == ("FLOAT[128]",)
    for image, text in got.values():
        assert abs(np.linalg.norm(image) - 1) < 1e-5 and abs(np.linalg.norm(text) - 1) < 1e-5
    # the stage's numbers are the model's numbers for the same bytes and caption
    uid, caption = con.execute("SELECT uid, caption FROM samples WHERE key = '000000002'").fetchone()
    loaded = load_model(TINY, "cpu")
    pixels = image_to_pixels(image_bytes((2 * 37 % 256, 90, 10)), loaded.image_size)[None]
    image, text = encode_batch(loaded, pixels, [caption])
    np.testing.assert_allclose(got[uid][0], image[0], atol=1e-5)
    np.testing.assert_allclose(got[uid][1], text[0], atol=1e-5)
    assert pq.read_table(run.path / "embeddings" / "c.parquet").num_rows == 0

    half = RunDir(tmp_path / "half")  # float16: the same vectors within float16's precision, read as float32
    ingest([str(pool / "*.tar"), str(pool / "d.parquet")], half, progress=False)
    assert embed(half, TINY, batch_size=4, dtype="float16", progress=False) == {"embedded": 10}
    stored = pq.read_schema(half.path / "embeddings" / "a.parquet").field("image_embedding").type
    assert stored.value_type == pa.float16() and stored.list_size == 128
    halves = _embeddings(half)
    assert all(np.abs(halves[u][0] - got[u][0]).max() < 1e-3 for u in got)
    with pytest.raises(UsageError, match="unknown --dtype 'int8'"):
        embed(half, TINY, dtype="int8")


def test_ray_and_local_give_the_same_embeddings(pool, tmp_path, ray_local, recwarn):
    local, on_ray = RunDir(tmp_path / "local"), RunDir(tmp_path / "ray")
    for run in (local, on_ray):
        ingest([str(pool / "*.tar")], run, progress=False)
    embed(local, TINY, batch_size=3, progress=False)
    embed(on_ray, TINY, "ray", batch_size=3)
    assert not [w for w in recwarn if type(w.message).__name__ == "RayDeprecationWarning"]  # no ray_remote_args
    a, b = _embeddings(local), _embeddings(on_ray)
    assert set(a) == set(b)
    for uid in a:
        np.testing.assert_allclose(a[uid][0], b[uid][0], atol=1e-5)
    for path in (local.path / "embeddings").glob("*.parquet"):
        assert pq.read_table(path)["uid"].equals(pq.read_table(on_ray.path / "embeddings" / path.name)["uid"])


def test_rerun_resumes_and_another_model_is_refused(pool, tmp_path):
    run = RunDir(tmp_path / "run")
    ingest([str(pool / "a.tar")], run, progress=False)
    embed(run, TINY, progress=False)
    assert embed(run, TINY, progress=False) == {"embedded": 5}
    assert run.manifest()["stages"]["embed"]["shards_run"] == 0
    with pytest.raises(UsageError, match="already holds the embed stage"):
        embed(run, ModelSpec("ViT-B-32", random_weights=True), progress=False)


def test_embedding_needs_an_ingested_run(tmp_path):
    with pytest.raises(UsageError, match="no completed ingest stage"):
        embed(RunDir(tmp_path / "nothing"), TINY)


def tiny_folder(folder):
    """Returns `folder`: the tiny model with its random weights saved as an open_clip model folder."""
    import open_clip

    from curate.models.train import save_model_folder

    model = load_model(TINY, "cpu").model
    return save_model_folder(model, open_clip.get_model_config("curate-tiny"), model.visual.preprocess_cfg, folder)


BROKEN_FOLDERS = {  # what breaks a model folder -> what the error says
    lambda d: (d / "open_clip_model.safetensors").unlink(): "it has no weights file",
    lambda d: (d / "open_clip_model.safetensors").write_bytes(b"junk"): "its weights do not read",
    lambda d: (d / "open_clip_config.json").write_text("{not json"): "open_clip_config.json does not read as JSON",
    lambda d: (d / "open_clip_config.json").write_text("{}"): "has no model_cfg with vision_cfg and embed_dim",
}


def test_a_broken_model_folder_is_refused_before_the_stage_is_recorded(pool, tmp_path, capsys):
    run = RunDir(tmp_path / "run")
    ingest([str(pool / "a.tar")], run, progress=False)
    good = tiny_folder(tmp_path / "good")
    for i, (break_folder, message) in enumerate(BROKEN_FOLDERS.items()):
        broken = shutil.copytree(good, tmp_path / f"broken{i}")
        break_folder(broken)
        capsys.readouterr()
        assert main(["embed", str(run.path), "--model", str(broken)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err and "network" not in err, err
        assert list(run.manifest()["stages"]) == ["ingest"] and not (run.path / "embeddings").exists()
    assert main(["embed", str(run.path), "--model", str(good)]) == 0  # the right model is not locked out

"""Embed: L2-normalized CLIP image and text embeddings of every accepted sample, written to embeddings/.

Two parts, so Ray can run them on different workers: `prepare` (CPU: re-read and decode the shard's images
to uint8 pixels) and `embed_batch` (the model, on a GPU when there is one). The local runner calls both in turn.
"""

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from curate.catalogs import build_catalog, connect
from curate.errors import UsageError
from curate.io.inputs import ShardTask
from curate.io.readers import ShardOutput
from curate.io.samples import ReadOptions
from curate.io.schema import embeddings_schema
from curate.io.sources import SourceImages
from curate.models.encode import encode_batch, image_to_pixels
from curate.models.loading import FOLDER_CONFIG, ModelSpec, load_model, resolve_model
from curate.rundir import RunDir
from curate.runners import run_shard_job
from curate.stages.common import check_stage_config, record_stage, require_stage, shard_samples

PREPARED_COLUMNS = ["row", "uid", "caption", "pixels"]


@dataclass
class EmbedJob:
    """The shard job that embeds one shard's samples with one CLIP model."""

    run_path: str
    spec: ModelSpec
    image_size: int
    read_options: ReadOptions = field(default_factory=ReadOptions)
    batch_size: int = 256
    device: str = "auto"
    name: str = "embed"

    def __post_init__(self):
        self._loaded = None

    def setup(self) -> None:
        """Loads the model once per worker."""
        self._loaded = load_model(self.spec, self.device)

    def expected_rows(self, task: ShardTask) -> int:
        """Returns how many embeddings the shard will have."""
        return shard_samples(RunDir(self.run_path), task.shard_id, ["uid"]).num_rows

    def prepare(self, task: ShardTask) -> pa.Table:
        """Returns the shard's samples as rows of (shard_id, row, uid, caption, uint8 pixels): the CPU part."""
        samples = shard_samples(RunDir(self.run_path), task.shard_id)
        sources = SourceImages(self.read_options)
        try:
            images = sources.attach(samples).column("image").to_pylist() if samples.num_rows else []
        finally:
            sources.close()
        size = self.image_size
        pixels = np.stack([image_to_pixels(b, size) for b in images]) if images else np.zeros((0, size, size, 3))
        flat = pa.array(pixels.astype(np.uint8).reshape(-1), pa.uint8())
        return pa.table({
            "shard_id": pa.array([task.shard_id] * samples.num_rows, pa.string()),
            "row": pa.array(range(samples.num_rows), pa.int64()),
            "uid": samples["uid"],
            "caption": samples["caption"],
            "pixels": pa.FixedSizeListArray.from_arrays(flat, size * size * 3),
        })

    def embed_batch(self, batch: pa.Table) -> pa.Table:
        """Returns shard_id, row, uid and the two embeddings of a prepared batch: the model part."""
        size = self.image_size
        pixels = batch["pixels"].combine_chunks().values.to_numpy().reshape(-1, size, size, 3)
        image, text = encode_batch(self._loaded, pixels, batch["caption"].to_pylist())
        dim = image.shape[1]
        return pa.table({
            "shard_id": batch["shard_id"], "row": batch["row"], "uid": batch["uid"],
            "image_embedding": pa.FixedSizeListArray.from_arrays(pa.array(image.reshape(-1)), dim),
            "text_embedding": pa.FixedSizeListArray.from_arrays(pa.array(text.reshape(-1)), dim),
        })

    def finish(self, task: ShardTask, embedded: pa.Table) -> ShardOutput:
        """Returns the shard's embeddings table, in the samples' order, as the job's output."""
        embedded = embedded.sort_by("row")
        dim = model_embed_dim(self.spec)
        table = embedded.select(["uid", "image_embedding", "text_embedding"]).cast(embeddings_schema(dim))
        return ShardOutput({"embeddings": table}, {"embedded": table.num_rows})

    def process(self, task: ShardTask) -> ShardOutput:
        """Prepares, embeds in batches and finishes one shard in this process."""
        prepared = self.prepare(task)
        parts = [self.embed_batch(prepared.slice(i, self.batch_size))
                 for i in range(0, prepared.num_rows, self.batch_size)]
        return self.finish(task, pa.concat_tables(parts) if parts else _empty_embedded(model_embed_dim(self.spec)))


def _empty_embedded(dim: int) -> pa.Table:
    schema = embeddings_schema(dim)
    return pa.schema([("shard_id", pa.string()), ("row", pa.int64()), *schema]).empty_table()


def _model_config(spec: ModelSpec) -> dict:
    import open_clip

    name, _ = resolve_model(spec)
    if name.startswith("local-dir:"):
        return json.loads((Path(name.removeprefix("local-dir:")) / FOLDER_CONFIG).read_text())["model_cfg"]
    if name.startswith("hf-hub:"):
        from open_clip.factory import _get_hf_config

        return _get_hf_config(name.removeprefix("hf-hub:"))["model_cfg"]
    return open_clip.get_model_config(name)


def model_image_size(spec: ModelSpec) -> int:
    """Returns the input size the model's config declares, without building the model."""
    size = _model_config(spec)["vision_cfg"].get("image_size", 224)
    return size if isinstance(size, int) else size[0]


def model_embed_dim(spec: ModelSpec) -> int:
    """Returns the embedding width the model's config declares."""
    return int(_model_config(spec)["embed_dim"])


def embed_config(spec: ModelSpec) -> dict:
    """Returns the part of the embed config that decides the embeddings (what a resume must match)."""
    return dict(model=asdict(spec))


def embed(
    run: RunDir, spec: ModelSpec, runner: str = "local", batch_size: int = 256, device: str = "auto", **runner_options
) -> dict:
    """Embeds every accepted sample of an ingested run, resuming where an earlier attempt stopped; returns counts."""
    ingest_entry = require_stage(run, "ingest", "run `curate ingest` first")
    if _has_metadata_only_samples(run):
        raise UsageError("this run holds DataComp metadata without images: its embeddings came from the .npz files")
    config = embed_config(spec)
    check_stage_config(run, "embed", config)
    options = ReadOptions(**ingest_entry["config"]["options"])
    job = EmbedJob(str(run.path), spec, model_image_size(spec), options, batch_size, device)
    tasks = [ShardTask(m["shard_id"], m["shard"], m["kind"]) for m in run.markers("ingest")]
    ran = run_shard_job(job, tasks, run, runner, **runner_options)
    build_catalog(run)
    embedded = sum(m["embedded"] for m in run.markers("embed"))
    record_stage(run, "embed", config, counts=dict(embedded=embedded), shards_run=ran,
                 dim=model_embed_dim(spec), image_size=job.image_size)
    return dict(embedded=embedded)


def _has_metadata_only_samples(run: RunDir) -> bool:
    con = connect(run)
    try:
        return con.execute("SELECT count(*) FROM samples WHERE image_offset IS NULL").fetchone()[0] > 0
    finally:
        con.close()

"""Embed: L2-normalized CLIP image and text embeddings of every accepted sample, written to embeddings/.

A model job in two parts, so Ray can run them on different workers: `prepare` (CPU: re-read and decode the
shard's images to uint8 pixels) and `run_batch` (the model, on a GPU when there is one). The local runner calls
both in turn.
"""

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import pyarrow as pa

from curate.catalogs import connect
from curate.errors import UsageError
from curate.graph import StageRun, require_current
from curate.io.inputs import ShardTask
from curate.io.readers import ShardOutput
from curate.io.samples import ReadOptions
from curate.io.schema import EMBEDDING_DTYPES, embeddings_schema
from curate.io.sources import SourceImages
from curate.models.encode import encode_batch, image_to_pixels
from curate.models.loading import ModelSpec, config_of, load_model, pick_device
from curate.rundir import RunDir
from curate.runners import ModelJob, Resources, Runner, as_runner, run_shard_job
from curate.stages.samples import shard_samples
from curate.stages.step import stage_step


class ShardImageJob(ModelJob):
    """A model job over each shard's decoded images: subclasses have run_path, read_options, image_size and
    batch_size, and `decode(bytes, size) -> uint8 pixels` says how an image becomes the model's square input."""

    decode = staticmethod(image_to_pixels)
    _loaded = None  # the model, once loaded in this process; never sent to workers elsewhere

    def load(self, device: str):
        """Returns the job's model loaded on `device` (subclasses say which model)."""
        raise NotImplementedError

    def keep_loaded(self, loaded) -> None:
        """Keeps `loaded`, the job's model already loaded on the CPU (to check it before the stage is recorded), for
        setup() in this process when the job runs on the CPU, so it is not loaded twice; returns nothing."""
        self._loaded = loaded if pick_device(self.device) == "cpu" else None

    def setup(self) -> None:
        """Loads the model once per worker, unless this process kept one."""
        if self._loaded is None:
            self._loaded = self.load(self.device)

    def __getstate__(self) -> dict:
        """Returns the job's fields without a loaded model: workers elsewhere load their own."""
        return self.__dict__ | {"_loaded": None}

    @property
    def resources(self) -> Resources:
        """One CPU, or a GPU where the cluster has them, and batch_size images per model call."""
        return Resources(cpus=1, gpus=1, batch_size=self.batch_size)

    def expected_rows(self, task: ShardTask) -> int:
        """Returns how many rows the shard will have: its accepted samples."""
        return shard_samples(RunDir(self.run_path), task.shard_id, ["uid"]).num_rows

    def prepare(self, task: ShardTask) -> pa.Table:
        """Returns the shard's samples as rows of (shard_id, row, uid, caption, uint8 pixels): the CPU part."""
        return shard_pixels(self.run_path, self.read_options, task.shard_id, self.image_size, self.decode)

    def batch_pixels(self, batch: pa.Table) -> np.ndarray:
        """Returns a prepared batch's images as uint8 N x S x S x 3 pixels."""
        size = self.image_size
        return batch["pixels"].combine_chunks().values.to_numpy().reshape(-1, size, size, 3)


@dataclass
class EmbedJob(ShardImageJob):
    """The model job that embeds one shard's samples with one CLIP model."""

    run_path: str
    spec: ModelSpec
    image_size: int
    embed_dim: int
    read_options: ReadOptions = field(default_factory=ReadOptions)
    batch_size: int = 256
    device: str = "auto"
    dtype: str = "float32"
    name: str = "embed"

    def load(self, device: str):
        """Returns the CLIP model loaded on `device`."""
        return load_model(self.spec, device)

    def check(self) -> None:
        """Loads the model once on the CPU before the stage is recorded, so a model that does not load is a one-line
        error there, not one in every worker; returns nothing."""
        self.keep_loaded(self.load("cpu"))

    def run_batch(self, batch: pa.Table) -> pa.Table:
        """Returns shard_id, row, uid and the two embeddings of a prepared batch: the model part."""
        pixels = self.batch_pixels(batch)
        image, text = encode_batch(self._loaded, pixels, batch["caption"].to_pylist())
        dim = image.shape[1]
        return pa.table({
            "shard_id": batch["shard_id"], "row": batch["row"], "uid": batch["uid"],
            "image_embedding": pa.FixedSizeListArray.from_arrays(pa.array(image.reshape(-1)), dim),
            "text_embedding": pa.FixedSizeListArray.from_arrays(pa.array(text.reshape(-1)), dim),
        })

    def finish(self, task: ShardTask, parts: list[pa.Table]) -> ShardOutput:
        """Returns the shard's embeddings table, in the samples' order, as the job's output."""
        schema = embeddings_schema(self.embed_dim, self.dtype)
        if not parts:
            return ShardOutput({"embeddings": schema.empty_table()}, {"embedded": 0})
        embedded = pa.concat_tables(parts).sort_by("row")
        table = embedded.select(["uid", "image_embedding", "text_embedding"]).cast(schema)
        return ShardOutput({"embeddings": table}, {"embedded": table.num_rows})


def shard_pixels(run_path: str, options: ReadOptions, shard_id: str, size: int,
                 decode: Callable[[bytes, int], np.ndarray]) -> pa.Table:
    """Returns a shard's accepted samples as rows of (shard_id, row, uid, caption, uint8 size x size x 3 pixels
    flattened), each image decoded by `decode(bytes, size)`: the CPU part of a model job over a shard."""
    samples = shard_samples(RunDir(run_path), shard_id)
    sources = SourceImages(options)
    try:
        images = sources.attach(samples).column("image").to_pylist() if samples.num_rows else []
    finally:
        sources.close()
    pixels = np.stack([decode(b, size) for b in images]) if images else np.zeros((0, size, size, 3))
    flat = pa.array(pixels.astype(np.uint8).reshape(-1), pa.uint8())
    return pa.table({
        "shard_id": pa.array([shard_id] * samples.num_rows, pa.string()),
        "row": pa.array(range(samples.num_rows), pa.int64()),
        "uid": samples["uid"],
        "caption": samples["caption"],
        "pixels": pa.FixedSizeListArray.from_arrays(flat, size * size * 3),
    })


def embed_config(spec: ModelSpec, dtype: str = "float32") -> dict:
    """Returns the part of the embed config that decides the embeddings (what a resume must match); the dtype only
    when it is not float32, so runs embedded before the option resume."""
    return dict(model=asdict(spec)) | ({} if dtype == "float32" else dict(dtype=dtype))


def embed(
    run: RunDir, spec: ModelSpec, runner: str | Runner = "local", batch_size: int = 256, device: str = "auto",
    dtype: str = "float32", **runner_options,
) -> dict:
    """Embeds every accepted sample of an ingested run, stored as `dtype` (float32 or float16), resuming where an
    earlier attempt stopped; returns counts. Raises UsageError for another dtype."""
    runner = as_runner(runner, **runner_options)
    if dtype not in EMBEDDING_DTYPES:
        raise UsageError(f"unknown --dtype {dtype!r}; choose one of {', '.join(EMBEDDING_DTYPES)}")
    ingest_entry = require_current(run, "ingest")
    if _has_metadata_only_samples(run):
        raise UsageError("this run holds DataComp metadata without images: its embeddings came from the .npz files")
    shape = config_of(spec)
    options = ReadOptions(**ingest_entry["config"]["options"])
    job = EmbedJob(str(run.path), spec, shape.image_size, shape.embed_dim, options, batch_size, device, dtype)
    step = StageRun("embed", embed_config(spec, dtype), ("ingest",), refuse_changes=True,
                    hint="curate embed RUN --model MODEL")
    with stage_step(run, step, job.check) as (record, _):
        tasks = [ShardTask(m["shard_id"], m["shard"], m["kind"]) for m in run.markers("ingest")]
        ran = run_shard_job(job, tasks, run, runner)
        embedded = sum(m["embedded"] for m in run.markers("embed"))
        record.update(counts=dict(embedded=embedded), shards_run=ran, dim=shape.embed_dim, image_size=shape.image_size)
    return dict(embedded=embedded)


def _has_metadata_only_samples(run: RunDir) -> bool:
    con = connect(run)
    try:
        return con.execute("SELECT count(*) FROM samples WHERE image_offset IS NULL").fetchone()[0] > 0
    finally:
        con.close()

"""Describe: copy-detection descriptors of every accepted sample (`curate embed RUN --model DIR --as NAME`),
written beside the CLIP embeddings to descriptors/<NAME>/<shard>.parquet (uid, descriptor: unit float32 vectors).

The same two-part model job as embed (a CPU part decoding the shard's images, a model part on a GPU when there is
one), with the whole image resized to the descriptor's square input (nothing cropped: a copy may differ from its
source at the borders). The stage is embed_<NAME>; its config records the model and a hash of its weights, so
a retrained or different model recomputes the descriptors and makes the stages that read them (neardup,
decontam) stale. A TorchScript model loads only with trust_torchscript (--trust-torchscript), a permission of
this call that is not recorded: it leaves the stage's version alone, and decontaminate needs it again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from curate.errors import UsageError
from curate.graph import StageRun, require_current
from curate.io.inputs import ShardTask
from curate.io.readers import ShardOutput
from curate.io.samples import ReadOptions
from curate.models.encode import square_pixels
from curate.rundir import RunDir
from curate.runners import Runner, as_runner, run_shard_job
from curate.stages.embed import ShardImageJob
from curate.stages.embeddings import DESCRIPTOR_NAME, DESCRIPTORS, EMBEDDING_COLUMNS, descriptor_stage_name
from curate.stages.step import stage_step


def _whole_image(data: bytes, size: int) -> np.ndarray:
    return square_pixels(data, size)[0]


@dataclass
class DescribeJob(ShardImageJob):
    """The model job that computes one shard's copy descriptors with one descriptor model, on the whole images
    resized to its square input."""

    decode = staticmethod(_whole_image)

    run_path: str
    model: str
    set_name: str
    image_size: int
    dim: int
    read_options: ReadOptions = field(default_factory=ReadOptions)
    batch_size: int = 256
    device: str = "auto"
    trust_torchscript: bool = False

    @property
    def name(self) -> str:
        """Returns the stage's name, embed_<set>: its completion markers' folder."""
        return descriptor_stage_name(self.set_name)

    def load(self, device: str):
        """Returns the descriptor loaded on `device`."""
        from curate.copydetect.model import load_descriptor

        return load_descriptor(self.model, device, self.image_size, self.trust_torchscript)

    def run_batch(self, batch: pa.Table) -> pa.Table:
        """Returns shard_id, row, uid and the descriptor of a prepared batch: the model part."""
        from curate.copydetect.model import describe_pixels

        vectors = describe_pixels(self._loaded, self.batch_pixels(batch), self.batch_size)
        return pa.table({"shard_id": batch["shard_id"], "row": batch["row"], "uid": batch["uid"],
                         "descriptor": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), self.dim)})

    def finish(self, task: ShardTask, parts: list[pa.Table]) -> ShardOutput:
        """Returns the shard's descriptors, in the samples' order, as the job's output."""
        schema = pa.schema([("uid", pa.string()), ("descriptor", pa.list_(pa.float32(), self.dim))])
        table = pa.concat_tables(parts).sort_by("row").select(["uid", "descriptor"]).cast(schema) if parts \
            else schema.empty_table()
        return ShardOutput({f"{DESCRIPTORS}/{self.set_name}": table}, {"described": table.num_rows})


def check_set_name(name: str) -> None:
    """Raises UsageError unless `name` can name a descriptor set (a short lowercase identifier, not image/text)."""
    if not DESCRIPTOR_NAME.fullmatch(name) or name in EMBEDDING_COLUMNS:
        raise UsageError(f"--as {name!r} cannot name a descriptor set; use a short lowercase name such as copy "
                         "(letters, digits, _; not image or text)")


def describe(run: RunDir, model: str, name: str = "copy", runner: str | Runner = "local", batch_size: int = 256,
             device: str = "auto", image_size: int | None = None, trust_torchscript: bool = False,
             **runner_options) -> dict:
    """Computes descriptor set `name` of every accepted sample with the copy-descriptor model at `model` (a
    TorchScript file only with `trust_torchscript`), resuming where an earlier attempt stopped; returns the
    counts."""
    from curate.copydetect.model import descriptor_fingerprint, load_descriptor

    check_set_name(name)
    ingest_entry = require_current(run, "ingest")
    loaded = load_descriptor(model, "cpu", image_size, trust_torchscript)  # a one-line error now, not per worker
    path = str(Path(model).resolve())
    config = dict(model=path, fingerprint=descriptor_fingerprint(path), image_size=loaded.image_size,
                  dim=loaded.dim)
    job = DescribeJob(str(run.path), path, name, loaded.image_size, loaded.dim,
                      ReadOptions(**ingest_entry["config"]["options"]), batch_size, device, trust_torchscript)
    job.keep_loaded(loaded)
    step = StageRun(job.name, config, ("ingest",), hint=f"curate embed RUN --model MODEL --as {name}")
    runner = as_runner(runner, **runner_options)
    with stage_step(run, step) as (record, _):
        tasks = [ShardTask(m["shard_id"], m["shard"], m["kind"]) for m in run.markers("ingest")]
        ran = run_shard_job(job, tasks, run, runner)
        described = sum(m["described"] for m in run.markers(job.name))
        record.update(counts=dict(described=described), shards_run=ran)
    return dict(described=described)

"""The methods compared by copy_detection.py: each gives every image of a task a signature, and says which
similarity thresholds to sweep. Signatures are unit float32 rows (compared by cosine) or uint64 64-bit hashes
(compared as 1 - Hamming / 64), as copy_detection_tasks.similarities reads them.

Adding a method is one function `name(task, context) -> Signatures` and one line in METHODS.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import numpy as np
from copy_detection_tasks import Task
from near_dup_separability import pixel_embeddings
from PIL import Image

COSINE_GRID = (0.8, 0.85, 0.9, 0.92, 0.94, 0.95, 0.96, 0.97, 0.98, 0.985, 0.99, 0.995, 0.998, 0.999, 0.9995)
# the tiny CLIP's embeddings sit close together (distinct renderings of one concept at cosine 0.99+)
CLIP_GRID = (0.99, 0.995, 0.998, 0.999, 0.9995, 0.9998, 0.9999, 0.99995, 0.99998, 0.99999)
# a trained copy descriptor spreads distinct images out (cosine near 0) and keeps copies high, but not at 0.99
COPY_GRID = (0.3, 0.4, 0.5, 0.55, 0.6, 0.62, 0.64, 0.65, 0.66, 0.67, 0.68, 0.69, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95,
             0.98)
HAMMING_GRID = tuple(1 - d / 64 for d in range(0, 17, 2))  # pHash-64 at Hamming distance 0, 2, ..., 16
PIXEL_SIDE = 16
BATCH = 256


@dataclass
class Context:
    """What methods may need besides the task: the synth pool folder (its hq/ trains models) and a work dir."""

    synth: Path
    work: Path


@dataclass
class Signatures:
    """One signature per task image (N x d unit float32, or N uint64 hashes) and the thresholds to sweep."""

    data: np.ndarray
    thresholds: tuple[float, ...]
    score_norm: bool = False  # pairs compared on SSCD's one-sided normalized score (curate.copydetect.scorenorm)


def phash_signatures(task: Task, context: Context) -> Signatures:
    """Returns pHash-64 (imagehash.phash: 8 x 8 low DCT frequencies of a 32 x 32 grey image vs their median)."""
    import imagehash

    bits = np.empty((len(task.images), 64), dtype=bool)
    for i, jpg in enumerate(task.images):
        with Image.open(io.BytesIO(jpg)) as image:
            bits[i] = imagehash.phash(image.convert("RGB")).hash.ravel()
    return Signatures(np.packbits(bits, axis=1).view(">u8")[:, 0].astype(np.uint64), HAMMING_GRID)


def pixel_signatures(task: Task, context: Context) -> Signatures:
    """Returns raw-pixel rows: PIXEL_SIDE px box-downsampled, mean-centred, unit norm (as near_dup_separability)."""
    return Signatures(pixel_embeddings(task.images, PIXEL_SIDE), COSINE_GRID)


def tiny_dfn(context: Context) -> Path:
    """Returns the folder of the tiny DFN/CLIP trained from scratch on synth/hq, as common.dfn_scored_run trains
    it (train_dfn, seed 0), into work/dfn the first time."""
    import shutil

    from curate.stages.training import train_dfn

    model_dir = context.work / "dfn"
    if not (model_dir / "open_clip_config.json").exists():
        shutil.rmtree(model_dir, ignore_errors=True)
        train_dfn([str(context.synth / "hq")], model_dir, seed=0, progress=False)
    return model_dir


def tiny_clip_signatures(task: Task, context: Context) -> Signatures:
    """Returns the L2-normalized image embeddings of the tiny DFN/CLIP (tiny_dfn), the embeddings SemDeDup uses
    today, encoded as curate embed does (curate.models.encode: resize, centre crop, normalize)."""
    import torch

    from curate.models import ModelSpec, load_model
    from curate.models.encode import image_to_pixels, pixels_to_tensor

    model_dir = tiny_dfn(context)
    loaded = load_model(ModelSpec(model=str(model_dir)), device="cpu")
    rows = []
    for start in range(0, len(task.images), BATCH):
        pixels = np.stack([image_to_pixels(jpg, loaded.image_size) for jpg in task.images[start:start + BATCH]])
        with torch.inference_mode():
            image = loaded.model.encode_image(pixels_to_tensor(pixels, loaded.mean, loaded.std, "cpu"), normalize=True)
        rows.append(image.float().numpy())
    x = np.concatenate(rows)
    return Signatures((x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), CLIP_GRID)


COPY_EPOCHS, COPY_MAX_IMAGES = 10, 4000


def task_run(task: Task, folder: Path) -> Path:
    """Returns an ingested run of the task's images (one WebDataset tar, key = the pool index, a placeholder caption),
    made under `folder` the first time."""
    import tarfile

    from curate.cli.main import main as curate

    run = folder / "run"
    if not (run / "manifest.json").exists():
        folder.mkdir(parents=True, exist_ok=True)
        with tarfile.open(folder / "images.tar", "w") as tar:
            for i, jpg in enumerate(task.images):
                for suffix, data in (("jpg", jpg), ("txt", f"image {i}".encode())):
                    member = tarfile.TarInfo(f"{i:07d}.{suffix}")
                    member.size = len(data)
                    tar.addfile(member, io.BytesIO(data))
        assert curate(["ingest", str(folder / "images.tar"), "--run", str(run)]) == 0
    return run


def copy_signatures(task: Task, context: Context) -> Signatures:
    """Returns the copy descriptors of the task's images by the product's path: `curate train-copy-detector` on the
    task's own images (self-supervised: no truth read; COPY_EPOCHS epochs on at most COPY_MAX_IMAGES of them),
    then `curate embed --as copy`, read back from descriptors/copy/ in task order."""
    import pyarrow.parquet as pq

    from curate.catalogs import connect
    from curate.cli.main import main as curate
    from curate.rundir import RunDir

    folder = context.work / f"copy-{task.name}-{len(task.images)}"
    run = task_run(task, folder)
    model = folder / "model"
    assert curate(["train-copy-detector", str(run), "--out", str(model), "--epochs", str(COPY_EPOCHS),
                   "--max-images", str(COPY_MAX_IMAGES)]) == 0
    assert curate(["embed", str(run), "--model", str(model), "--as", "copy"]) == 0
    con = connect(RunDir(run))
    try:
        position = {uid: int(key) for uid, key in con.execute("SELECT uid, key FROM samples").fetchall()}
    finally:
        con.close()
    table = pq.read_table(run / "descriptors" / "copy")
    vectors = table["descriptor"].combine_chunks().values.to_numpy().reshape(table.num_rows, -1)
    out = np.zeros_like(vectors)
    out[[position[u] for u in table["uid"].to_pylist()]] = vectors
    return Signatures(out.astype(np.float32), COPY_GRID)


def normalized_copy_signatures(task: Task, context: Context) -> Signatures:
    """Returns copy_signatures' descriptors, compared as `curate filter neardup --score-norm pool` does."""
    from dataclasses import replace

    return replace(copy_signatures(task, context), score_norm=True)


# name -> method. Methods run in this order.
METHODS: dict[str, Callable[[Task, Context], Signatures]] = {
    "phash": phash_signatures,
    "pixels": pixel_signatures,
    "tiny-clip": tiny_clip_signatures,
    "copy": copy_signatures,
    "copy-norm": normalized_copy_signatures,
}

"""Builders of real shards for tests: tars with chosen member order, Parquet image shards, bad images."""

import io
import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image


def image_bytes(color=(200, 30, 30), size=(48, 40), fmt="JPEG") -> bytes:
    """Returns an encoded image of one colour with a gradient, so different colours give different bytes."""
    array = np.zeros((size[1], size[0], 3), np.uint8)
    array[:] = color
    array[:, :, 2] = np.linspace(0, 255, size[0], dtype=np.uint8)[None, :]
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, fmt)
    return buffer.getvalue()


def sample_members(key: str, caption: str | bytes | None = "a red square", image: bytes | None = None,
                   meta: dict | None = None, ext: str = "jpg") -> list[tuple[str, bytes]]:
    """Returns the (member name, bytes) of one WebDataset sample; None leaves a member out."""
    members = []
    if image is not False:
        members.append((f"{key}.{ext}", image if image is not None else image_bytes()))
    if meta is not None:
        members.append((f"{key}.json", json.dumps(meta).encode()))
    if caption is not None:
        members.append((f"{key}.txt", caption if isinstance(caption, bytes) else caption.encode()))
    return members


def write_tar(path: Path, members: list[tuple[str, bytes]]) -> Path:
    """Writes the members in the given order as an uncompressed tar; returns the path."""
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def clean_shard(path: Path, n: int, start: int = 0) -> Path:
    """Writes a tar of n good img2dataset-style samples (jpg, json, txt); returns the path."""
    members = []
    for i in range(start, start + n):
        key = f"{i:09d}"
        meta = {"url": f"http://example.com/{i}.jpg", "key": key, "caption": f"sample {i}"}
        members += sample_members(key, f"sample {i}", image_bytes((i * 37 % 256, 90, 10)), meta)
    return write_tar(path, members)


def image_parquet(path: Path, n: int, image_column="jpg", caption_column="caption", hf_struct=False) -> Path:
    """Writes a Parquet image shard of n rows (key, url, caption and image columns); returns the path."""
    images = [image_bytes((10, i * 50 % 256, 200)) for i in range(n)]
    column = pa.array([{"bytes": b, "path": None} for b in images]) if hf_struct else pa.array(images, pa.binary())
    table = pa.table({
        "key": [f"k{i}" for i in range(n)], "url": [f"http://p/{i}" for i in range(n)],
        caption_column: [f"parquet caption {i}" for i in range(n)], image_column: column,
    })
    pq.write_table(table, path)
    return path


def datacomp_shard(folder: Path, image_embeddings: np.ndarray, name: str = "0000", seed: int = 0,
                   text_embeddings: np.ndarray | None = None) -> list[str]:
    """Writes a DataComp metadata shard (<name>.parquet, no images) and its <name>.npz (l14 and b32 embeddings,
    float16 as DataComp ships them); returns the uids in row order."""
    rng = np.random.default_rng(seed)
    n = len(image_embeddings)
    uids = [f"{rng.integers(2**63):016x}{i:016x}" for i in range(n)]
    pq.write_table(pa.table({
        "uid": uids, "url": [f"http://dc/{name}/{i}" for i in range(n)], "text": [f"text {i}" for i in range(n)],
        "original_width": [640] * n, "original_height": [480] * n,
        "clip_b32_similarity_score": rng.random(n).astype(np.float32),
        "clip_l14_similarity_score": rng.random(n).astype(np.float32),
        "face_bboxes": [[] for _ in range(n)], "sha256": ["ab" * 32] * n,
    }), folder / f"{name}.parquet")
    text = rng.normal(size=image_embeddings.shape) if text_embeddings is None else text_embeddings
    arrays = {"l14_img": image_embeddings, "l14_txt": text, "b32_img": image_embeddings, "b32_txt": text}
    np.savez(folder / f"{name}.npz", **{k: v.astype(np.float16) for k, v in arrays.items()})
    return uids


def ingested_synth_pool(folder: Path, samples: int, shard_size: int, heldout_classes: int | None = None):
    """Returns (RunDir, held-out Parquet path): a synth pool of `samples` (no hq/, one held-out image per concept,
    or per each of the first `heldout_classes` concepts) generated in `folder` and ingested into folder/run."""
    from curate.rundir import RunDir
    from curate.stages.ingest import ingest
    from curate.synth import generate_pool

    summary = generate_pool(folder, samples=samples, hq_samples=0, heldout_per_concept=1, shard_size=shard_size)
    run = RunDir(folder / "run")
    ingest([summary["pool"]], run, progress=False)
    heldout = folder / "heldout.parquet"
    if heldout_classes is not None:  # fewer classes: fewer prompts to encode, the same code path
        table = pq.read_table(heldout)
        pq.write_table(table.slice(0, heldout_classes), heldout)
    return run, heldout


def copy_run(run, to: Path):
    """Returns a copy of the run folder at `to`, for a test to change (the shards it read stay where they are): one
    run built once per module, copied by each test, instead of ingested (and embedded, described) again."""
    from curate.rundir import RunDir

    shutil.copytree(run.path, to)
    return RunDir(to)


def ingested_tars(folder: Path, shards: int, per_shard: int, embedded: bool = False):
    """Returns the RunDir folder/run of `shards` clean tars of `per_shard` samples each, ingested, and embedded with
    the tiny model's random weights when `embedded`."""
    from curate.models import ModelSpec
    from curate.rundir import RunDir
    from curate.stages.embed import embed
    from curate.stages.ingest import ingest

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(shards):
        clean_shard(folder / f"{i}.tar", per_shard, start=i * per_shard)
    run = RunDir(folder / "run")
    ingest([str(folder / "*.tar")], run, progress=False)
    if embedded:
        embed(run, ModelSpec(random_weights=True), progress=False)
    return run


def planted_embeddings(seed: int = 0) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Three concepts of 40 spread members each, then 6 exact and 6 near copies of chosen members."""
    rng = np.random.default_rng(seed)
    centers = 3 * np.eye(3, 32)
    x = np.concatenate([c + rng.normal(size=(40, 32)) for c in centers])
    originals = [0, 13, 41, 55, 90, 119, 5, 47, 60, 82, 100, 111]
    copies = [x[o] + (0 if i < 6 else 1e-3 * rng.normal(size=32)) for i, o in enumerate(originals)]
    pairs = [(o, 120 + i) for i, o in enumerate(originals)]
    return np.concatenate([x, copies]), pairs


def planted_datacomp_shards(folder: Path) -> tuple[list[str], list[tuple[int, int]]]:
    """Writes planted_embeddings as two DataComp shards in `folder`; returns (uids in row order, planted pairs)."""
    x, pairs = planted_embeddings()
    return datacomp_shard(folder, x[:70], name="0000", seed=1) + datacomp_shard(folder, x[70:], "0001", 2), pairs


def planted_datacomp_run(folder: Path):
    """Returns (RunDir folder/run, uids, planted pairs): the planted DataComp shards written and ingested."""
    from curate.rundir import RunDir
    from curate.stages.ingest import ingest

    uids, pairs = planted_datacomp_shards(folder)
    run = RunDir(folder / "run")
    ingest([str(folder / "*.parquet")], run, progress=False)
    return run, uids, pairs


def noise_heldout(path: Path, classnames: list[str], per_class: int, seed: int = 0) -> Path:
    """Writes a held-out Parquet file (jpg as PNG bytes, label) of `per_class` random 12 px images per class name,
    class by class; returns the path."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for name in classnames:
        for _ in range(per_class):
            buffer = io.BytesIO()
            Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(buffer, "PNG")
            images.append(buffer.getvalue())
            labels.append(name)
    pq.write_table(pa.table({"jpg": pa.array(images, pa.binary()), "label": labels}), path)
    return path


def vector_input_files(tmp_path, vectors, sizes, chosen):
    """Writes `vectors` as descriptor files of `sizes` rows (float16 in one of them), and a selection for each
    file from the mask `chosen`; returns the InputFiles and the selected rows of `vectors`."""
    from curate.stages.inputfiles import InputFile

    files, start = [], 0
    for f, size in enumerate(sizes):
        block = vectors[start:start + size].astype(np.float16 if f == 1 else np.float32)
        uids = pa.array([f"u{start + i}" for i in range(size)], pa.string())
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

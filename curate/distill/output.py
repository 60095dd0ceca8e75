"""A distilled set's files: its synthetic images as WebDataset shards of PNG, labels.parquet and distilled.json
(written in that order, each atomically, so distilled.json marks a finished set); and exporting a set."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from curate.distill.layout import IMAGES, LABELS, RELABEL, RESULT, distilled_sets, set_folder
from curate.errors import UsageError
from curate.outputs import staged_folder
from curate.rundir import RunDir, parquet_bytes
from curate.version import __version__

if TYPE_CHECKING:
    from curate.distill.source import LabelledImages
    from curate.distill.tesla import DistillResult

SHARD_SIZE = 1000
LABELS_SCHEMA = pa.schema([
    ("name", pa.string()), ("key", pa.string()), ("class", pa.int64()), ("classname", pa.string()),
    ("soft_label", pa.list_(pa.float32())), ("path", pa.string()), ("member", pa.string()),
])


def png_bytes(pixels: np.ndarray) -> bytes:
    """Returns uint8 H x W x 3 pixels encoded as PNG."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def tar_bytes(members: list[tuple[str, bytes]]) -> bytes:
    """Returns an uncompressed tar of the members in order, with the fixed headers of curate's webdataset export."""
    from curate.export.wds import member_header

    out = bytearray()
    for name, data in members:
        out += member_header(name, len(data)) + data + bytes(-len(data) % tarfile.BLOCKSIZE)
    end = 2 * tarfile.BLOCKSIZE
    return bytes(out + bytes(end + -(len(out) + end) % tarfile.RECORDSIZE))


def set_rows(name: str, data: LabelledImages, result: DistillResult) -> list[dict]:
    """Returns one row per synthetic image (LABELS_SCHEMA fields, `path` still unset) plus its `png` bytes, in
    class order: key f"{class:04d}_{index:04d}", index counting within the class."""
    pixels = data.to_pixels(result.images)
    soft = None if result.soft_labels is None else result.soft_labels.detach().cpu().float().numpy()
    seen: dict[int, int] = {}
    rows = []
    for i, cls in enumerate(result.labels.tolist()):
        index = seen[cls] = seen.get(cls, -1) + 1
        rows.append(dict(name=name, key=f"{cls:04d}_{index:04d}", **{"class": cls},
                         classname=data.classnames[cls], soft_label=None if soft is None else soft[i].tolist(),
                         png=png_bytes(pixels[i])))
    return rows


def sample_members(row: dict, soft_npy: bool = False) -> list[tuple[str, bytes]]:
    """Returns a synthetic image's webdataset members: .png, .cls (class index), .json (class name, soft label
    list when soft) and, with `soft_npy` and a soft label, .soft.npy (float32, np.save without pickle)."""
    meta = {"class": row["class"], "classname": row["classname"]}
    if row["soft_label"] is not None:
        meta["soft_label"] = row["soft_label"]
    members = [(f"{row['key']}.png", row["png"]), (f"{row['key']}.cls", str(row["class"]).encode()),
               (f"{row['key']}.json", json.dumps(meta, sort_keys=True).encode())]
    if soft_npy and row["soft_label"] is not None:
        buffer = io.BytesIO()
        np.save(buffer, np.asarray(row["soft_label"], np.float32), allow_pickle=False)
        members.append((f"{row['key']}.soft.npy", buffer.getvalue()))
    return members


def write_set(run: RunDir, folder: Path, name: str, data: LabelledImages, result: DistillResult, options: dict,
              source: dict) -> dict:
    """Writes the set's shards, labels.parquet and, last, distilled.json into `folder`, then rebuilds the run's
    catalog under its writer lock; returns the distilled.json contents."""
    from curate.catalogs import build_catalog

    out = RunDir(folder)
    rows = set_rows(name, data, result)
    for start in range(0, len(rows), SHARD_SIZE):
        shard = f"shards/{start // SHARD_SIZE:05d}.tar"
        part = rows[start:start + SHARD_SIZE]
        out.write_bytes(shard, tar_bytes([m for row in part for m in sample_members(row)]))
        for row in part:
            row.update(path=str((folder / shard).relative_to(run.path)), member=f"{row['key']}.png")
    table = pa.Table.from_pylist([{k: r[k] for k in LABELS_SCHEMA.names} for r in rows], schema=LABELS_SCHEMA)
    out.write_bytes(LABELS, parquet_bytes(table))
    out.write_bytes(IMAGES, exact_images_bytes(result))
    summary = dict(name=name, method=options["method"], ipc=options["ipc"], options=options, lr=result.lr,
                   images=len(rows), classnames=data.classnames, classes=len(data.classnames),
                   normalization={"mean": list(data.mean), "std": list(data.std)}, source=source,
                   seconds=result.seconds, iterations=len(result.losses),
                   first_loss=result.losses[0] if result.losses else None,
                   final_loss=result.losses[-1] if result.losses else None, warnings=result.warnings,
                   soft_labels=result.soft_labels is not None,
                   relabelled=(folder / RELABEL).exists(),
                   curate_version=__version__)
    out.write_json(RESULT, summary)
    with run.writing():
        build_catalog(run)
    return summary


def exact_images_bytes(result: DistillResult) -> bytes:
    """Returns the set's learned images as safetensors: `images` (float32 N x 3 x S x S, normalized as the experts
    saw them, unclipped: the PNGs clip them to [0, 255]), `labels` (int64) and, when soft, `soft_labels`."""
    from safetensors.torch import save

    tensors = {"images": result.images.detach().cpu().float().contiguous(), "labels": result.labels.cpu()}
    if result.soft_labels is not None:
        tensors["soft_labels"] = result.soft_labels.detach().cpu().float().contiguous()
    return save(tensors)


def read_set(run: RunDir, name: str) -> tuple[dict, list[dict]]:
    """Returns (distilled.json, rows with LABELS_SCHEMA fields and `png` bytes) of the finished set `name`; raises
    UsageError naming the sets that exist when there is no such finished set."""
    names = distilled_sets(run)
    if name not in names:
        raise UsageError(f"{run.path} has no distilled set {name!r}; distilled sets: {', '.join(names) or 'none'}")
    folder = set_folder(run, name)
    rows = pq.read_table(folder / LABELS).to_pylist()
    images: dict[str, bytes] = {}
    for shard in sorted({r["path"] for r in rows}):
        with tarfile.open(run.path / shard, mode="r|") as tar:
            for info in tar:
                if info.isfile() and info.name.endswith(".png"):
                    images[info.name] = tar.extractfile(info).read()
    return json.loads((folder / RESULT).read_text()), [r | {"png": images[r["member"]]} for r in rows]


DISTILLED_FORMATS = ("webdataset", "hf")


def export_distilled(run: RunDir, name: str, fmt: str, out: str | Path, overwrite: bool = False) -> dict:
    """Writes the finished distilled set `name` to `out` as a webdataset (00000.tar with .png, .cls, .json and
    .soft.npy when soft) or a Hugging Face dataset (image, label, classname, key, soft_label); returns the export's
    summary (format, distilled, samples, files, out, ...). The output appears under `out` only once complete."""
    from curate.export.core import SUMMARY, export_output

    if fmt not in DISTILLED_FORMATS:
        raise UsageError(f"--distilled exports --format {' or '.join(DISTILLED_FORMATS)}, not {fmt}")
    meta, rows = read_set(run, name)
    out = export_output(run).check(out, overwrite)
    with staged_folder(out, overwrite) as staging:
        files = _write_hf(staging, meta, rows) if fmt == "hf" else _write_wds(staging, rows)
        summary = dict(format=fmt, distilled=name, run=str(run.path), samples=len(rows), files=files,
                       classnames=meta["classnames"], soft_labels=meta["soft_labels"], curate_version=__version__)
        (staging / SUMMARY).write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return summary | {"out": str(out)}


def _write_wds(folder: Path, rows: list[dict]) -> list[str]:
    files = []
    for start in range(0, len(rows), SHARD_SIZE):
        part = rows[start:start + SHARD_SIZE]
        files.append(f"{start // SHARD_SIZE:05d}.tar")
        (folder / files[-1]).write_bytes(tar_bytes([m for row in part for m in sample_members(row, soft_npy=True)]))
    (folder / "sizes.json").write_text(json.dumps({f: len(rows[i * SHARD_SIZE:(i + 1) * SHARD_SIZE])
                                                   for i, f in enumerate(files)}, indent=2) + "\n")
    return [*files, "sizes.json"]


def _write_hf(folder: Path, meta: dict, rows: list[dict]) -> list[str]:
    import datasets

    features = datasets.Features({
        "image": datasets.Image(), "label": datasets.ClassLabel(names=meta["classnames"]),
        "classname": datasets.Value("string"), "key": datasets.Value("string"),
        "soft_label": datasets.Sequence(datasets.Value("float32")),
    })
    dataset = datasets.Dataset.from_dict({
        "image": [{"bytes": r["png"], "path": None} for r in rows], "label": [r["class"] for r in rows],
        "classname": [r["classname"] for r in rows], "key": [r["key"] for r in rows],
        "soft_label": [r["soft_label"] for r in rows]}, features=features)
    dataset.save_to_disk(str(folder))
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())

"""Readers of each export format for the tests: every one returns what it found, keyed by uid."""

import hashlib
import json
from pathlib import Path

import numpy as np
from PIL import Image


def sha(data: bytes) -> str:
    """Returns the hex sha256 of `data`."""
    return hashlib.sha256(data).hexdigest()


def read_webdataset(out: Path) -> dict[str, tuple[str, str]]:
    """Returns uid -> (caption, image sha256) read back with the webdataset package, without decoding."""
    import webdataset as wds

    found = {}
    urls = sorted(str(p) for p in out.glob("*.tar"))
    for sample in wds.WebDataset(urls, shardshuffle=False):
        image = next(sample[k] for k in ("jpg", "png", "webp") if k in sample)
        meta = json.loads(sample["json"])
        assert meta["uid"] == sample["__key__"] and meta["stored_sha256"] == sha(image)
        assert meta["caption"] == sample["txt"].decode("utf-8") and meta["key"] and meta["width"] > 0
        # Tar samples keep their original json fields; Parquet samples had none.
        assert meta["url"] is None or meta["source_note"] == "note " + meta["url"].split("/")[-1][:-4]
        found[sample["__key__"]] = (sample["txt"].decode("utf-8"), sha(image))
    return found


def read_hf(dataset) -> dict[str, tuple[str, str]]:
    """Returns uid -> (caption, image sha256) of a `datasets` dataset, checking images decode to PIL first."""
    from datasets import Image as ImageFeature

    assert all(isinstance(row["image"], Image.Image) for row in dataset)
    raw = dataset.cast_column("image", ImageFeature(decode=False))
    return {row["uid"]: (row["caption"], sha(row["image"]["bytes"])) for row in raw}


def read_parquet(out: Path, cache: Path) -> dict[str, tuple[str, str]]:
    """Returns uid -> (caption, image sha256) loaded with datasets.load_dataset("parquet", ...)."""
    from datasets import load_dataset

    files = sorted(str(p) for p in out.glob("part-*.parquet"))
    return read_hf(load_dataset("parquet", data_files=files, split="train", cache_dir=str(cache)))


def read_saved(out: Path, cache: Path) -> dict[str, tuple[str, str]]:
    """Returns uid -> (caption, image sha256) of a dataset saved to disk."""
    from datasets import load_from_disk

    return read_hf(load_from_disk(str(out)))


def read_uids(out: Path, cache: Path) -> set[str]:
    """Returns the uids of uids.npy, checking its dtype and order."""
    uids = np.load(out / "uids.npy")
    assert uids.dtype == np.dtype("u8,u8")
    assert np.array_equal(uids, np.sort(uids))
    return {f"{int(a):016x}{int(b):016x}" for a, b in uids}


READERS = {
    "webdataset": lambda out, cache: read_webdataset(out),
    "parquet": read_parquet,
    "hf": read_saved,
    "datacomp": read_uids,
}

"""Tests of the synthetic pool generator: real files, read back with tarfile, webdataset and pyarrow."""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from curate.errors import UsageError
from curate.synth import COLORS, CONCEPTS, KINDS, NOISE_RATES, SHAPES, generate_pool

POOL = dict(samples=1000, seed=3, shard_size=300, hq_samples=240, heldout_per_concept=3)
META_FIELDS = {"uid", "url", "caption", "key", "status", "error_message", "width", "height",
               "original_width", "original_height", "sha256"}


def _read_tar(path: str | Path) -> dict[str, dict[str, bytes]]:
    """Returns {key: {ext: bytes}} of a tar, checking member order and fixed header fields on the way."""
    samples: dict[str, dict[str, bytes]] = {}
    order: list[tuple[str, str]] = []
    with tarfile.open(path) as tar:
        for member in tar.getmembers():
            assert member.isfile()
            assert (member.mtime, member.uname, member.gname, member.mode) == (1_700_000_000, "bigdata",
                                                                               "bigdata", 0o444)
            key, ext = member.name.split(".", 1)
            samples.setdefault(key, {})[ext] = tar.extractfile(member).read()
            order.append((key, ext))
    assert order == [(k, e) for k in samples for e in ("jpg", "json", "txt")]
    return samples


def _read_dir(folder: Path) -> dict[str, dict[str, bytes]]:
    """Returns {key: {ext: bytes}} over all tars of a folder."""
    out: dict[str, dict[str, bytes]] = {}
    for tar in sorted(folder.glob("*.tar")):
        out.update(_read_tar(tar))
    return out


def _image(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as im:
        return im.convert("RGB")


def _names_concept(caption: str, concept: str) -> bool:
    words = set(re.findall(r"[a-z]+", caption.lower()))
    return set(concept.split(" ")) <= words


def _is_junk(image: Image.Image) -> bool:
    w, h = image.size
    pixels = np.asarray(image, dtype=np.float32)
    solid = float(pixels.std(axis=(0, 1)).max()) < 4.0
    noise = float(np.abs(np.diff(pixels, axis=1)).mean()) > 40.0
    return min(w, h) <= 16 or max(w, h) / min(w, h) >= 4 or solid or noise


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A ~1000-sample pool with its truth and decoded tars, shared by the tests of this module."""
    out = tmp_path_factory.mktemp("pool")
    summary = generate_pool(out, **POOL)
    truth = pq.read_table(out / "truth.parquet").to_pylist()
    return dict(out=out, summary=summary, truth=truth, samples=_read_dir(out / "pool"))


def _all_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_identical_files_and_other_seed_differs(tmp_path: Path) -> None:
    args = dict(samples=150, shard_size=60, hq_samples=40, heldout_per_concept=1)
    generate_pool(tmp_path / "a", seed=5, **args)
    generate_pool(tmp_path / "b", seed=5, **args)
    generate_pool(tmp_path / "c", seed=6, **args)
    a, b, c = (_all_bytes(tmp_path / n) for n in "abc")
    assert a == b
    assert "pool/00002_stats.json" in a and "hq/00000.tar" in a and "heldout.parquet" in a
    assert a.keys() == c.keys()
    assert a["pool/00000.tar"] != c["pool/00000.tar"]
    assert a["truth.parquet"] != c["truth.parquet"]


def test_rerun_into_same_folder_replaces_stale_shards(tmp_path: Path) -> None:
    generate_pool(tmp_path, samples=120, shard_size=40, hq_samples=0, heldout_per_concept=0)
    generate_pool(tmp_path, samples=60, shard_size=40, hq_samples=0, heldout_per_concept=0)
    assert sorted(p.name for p in (tmp_path / "pool").glob("*.tar")) == ["00000.tar", "00001.tar"]


def test_tar_layout_keys_and_json(pool: dict) -> None:
    samples, truth = pool["samples"], pool["truth"]
    assert len(samples) == POOL["samples"] == len(truth)
    by_uid = {t["uid"]: t for t in truth}
    assert len(by_uid) == len(truth)
    for key, members in samples.items():
        assert set(members) == {"jpg", "json", "txt"}
        assert re.fullmatch(r"\d{9}", key)
        meta = json.loads(members["json"])
        assert set(meta) == META_FIELDS
        assert re.fullmatch(r"[0-9a-f]{32}", meta["uid"])
        assert meta["key"] == key and meta["status"] == "success" and meta["error_message"] is None
        assert meta["sha256"] == hashlib.sha256(members["jpg"]).hexdigest()
        assert meta["caption"] == members["txt"].decode("utf-8")
        assert meta["url"].startswith(("http://", "https://"))
        w, h = _image(members["jpg"]).size
        assert (meta["width"], meta["height"]) == (meta["original_width"], meta["original_height"]) == (w, h)
        assert by_uid[meta["uid"]]["key"] == key
        assert key.startswith(by_uid[meta["uid"]]["shard"])


def test_shard_sizes_parquet_and_stats(pool: dict) -> None:
    folder = pool["out"] / "pool"
    tars = sorted(folder.glob("*.tar"))
    assert [p.name for p in tars] == ["00000.tar", "00001.tar", "00002.tar", "00003.tar"]
    assert [p.name for p in tars] == [Path(p).name for p in pool["summary"]["pool_shards"]]
    for tar in tars:
        in_tar = _read_tar(tar)
        assert len(in_tar) <= POOL["shard_size"]
        rows = pq.read_table(tar.with_suffix(".parquet")).to_pylist()
        failed = [r for r in rows if r["status"] != "success"]
        assert 1 <= len(failed) < 0.1 * len(rows)
        assert all(r["status"] == "failed_to_download" and r["error_message"] for r in failed)
        assert {r["key"] for r in failed}.isdisjoint(in_tar)
        assert [r["key"] for r in rows if r["status"] == "success"] == list(in_tar)
        stats = json.loads(tar.with_name(tar.stem + "_stats.json").read_text())
        assert (stats["count"], stats["successes"]) == (len(rows), len(in_tar))
        assert (stats["failed_to_download"], stats["failed_to_resize"]) == (len(failed), 0)
        assert sum(stats["status_dict"].values()) == len(rows)
        assert stats["end_time"] - stats["start_time"] == pytest.approx(stats["duration"])


def test_webdataset_reads_every_sample(pool: dict) -> None:
    wds = pytest.importorskip("webdataset")
    urls = [str(p) for p in sorted((pool["out"] / "pool").glob("*.tar"))]
    seen = []
    for sample in wds.WebDataset(urls, shardshuffle=False):
        assert {"jpg", "txt", "json"} <= set(sample)
        assert json.loads(sample["json"])["key"] == sample["__key__"]
        seen.append(sample["__key__"])
    assert seen == list(pool["samples"])


def test_kinds_at_configured_rates(pool: dict) -> None:
    counts = Counter(t["kind"] for t in pool["truth"])
    assert set(counts) == set(KINDS) == set(NOISE_RATES)
    for kind, rate in NOISE_RATES.items():
        assert abs(counts[kind] / POOL["samples"] - rate) < 0.02, kind
    assert pool["summary"]["kinds"] == dict(counts)


def test_captions_match_kind(pool: dict) -> None:
    by_uid = {json.loads(m["json"])["uid"]: m["txt"].decode() for m in pool["samples"].values()}
    for t in pool["truth"]:
        caption = by_uid[t["uid"]]
        if t["kind"] in ("clean", "exact_dup", "near_dup"):
            assert _names_concept(caption, t["concept"]), (t, caption)
        elif t["kind"] == "misaligned":
            assert not _names_concept(caption, t["concept"])
            assert any(_names_concept(caption, c) for c in CONCEPTS if c != t["concept"]), caption
        elif t["kind"] == "junk_caption":
            assert not any(_names_concept(caption, c) for c in CONCEPTS), caption


def test_concepts_are_long_tailed(pool: dict) -> None:
    counts = Counter(t["concept"] for t in pool["truth"] if t["kind"] == "clean")
    assert set(counts) <= set(CONCEPTS) and len(CONCEPTS) == len(SHAPES) * len(COLORS) >= 100
    top, median = counts.most_common(1)[0][1], np.median(list(counts.values()))
    assert top >= 5 * median


def _uid_jpgs(pool: dict) -> dict[str, bytes]:
    return {json.loads(m["json"])["uid"]: m["jpg"] for m in pool["samples"].values()}


def test_duplicates(pool: dict) -> None:
    jpgs, truth = _uid_jpgs(pool), pool["truth"]
    position = {t["uid"]: i for i, t in enumerate(truth)}
    kind_of = {t["uid"]: t["kind"] for t in truth}
    clean = [t["uid"] for t in truth if t["kind"] == "clean"]

    def vec(uid: str) -> np.ndarray:
        return np.asarray(_image(jpgs[uid]).resize((16, 16), Image.Resampling.BOX), np.float32).ravel()

    grid = np.stack([vec(u) for u in clean])
    nearest_is_source = []
    for t in truth:
        if t["kind"] not in ("exact_dup", "near_dup"):
            assert t["dup_of"] is None
            continue
        assert kind_of[t["dup_of"]] == "clean" and position[t["dup_of"]] < position[t["uid"]]
        if t["kind"] == "exact_dup":
            assert jpgs[t["uid"]] == jpgs[t["dup_of"]]
            continue
        assert jpgs[t["uid"]] != jpgs[t["dup_of"]]
        assert _image(jpgs[t["uid"]]).size == _image(jpgs[t["dup_of"]]).size
        distances = np.abs(grid - vec(t["uid"])).mean(axis=1)
        nearest_is_source.append(clean[int(distances.argmin())] == t["dup_of"])
    assert np.mean(nearest_is_source) > 0.85
    others = [u for u in jpgs if kind_of[u] not in ("exact_dup", "near_dup")]
    assert len({jpgs[u] for u in others}) == len(others)


def test_junk_images_are_junk_and_others_are_not(pool: dict) -> None:
    jpgs = _uid_jpgs(pool)
    shapes = Counter()
    for t in pool["truth"]:
        image = _image(jpgs[t["uid"]])
        assert _is_junk(image) == (t["kind"] == "junk_image"), t
        assert (t["concept"] is None) == (t["kind"] == "junk_image")
        if t["kind"] == "junk_image":
            w, h = image.size
            shapes["tiny" if max(w, h) <= 16 else "strip" if max(w, h) / min(w, h) >= 4 else "square"] += 1
    assert min(shapes.values()) >= 5 and len(shapes) == 3


def test_hq_is_clean_and_separate(pool: dict) -> None:
    hq = _read_dir(pool["out"] / "hq")
    assert len(hq) == POOL["hq_samples"] == pool["summary"]["hq_samples"]
    pool_uids = {t["uid"] for t in pool["truth"]}
    labels = Counter()
    for key, members in hq.items():
        meta = json.loads(members["json"])
        assert meta["key"] == key and meta["uid"] not in pool_uids
        assert meta["sha256"] == hashlib.sha256(members["jpg"]).hexdigest()
        assert not _is_junk(_image(members["jpg"]))
        named = [c for c in CONCEPTS if _names_concept(members["txt"].decode(), c)]
        assert len(named) == 1, members["txt"]
        labels[named[0]] += 1
    assert len(labels) == len(CONCEPTS)
    rows = pq.read_table(pool["out"] / "hq" / "00000.parquet").to_pylist()
    assert all(r["status"] == "success" for r in rows)


def test_heldout_covers_every_concept(pool: dict) -> None:
    table = pq.read_table(pool["out"] / "heldout.parquet")
    assert table.column_names == ["jpg", "label", "caption"]
    rows = table.to_pylist()
    assert Counter(r["label"] for r in rows) == {c: POOL["heldout_per_concept"] for c in CONCEPTS}
    pool_jpgs = set(_uid_jpgs(pool).values())
    for r in rows:
        assert _names_concept(r["caption"], r["label"])
        assert _image(r["jpg"]).size == (64, 64) and r["jpg"] not in pool_jpgs


def test_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="samples must be"):
        generate_pool(tmp_path, samples=0)
    with pytest.raises(UsageError, match="shard_size"):
        generate_pool(tmp_path, samples=10, shard_size=20_000)

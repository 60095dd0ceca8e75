"""generate_pool: the noisy pool, its ground truth, the trusted high-quality set and the held-out images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from curate.errors import UsageError
from curate.synth.broken import BROKEN_KINDS, broken_kind_of
from curate.synth.captions import concept_caption, fake_url, junk_caption, make_uid
from curate.synth.concepts import CONCEPTS
from curate.synth.plan import KINDS, PlannedSample, plan_pool
from curate.synth.render import encode_jpeg, near_duplicate, render_concept, render_junk
from curate.synth.shards import ShardRow, clear_shards, shard_name, write_shard

# Per-sample random streams: each image comes from default_rng([seed, stream, index...]).
STREAM_POOL, STREAM_FAILED, STREAM_HQ, STREAM_HELDOUT, STREAM_BROKEN = 1, 2, 3, 4, 5
FAILED_RATE = 0.03
DOWNLOAD_ERRORS: tuple[str, ...] = (
    "HTTP Error 404: Not Found",
    "HTTP Error 403: Forbidden",
    "<urlopen error [Errno -2] Name or service not known>",
    "The read operation timed out",
    "<urlopen error [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed>",
    "HTTP Error 500: Internal Server Error",
)
TRUTH_SCHEMA = pa.schema([("uid", pa.string()), ("kind", pa.string()), ("concept", pa.string()),
                          ("dup_of", pa.string()), ("shard", pa.string()), ("key", pa.string())])
HELDOUT_SCHEMA = pa.schema([("jpg", pa.binary()), ("label", pa.string()), ("caption", pa.string())])


def _pool_sample(p: PlannedSample, index: int, seed: int, size: int, sources: dict[int, tuple[bytes, str]],
                 detail: bool = False) -> tuple[bytes, str, tuple[int, int]]:
    """Returns (jpg bytes, caption, (width, height)) of pool sample `index` as planned."""
    rng = np.random.default_rng([seed, STREAM_POOL, index])
    if p.dup_of is not None:
        src_jpg, src_caption = sources[p.dup_of]
        jpg = src_jpg if p.kind == "exact_dup" else near_duplicate(rng, src_jpg)
        caption = src_caption if rng.random() < 0.5 else concept_caption(rng, p.concept)
        return jpg, caption, (size, size)
    if p.junk_type is not None:
        image = render_junk(rng, p.junk_type, size, p.concept, detail)
        background = size_word = ""
    else:
        rendered = render_concept(rng, p.concept, size, detail)
        image, background, size_word = rendered.image, rendered.background, rendered.size_word
    if p.caption_concept is None:
        caption = junk_caption(rng)
    elif p.caption_concept == p.concept:
        caption = concept_caption(rng, p.concept, background, size_word)
    else:  # misaligned: describe another concept, never this image's background
        caption = concept_caption(rng, p.caption_concept)
    return encode_jpeg(image), caption, image.size


def _failed_rows(seed: int, shard_id: int, successes: int) -> list[ShardRow]:
    """Returns the shard's failed downloads (listed in its parquet only), about FAILED_RATE of its rows."""
    rng = np.random.default_rng([seed, STREAM_FAILED, shard_id])
    count = max(1, int(rng.binomial(successes, FAILED_RATE))) if successes else 0
    rows = []
    for j in range(count):
        has_concept = rng.random() < 0.8
        caption = concept_caption(rng, int(rng.integers(len(CONCEPTS)))) if has_concept else junk_caption(rng)
        error = DOWNLOAD_ERRORS[int(rng.integers(len(DOWNLOAD_ERRORS)))]
        uid = make_uid(seed, "pool-failed", shard_id * 100_000 + j)
        rows.append(ShardRow(uid=uid, url=fake_url(rng, caption), caption=caption, error=error))
    return rows


def _interleave(seed: int, shard_id: int, ok: list[ShardRow], failed: list[ShardRow]) -> list[ShardRow]:
    """Returns ok and failed rows in one attempted order, ok rows keeping theirs (keys then have gaps)."""
    rng = np.random.default_rng([seed, STREAM_FAILED, shard_id, 1])
    total = len(ok) + len(failed)
    failed_at = set(rng.choice(total, size=len(failed), replace=False).tolist()) if failed else set()
    ok_iter, failed_iter = iter(ok), iter(failed)
    return [next(failed_iter) if i in failed_at else next(ok_iter) for i in range(total)]


def _shard_spans(count: int, shard_size: int, first_shard: int = 0):
    """Yields (shard id, range of the item indices it holds) for `count` items in shards of `shard_size`."""
    for shard_id, start in enumerate(range(0, count, shard_size), start=first_shard):
        yield shard_id, range(start, min(start + shard_size, count))


def _write_keyed(folder: Path, shard_id: int, rows: list[ShardRow], truth: list[dict]) -> None:
    """Writes the shard and sets each of its truth rows' "key" to the key its sample got. Returns None."""
    keys = write_shard(folder, shard_id, rows)
    for row in truth:
        row["key"] = keys[row["uid"]]


def _rendered_pair(rng: np.random.Generator, concept: int, size: int, web_words: float,
                   detail: bool = False) -> tuple[bytes, str]:
    """Returns (jpg bytes, caption) of a fresh clean rendering of `concept`."""
    rendered = render_concept(rng, concept, size, detail)
    caption = concept_caption(rng, concept, rendered.background, rendered.size_word, web_words=web_words)
    return encode_jpeg(rendered.image), caption


def _write_pool(folder: Path, plan: list[PlannedSample], seed: int, size: int, shard_size: int,
                detail: bool = False) -> list[dict]:
    """Writes the pool shards; returns truth rows (uid, kind, concept, dup_of, shard, key) in pool order."""
    sources: dict[int, tuple[bytes, str]] = {}
    uids = [make_uid(seed, "pool", i) for i in range(len(plan))]
    truth: list[dict] = []
    for shard_id, span in _shard_spans(len(plan), shard_size):
        ok = []
        for i in span:
            p = plan[i]
            jpg, caption, (w, h) = _pool_sample(p, i, seed, size, sources, detail)
            if p.kind == "clean":
                sources[i] = (jpg, caption)
            rng = np.random.default_rng([seed, STREAM_POOL, i, 1])
            ok.append(ShardRow(uid=uids[i], url=fake_url(rng, caption), caption=caption, jpg=jpg,
                               width=w, height=h))
            truth.append(dict(uid=uids[i], kind=p.kind, dup_of=None if p.dup_of is None else uids[p.dup_of],
                              concept=None if p.kind == "junk_image" else CONCEPTS[p.concept],
                              shard=shard_name(shard_id)))
        rows = _interleave(seed, shard_id, ok, _failed_rows(seed, shard_id, len(ok)))
        _write_keyed(folder, shard_id, rows, truth[span.start:])
    return truth


def _write_hq(folder: Path, samples: int, seed: int, size: int, shard_size: int, detail: bool = False) -> int:
    """Writes the trusted set: clean pairs, concepts cycled in a seeded order; returns its shard count."""
    order = np.random.default_rng([seed, STREAM_HQ]).permutation(len(CONCEPTS))
    shards = 0
    for shard_id, span in _shard_spans(samples, shard_size):
        rows = []
        for j in span:
            rng = np.random.default_rng([seed, STREAM_HQ, j])
            jpg, caption = _rendered_pair(rng, int(order[j % len(CONCEPTS)]), size, 0.0, detail)
            rows.append(ShardRow(uid=make_uid(seed, "hq", j), url=fake_url(rng, caption), caption=caption,
                                 jpg=jpg, width=size, height=size))
        write_shard(folder, shard_id, rows)
        shards += 1
    return shards


def _write_broken(folder: Path, count: int, seed: int, size: int, shard_size: int, first_shard: int,
                  detail: bool = False) -> list[dict]:
    """Writes `count` broken samples (BROKEN_KINDS in turn) into shards numbered from `first_shard`; returns
    their truth rows (kind "broken")."""
    truth: list[dict] = []
    for shard_id, span in _shard_spans(count, shard_size, first_shard):
        rows = []
        for j in span:
            rng = np.random.default_rng([seed, STREAM_BROKEN, j])
            jpg, caption = _rendered_pair(rng, int(rng.integers(len(CONCEPTS))), size, 0.3, detail)
            url = fake_url(rng, caption)  # from the intact caption, as the crawl saw it
            jpg, caption = BROKEN_KINDS[broken_kind_of(j)].build(rng, jpg, caption)
            uid = make_uid(seed, "broken", j)
            rows.append(ShardRow(uid=uid, url=url, caption=caption, jpg=jpg, width=size, height=size))
            truth.append(dict(uid=uid, kind="broken", concept=None, dup_of=None, shard=shard_name(shard_id)))
        _write_keyed(folder, shard_id, rows, truth[span.start:])
    return truth


def _heldout_table(per_concept: int, seed: int, size: int, detail: bool = False) -> pa.Table:
    """Returns the held-out evaluation table: `per_concept` clean images of every concept, concept-major."""
    rows = []
    for concept, label in enumerate(CONCEPTS):
        for k in range(per_concept):
            rng = np.random.default_rng([seed, STREAM_HELDOUT, concept, k])
            jpg, caption = _rendered_pair(rng, concept, size, 0.0, detail)
            rows.append(dict(jpg=jpg, label=label, caption=caption))
    return pa.Table.from_pylist(rows, schema=HELDOUT_SCHEMA)


def _check_args(samples: int, shard_size: int, hq_samples: int, heldout_per_concept: int,
                image_size: int, broken_samples: int) -> None:
    if samples < 1 or min(hq_samples, heldout_per_concept, broken_samples) < 0:
        raise UsageError("samples must be >= 1 and hq_samples, heldout_per_concept, broken_samples >= 0")
    if not 1 <= shard_size <= 9000:
        raise UsageError("shard_size must be in [1, 9000] (4-digit keys, with room for failed rows)")
    if image_size < 16:
        raise UsageError("image_size must be >= 16")


def generate_pool(out: str | Path, samples: int = 4000, seed: int = 0, shard_size: int = 500,
                  hq_samples: int | None = None, heldout_per_concept: int = 10,
                  image_size: int = 64, broken_samples: int = 0, instance_detail: bool = False) -> dict:
    """Writes the pool; returns a summary dict (counts per noise kind, paths).

    Layout under `out`: pool/ and hq/ (img2dataset webdataset shards: NNNNN.tar, NNNNN.parquet,
    NNNNN_stats.json), truth.parquet (uid, kind, concept, dup_of, shard, key of every pool sample) and
    heldout.parquet (jpg, label, caption). The files are byte-identical for the same arguments. With
    `broken_samples`, that many broken samples (curate.synth.broken: truncated or undecodable images, a
    decompression bomb, bad captions) follow in extra pool shards, truth kind "broken"; the other shards are
    unchanged. With `instance_detail`, every concept rendering (pool, hq, held-out) gets its own clutter,
    object texture, lighting and sensor noise (curate.synth.detail), so distinct renderings of one concept differ
    the way two photos do while near duplicates stay copies; off, the files are those of earlier versions.
    Summary keys: out, pool, hq, truth, heldout (paths as str), pool_shards, hq_shards (lists of tar
    paths), samples, hq_samples, heldout_samples, failed_to_download, kinds ({kind: count}), broken_samples,
    concepts, seed, instance_detail.
    """
    hq_samples = samples // 2 if hq_samples is None else hq_samples
    _check_args(samples, shard_size, hq_samples, heldout_per_concept, image_size, broken_samples)
    out = Path(out)
    pool_dir, hq_dir = out / "pool", out / "hq"
    for folder in (pool_dir, hq_dir):
        folder.mkdir(parents=True, exist_ok=True)
        clear_shards(folder)
    detail = instance_detail
    truth = _write_pool(pool_dir, plan_pool(samples, seed), seed, image_size, shard_size, detail)
    pool_shards = -(-samples // shard_size)
    truth += _write_broken(pool_dir, broken_samples, seed, image_size, shard_size, pool_shards, detail)
    pq.write_table(pa.Table.from_pylist(truth, schema=TRUTH_SCHEMA), out / "truth.parquet")
    hq_shards = _write_hq(hq_dir, hq_samples, seed, image_size, shard_size, detail)
    pq.write_table(_heldout_table(heldout_per_concept, seed, image_size, detail), out / "heldout.parquet")
    failed = sum(pq.read_metadata(pool_dir / f"{shard_name(s)}.parquet").num_rows for s in range(pool_shards))
    return {
        "out": str(out), "pool": str(pool_dir), "hq": str(hq_dir),
        "truth": str(out / "truth.parquet"), "heldout": str(out / "heldout.parquet"),
        "pool_shards": sorted(str(p) for p in pool_dir.glob("*.tar")),
        "hq_shards": [str(hq_dir / f"{shard_name(s)}.tar") for s in range(hq_shards)],
        "samples": samples, "hq_samples": hq_samples,
        "heldout_samples": heldout_per_concept * len(CONCEPTS),
        "failed_to_download": failed - samples,
        "kinds": {k: sum(1 for t in truth if t["kind"] == k) for k in KINDS}, "broken_samples": broken_samples,
        "concepts": len(CONCEPTS), "seed": seed, "instance_detail": instance_detail,
    }

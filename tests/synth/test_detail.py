"""Tests of the opt-in per-instance detail: distinct renderings of one concept differ, near copies stay copies."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from PIL import Image

from curate.synth import generate_pool
from curate.synth.render import encode_jpeg, near_duplicate, render_concept

CONCEPTS_TRIED = (0, 17, 40, 63, 88, 107)
PER_CONCEPT = 12
# sha256 over the pool tars of generate_pool(samples=60, seed=11, shard_size=30, hq_samples=6,
# heldout_per_concept=0), written before instance detail existed (pinned pillow/numpy: see requirements.lock).
DEFAULT_POOL_SHA256 = "93182b4b84c313bbbc5e26e56c185ba5006ee7ebd6510a1b073cef74e44f21c3"


def _vector(jpg: bytes, side: int = 32) -> np.ndarray:
    """Returns the image box-downsampled to side x side, mean-centred and L2-normalized (cosine = NCC)."""
    with Image.open(io.BytesIO(jpg)) as image:
        pixels = np.asarray(image.convert("RGB").resize((side, side), Image.Resampling.BOX), dtype=np.float32)
    row = pixels.ravel() - pixels.mean()
    return row / np.linalg.norm(row)


def _batch(detail: bool) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Returns per concept tried: (renderings x dim vectors, their near copies' vectors), seeded."""
    sources, copies = [], []
    for concept in CONCEPTS_TRIED:
        jpgs = [encode_jpeg(render_concept(np.random.default_rng([3, concept, k]), concept, 64, detail).image)
                for k in range(PER_CONCEPT)]
        sources.append(np.stack([_vector(j) for j in jpgs]))
        copies.append(np.stack([_vector(near_duplicate(np.random.default_rng([4, concept, k]), j))
                                for k, j in enumerate(jpgs)]))
    return sources, copies


def test_distinct_renderings_are_farther_apart_than_near_copies() -> None:
    sources, copies = _batch(detail=True)
    distinct = np.concatenate([(v @ v.T)[np.triu_indices(len(v), 1)] for v in sources])
    near = np.concatenate([np.einsum("ij,ij->i", v, c) for v, c in zip(sources, copies, strict=True)])
    assert np.median(distinct) < 0.4 < 0.8 < np.median(near)
    assert np.quantile(distinct, 0.9) < np.quantile(near, 0.1)
    # a near copy is closer to its own source than to the other renderings of its concept, nearly always
    hits = [float(np.mean((c @ v.T).argmax(axis=1) == np.arange(len(v)))) for v, c in zip(sources, copies, strict=True)]
    assert np.mean(hits) >= 0.9


def test_detail_separates_same_concept_renderings_more_than_plain() -> None:
    plain, detailed = (np.concatenate([(v @ v.T)[np.triu_indices(len(v), 1)] for v in _batch(d)[0]])
                       for d in (False, True))
    assert np.quantile(detailed, 0.95) < np.quantile(plain, 0.95)
    assert np.mean(detailed) < np.mean(plain)


def test_detail_draws_after_the_plain_rendering() -> None:
    """Same rng: the detailed rendering is the plain one plus detail (same object place), visibly different."""
    plain = np.asarray(render_concept(np.random.default_rng(5), 30, 64).image, dtype=np.float32)
    detailed = np.asarray(render_concept(np.random.default_rng(5), 30, 64, detail=True).image, dtype=np.float32)
    assert np.abs(plain - detailed).mean() > 4.0
    assert np.corrcoef(plain.ravel(), detailed.ravel())[0, 1] > 0.5


def _pool_digest(out: Path) -> str:
    digest = hashlib.sha256()
    for tar in sorted((out / "pool").glob("*.tar")):
        digest.update(tar.read_bytes())
    return digest.hexdigest()


def test_default_pool_is_unchanged_and_detail_changes_only_renderings(tmp_path: Path) -> None:
    args = dict(samples=60, seed=11, shard_size=30, hq_samples=6, heldout_per_concept=0)
    generate_pool(tmp_path / "plain", **args)
    assert _pool_digest(tmp_path / "plain") == DEFAULT_POOL_SHA256
    summary = generate_pool(tmp_path / "detail", instance_detail=True, **args)
    assert summary["instance_detail"] is True
    assert _pool_digest(tmp_path / "detail") != DEFAULT_POOL_SHA256
    truths = [pq.read_table(tmp_path / name / "truth.parquet") for name in ("plain", "detail")]
    assert truths[0].equals(truths[1])


def test_cli_instance_detail_flag(tmp_path: Path, capsys) -> None:
    from curate.cli.main import main

    out = tmp_path / "pool"
    argv = ["synth", "--out", str(out), "--samples", "30", "--hq-samples", "0", "--heldout-per-concept", "0",
            "--seed", "11", "--instance-detail"]
    assert main(argv) == 0
    assert '"instance_detail": true' in capsys.readouterr().out
    assert (out / "truth.parquet").exists()

"""Eval-set decontamination (`curate decontaminate RUN --against EVAL`): remove pool samples that are copies of
evaluation images, found with the same copy descriptor as the pool's (the descriptor set's model, fingerprint and
input size, as `curate embed RUN --model DIR --as copy` recorded them).

Each pool sample's nearest evaluation image is searched with faiss (curate.copydetect.search; the eval set is the
index, the pool's chunks go to --runner's workers); a sample whose cosine similarity to it is >= --threshold is
removed. The default 0.75 is SSCD's operating point (Pizzi et al. 2022, the sscd_disc_mixup README): DISC pairs
above it are copies with 90% precision. A descriptor trained on the run itself (curate train-copy-detector) has
a scale of its own: check `decontam_sim` of known copies before trusting the default.

With --score-norm pool (the default) a similarity at or above the threshold is normalized as SSCD does, one-sided
(curate.copydetect.scorenorm): less how far the sample's mean similarity to its 3 nearest pool samples that are
not its copies lies above the pool's median of that. A sample in a dense part of the pool (close to many images it
is not a copy of) needs a higher similarity to count as a copy; an identical image always counts. --score-norm
none compares the raw similarity.

Columns in the samples view: decontam_keep, decontam_match (the id of the matched evaluation image, for removed
samples: curate.copydetect.evalsets says what an id is), decontam_sim (the similarity to the nearest evaluation
image, for every input sample) and decontam_score (what --threshold was compared with: decontam_sim, normalized
where it reached the threshold with --score-norm pool). Evaluation images that do not decode are counted
(eval_skipped), not fatal. The stage's config holds a fingerprint of the eval set's bytes, so changing the set
makes the stage, and what read it, stale; so does a new descriptor set, another threshold or score normalization.
A descriptor set made by a TorchScript model needs --trust-torchscript (trust_torchscript) again here: the
permission `curate embed --as` was given is not recorded, and it is no option of the stage (not in its config).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pyarrow as pa

from curate.copydetect.evalsets import EvalSource, eval_fingerprint, eval_sources, iter_eval_images
from curate.copydetect.scorenorm import SCORE_NORMS, background_excess, normalized
from curate.copydetect.search import TOLERANCE, nearest
from curate.errors import UsageError
from curate.filters.neardup import descriptor_stage
from curate.graph import entries
from curate.options import option
from curate.rundir import RunDir
from curate.stages.embeddings import EMBEDDING_COLUMNS
from curate.stages.pool import Pool, PoolMethod, PoolResult

DEFAULT_THRESHOLD = 0.75  # SSCD's sscd_disc_mixup: DISC pairs above it are copies with 90% precision
BATCH = 256  # evaluation images decoded and described at a time


@dataclass
class EvalDescriptors:
    """The described evaluation set: each decoded image's id and unit descriptor, and how many did not decode."""

    ids: list[str]
    vectors: np.ndarray
    skipped: int


def describe_eval_set(config: dict, sources: list[EvalSource], name: str,
                      trust_torchscript: bool = False) -> EvalDescriptors:
    """Returns the descriptors of the evaluation images with the model recorded in the descriptor stage's
    `config` (model, fingerprint, image_size), each image resized whole to its input as the pool's were; raises
    UsageError when the model is gone or changed, is TorchScript without `trust_torchscript`, or no image
    decodes."""
    from curate.copydetect.model import describe_pixels, descriptor_fingerprint, load_descriptor
    from curate.models.encode import square_pixels

    model, size = config["model"], config["image_size"]
    redo = f"rerun `curate embed RUN --model DIR --as {name}`"
    if not Path(model).exists():
        raise UsageError(f"the model {model} that made the {name!r} descriptors is gone; {redo} with one that exists")
    if descriptor_fingerprint(model) != config["fingerprint"]:
        raise UsageError(f"the model {model} changed since it made the {name!r} descriptors; {redo} first")
    loaded = load_descriptor(model, "auto", size, trust_torchscript)
    ids, blocks, pixels, pending, skipped = [], [], [], [], 0
    for image_id, data in iter_eval_images(sources):
        try:
            pixels.append(square_pixels(data, size)[0])
            pending.append(image_id)
        except Exception:  # PIL raises many types for bytes that are not an image (None included): not decoded
            skipped += 1
        if len(pixels) == BATCH:
            blocks.append(describe_pixels(loaded, np.stack(pixels), BATCH))
            ids, pixels, pending = ids + pending, [], []
    if pixels:
        blocks.append(describe_pixels(loaded, np.stack(pixels), BATCH))
        ids += pending
    if not ids:
        raise UsageError(f"none of the {skipped} evaluation images could be decoded")
    return EvalDescriptors(ids, np.concatenate(blocks), skipped)


@dataclass(frozen=True, kw_only=True)
class Decontaminate(PoolMethod):
    """Removal of the pool's copies of evaluation images."""

    name = "decontam"
    columns = ("decontam_keep", "decontam_match", "decontam_sim", "decontam_score")
    uses_runner = True
    hint = "curate decontaminate RUN --against EVAL"

    against: str = option(help="the evaluation images: a Parquet file, a folder of images, or WebDataset .tar "
                               "shards (a file, a folder, a glob or a brace pattern)")
    threshold: float = option(DEFAULT_THRESHOLD, "remove a sample whose cosine similarity to an evaluation image "
                              "is >= this (0.75: SSCD's operating point, precision 0.9 on DISC)")
    descriptor: str = option("copy", "the descriptor set compared (curate embed RUN --model DIR --as NAME)")
    score_norm: str = option("pool", "pool: SSCD's score normalization (one-sided), the pool's own samples (not the "
                             "sample's copies) as the background; none: the raw similarity", choices=SCORE_NORMS)
    where: str | None = option(None, "SQL predicate choosing the input (default: every embedded sample)")
    trust_torchscript: bool = False  # a permission to run the model file (--trust-torchscript), not an option

    def validate(self) -> None:
        """Raises UsageError for a threshold outside [-1, 1], CLIP embeddings as the descriptor, or an --against
        set that does not exist."""
        if not -1 <= self.threshold <= 1:
            raise UsageError(f"--threshold must be a cosine similarity in [-1, 1], got {self.threshold}")
        if self.descriptor in EMBEDDING_COLUMNS:
            raise UsageError(f"--descriptor must be a copy-descriptor set, not the CLIP {self.descriptor} embeddings; "
                             "make one with `curate embed RUN --model DIR --as copy`")
        self.sources  # noqa: B018 - resolves the set now, so a missing path is a one-line error before anything runs

    @cached_property
    def sources(self) -> list[EvalSource]:
        """Returns the files of the --against set (resolved once)."""
        return eval_sources(self.against)

    @cached_property
    def fingerprint(self) -> str:
        """Returns the hash of the --against set's bytes (computed once)."""
        return eval_fingerprint(self.sources)

    def config(self) -> dict:
        """Returns the options recorded as the stage's config: against (an absolute path when local), threshold,
        descriptor, and the fingerprint of the evaluation set's bytes."""
        local = Path(self.against)
        against = str(local.resolve()) if local.exists() else self.against
        return dict(against=against, threshold=self.threshold, descriptor=self.descriptor,
                    score_norm=self.score_norm, against_fingerprint=self.fingerprint)

    def reads(self, run: RunDir) -> tuple[str, ...]:
        """Returns the descriptor set's stage; raises UsageError saying how to make it when the run has none."""
        return (descriptor_stage(run, self.descriptor),)

    def compute(self, pool: Pool) -> PoolResult:
        """Returns each input sample's nearest evaluation image, similarity and score, and decontam_keep."""
        stage = descriptor_stage(pool.run, self.descriptor)
        evals = describe_eval_set(entries(pool.run)[stage]["config"], self.sources, self.descriptor,
                                  self.trust_torchscript)
        vectors = pool.embeddings(self.descriptor).vectors
        rows = np.flatnonzero(pool.rows)
        if evals.vectors.shape[1] != vectors.shape[1]:
            raise UsageError(f"the {self.descriptor!r} descriptors have {vectors.shape[1]} dimensions, the model now "
                             f"gives {evals.vectors.shape[1]}; rerun `curate embed RUN --model DIR --as "
                             f"{self.descriptor}`")
        inputs = vectors if len(rows) == len(vectors) else vectors[rows]
        sims, found = nearest(inputs, evals.vectors, 1, pool.runner)
        sims, found = sims[:, 0], found[:, 0]
        scores = sims.copy()
        if self.score_norm == "pool":
            candidates = np.flatnonzero(sims >= np.float32(self.threshold - TOLERANCE))
            excess = background_excess(inputs, candidates, self.threshold, pool.runner)
            scores[candidates] = normalized(sims[candidates], excess)
        removed = scores >= np.float32(self.threshold - TOLERANCE)
        n = len(pool.index)
        keep, sim, score = np.ones(n, bool), np.full(n, np.nan, np.float32), np.full(n, np.nan, np.float32)
        match = np.full(n, None, dtype=object)
        keep[rows], sim[rows], score[rows] = ~removed, sims, scores
        ids = np.array(evals.ids, dtype=object)
        match[rows[removed]] = ids[found[removed]]
        dropped = int(removed.sum())
        return PoolResult(
            columns={"decontam_keep": pa.array(keep), "decontam_match": pa.array(match, pa.string()),
                     "decontam_sim": pa.array(sim, mask=np.isnan(sim)),
                     "decontam_score": pa.array(score, mask=np.isnan(score))},
            counts=dict(scored=len(rows), kept=len(rows) - dropped, dropped=dropped, threshold=self.threshold,
                        eval_images=len(evals.ids), eval_skipped=evals.skipped,
                        eval_matched=len(set(found[removed].tolist()))))

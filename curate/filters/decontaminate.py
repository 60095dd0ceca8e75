"""Eval-set decontamination (`curate decontaminate RUN --against EVAL`): remove pool samples that are copies of
evaluation images, found with the same copy descriptor as the pool's (the descriptor set's model, fingerprint and
input size, as `curate embed RUN --model DIR --as copy` recorded them).

Each pool sample's nearest evaluation image is searched with faiss (curate.copydetect.search; the eval set is the
index, built once on the driver), one task of --runner per descriptor file; a sample whose cosine similarity to it
is >= --threshold is removed. No process holds the pool: a task reads one file, and the background of score
normalization is searched by tasks too (curate.stages.filesearch). The default 0.75 is SSCD's operating point
(Pizzi et al. 2022, the sscd_disc_mixup README): DISC pairs above it are copies with 90% precision. A descriptor
trained on the run itself (curate train-copy-detector) has a scale of its own: check `decontam_sim` of known copies
before trusting the default.

With --score-norm pool (the default) a similarity at or above the threshold is normalized as SSCD does, one-sided
(curate.copydetect.scorenorm): less how far the sample's mean similarity to its 3 nearest input samples that are
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
import pyarrow.parquet as pq

from curate.copydetect.evalsets import EvalSource, eval_fingerprint, eval_sources, iter_eval_images
from curate.copydetect.scorenorm import SCORE_NORMS, background_excess, normalized
from curate.copydetect.search import TOLERANCE, SearchTask, build_index
from curate.errors import UsageError
from curate.filters.neardup import descriptor_stage
from curate.graph import entries
from curate.options import option
from curate.rundir import RunDir
from curate.runners import Runner, as_runner, quiet
from curate.stages.embeddings import EMBEDDING_COLUMNS, vector_files
from curate.stages.filesearch import FileNeighbours
from curate.stages.inputfiles import input_files
from curate.stages.pool import SelectionMethod
from curate.stages.step import stage_step

DEFAULT_THRESHOLD = 0.75  # SSCD's sscd_disc_mixup: DISC pairs above it are copies with 90% precision
BATCH = 256  # evaluation images decoded and described at a time
WORK = "partitions/decontam"  # the input routed per file, and each file's matches (a resumed run keeps them)


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
class Decontaminate(SelectionMethod):
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

    def apply(self, run: RunDir, runner: str | Runner = "local", **runner_options) -> dict:
        """Matches every input sample to its nearest evaluation image by tasks per descriptor file, normalizes the
        scores at the threshold, and writes the keep flags; returns the counts."""
        runner = as_runner(runner, **runner_options)
        with run.writing():
            step = self.step(run)
            with stage_step(run, step, lambda: self._described(run)) as (record, evals):
                record["counts"] = self._decide(run, step.where, evals, runner)
        return record["counts"]

    def _described(self, run: RunDir) -> EvalDescriptors:
        """Returns the evaluation set's descriptors; raises UsageError when they cannot be compared with the run's."""
        stage = descriptor_stage(run, self.descriptor)
        evals = describe_eval_set(entries(run)[stage]["config"], self.sources, self.descriptor, self.trust_torchscript)
        paths, column = vector_files(run, self.descriptor)
        dim = pq.read_schema(paths[0]).field(column).type.list_size
        if evals.vectors.shape[1] != dim:
            raise UsageError(f"the {self.descriptor!r} descriptors have {dim} dimensions, the model now gives "
                             f"{evals.vectors.shape[1]}; rerun `curate embed RUN --model DIR --as {self.descriptor}`")
        return evals

    def _decide(self, run: RunDir, where: str | None, evals: EvalDescriptors, runner: Runner) -> dict:
        """Writes scores/decontam/ for the input samples; returns the counts."""
        files = input_files(run, self.descriptor, where, f"{WORK}/input")
        index = SearchTask(build_index(evals.vectors), np.zeros((0, evals.vectors.shape[1]), np.float32))
        items = [(file, f"{WORK}/match/{file.stem}.parquet") for file in files]
        matched = runner.map(_match_file, (str(run.path), index, self.threshold), items, desc="decontaminate")
        counts = [count for count, _, _ in matched]
        rescored = [sims for _, _, sims in matched]
        if self.score_norm == "pool" and any(len(c) for _, c, _ in matched):
            neighbours = FileNeighbours(files, counts, runner)
            candidates = np.concatenate([first + c for first, (_, c, _) in zip(neighbours.firsts, matched,
                                                                                strict=True)])
            excess = np.split(background_excess(neighbours, candidates, self.threshold),
                              np.cumsum([len(c) for _, c, _ in matched])[:-1])
            rescored = [normalized(sims, e) for sims, e in zip(rescored, excess, strict=True)]
        work = [(relative, file.stem, c, scores) for (_, relative), (_, c, _), file, scores
                in zip(items, matched, files, rescored, strict=True)]
        kept = quiet(runner).map(_keep_file, (str(run.path), np.array(evals.ids, dtype=object), self.threshold),
                                 work, desc="decontaminate keep")
        scored, dropped = sum(counts), sum(len(m) for m in kept)
        return dict(scored=scored, kept=scored - dropped, dropped=dropped, threshold=self.threshold,
                    eval_images=len(evals.ids), eval_skipped=evals.skipped,
                    eval_matched=len(set().union(*[set(m.tolist()) for m in kept])))


def _match_file(shared: tuple, item: tuple) -> tuple[int, np.ndarray, np.ndarray]:
    """Writes each input sample's nearest evaluation image and similarity for one descriptor file (once); returns
    its number of input rows, and the rows at the threshold with their similarities."""
    run_path, index, threshold = shared
    file, relative = item
    run = RunDir(run_path)
    if not (run.path / relative).exists():
        uids, vectors = file.read()
        sims, found = index.live_index().search(vectors, 1) if len(vectors) else (np.zeros((0, 1)), np.zeros((0, 1)))
        run.write_table(relative, pa.table({"uid": uids, "sim": pa.array(np.where(found[:, 0] >= 0, sims[:, 0],
                                                                                     -np.inf).astype(np.float32)),
                                             "match": pa.array(found[:, 0].astype(np.int64))}))
    sims = pq.read_table(run.path / relative, columns=["sim"])["sim"].to_numpy()
    at = np.flatnonzero(sims >= np.float32(threshold - TOLERANCE))
    return len(sims), at, sims[at]


def _keep_file(shared: tuple, item: tuple) -> np.ndarray:
    """Writes one file's scores/decontam/<shard>.parquet from its matches and its rows' rescored similarities;
    returns the indices of the evaluation images its removed samples matched."""
    run_path, ids, threshold = shared
    relative, stem, at, rescored = item
    run = RunDir(run_path)
    table = pq.read_table(run.path / relative)
    sims, found = table["sim"].to_numpy(), table["match"].to_numpy()
    scores = sims.copy()
    scores[at] = rescored
    removed = scores >= np.float32(threshold - TOLERANCE)
    finite = np.isfinite(sims)
    run.write_table(f"scores/decontam/{stem}.parquet", pa.table({
        "uid": table["uid"], "decontam_keep": pa.array(~removed),
        "decontam_match": pa.array(np.where(removed, ids[np.maximum(found, 0)], None), pa.string()),
        "decontam_sim": pa.array(sims, mask=~finite), "decontam_score": pa.array(scores, mask=~finite)}))
    return found[removed]

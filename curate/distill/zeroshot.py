"""Labels for unlabelled samples by zero-shot classification with the run's own embedding model: the class names
(one a line in a text file) become CLIP prompts (curate.evaluate.metrics.TEMPLATES), the prompts' text embeddings
a classifier, and each sample's label the class whose weights score its stored image embedding highest.

Importing this module does not import torch; the functions that load the model do.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from curate.errors import UsageError
from curate.rundir import RunDir

if TYPE_CHECKING:
    import duckdb

    from curate.models.loading import ModelSpec

PREFIX = "zeroshot:"
SCORE_ROWS = 65536  # image embeddings scored at a time: SCORE_ROWS x classes scores in memory


def read_classes(labels: str) -> tuple[str, ...]:
    """Returns the class names of `--labels zeroshot:FILE`: FILE's lines, stripped, without blank lines and lines
    starting with '#'. Raises UsageError for another --labels form, a file that cannot be read as UTF-8 text, a
    repeated name or fewer than 2 names."""
    if not labels.startswith(PREFIX) or not labels[len(PREFIX):]:
        raise UsageError(f"--labels must be zeroshot:FILE (a text file of class names, one a line), got {labels!r}")
    path = labels[len(PREFIX):]
    try:
        with open(path, encoding="utf-8") as file:
            lines = file.read().splitlines()
    except FileNotFoundError:
        raise UsageError(f"--labels: no class file {path}; give a text file with one class name a line") from None
    except UnicodeDecodeError as exc:
        raise UsageError(f"--labels: {path} is not UTF-8 text (byte {exc.start}); save it as UTF-8, one class "
                         "name a line") from None
    except OSError as exc:
        raise UsageError(f"--labels: cannot read {path} ({exc.strerror or type(exc).__name__}); give a readable "
                         "text file with one class name a line") from None
    names = [line.strip() for line in lines]
    classes = tuple(name for name in names if name and not name.startswith("#"))
    check_classes(classes, path)
    return classes


def check_classes(classes: Sequence[str], source: str = "the zero-shot class list") -> None:
    """Raises UsageError unless `classes` (read from `source`) are at least 2 distinct non-empty names."""
    if any(not isinstance(name, str) or not name.strip() for name in classes):
        raise UsageError(f"{source} has an empty or non-text class name; give one class name a line")
    if len(classes) < 2:
        raise UsageError(f"{source} names {len(classes)} class{'' if len(classes) == 1 else 'es'}; zero-shot "
                         "labels need at least 2, one a line")
    seen: set[str] = set()
    for name in classes:
        if name in seen:
            raise UsageError(f"{source} names class {name!r} twice; keep one")
        seen.add(name)


def embedding_model(run: RunDir) -> ModelSpec:
    """Returns the ModelSpec the run's current embed stage embedded its images with; raises UsageError when the
    run has no current embed stage (or holds DataComp embeddings, whose model curate does not record)."""
    from curate.graph import entries, require_current
    from curate.models.loading import ModelSpec

    if "embed" not in entries(run) and any((run.path / "embeddings").glob("*.parquet")):
        raise UsageError("--labels zeroshot needs the model that made the run's embeddings, and these came from "
                         "DataComp .npz files; give --label-column COLUMN instead")
    return ModelSpec(**require_current(run, "embed")["config"]["model"])


def describe(run: RunDir, classes: Sequence[str]) -> dict:
    """Returns how zero-shot labels are made, for a set's source: the classes, the model, the prompt templates."""
    from curate.evaluate.metrics import TEMPLATES

    return dict(classes=list(classes), model=dataclasses.asdict(embedding_model(run)), templates=list(TEMPLATES))


def classifier(spec: ModelSpec, classes: Sequence[str]) -> np.ndarray:
    """Returns the float32 C x D zero-shot classifier of `classes` with the model `spec` (loaded on the CPU): each
    class's prompt embeddings averaged and L2-normalized (curate.evaluate.metrics.zeroshot_weights)."""
    from curate.evaluate.metrics import TEMPLATES, class_prompts, zeroshot_weights
    from curate.evaluate.run import encode_texts
    from curate.models.loading import load_model

    loaded = load_model(spec, "cpu")
    prompts = encode_texts(loaded, class_prompts(list(classes), TEMPLATES))
    return zeroshot_weights(prompts, len(TEMPLATES)).astype(np.float32)


def zeroshot_labels(con: duckdb.DuckDBPyConnection, predicate: str, classes: Sequence[str],
                    weights: np.ndarray) -> dict[str, str | None]:
    """Returns uid -> the class name whose `weights` row scores the sample's image embedding highest (None for a
    sample without one), for every sample of the catalog connection's `samples` that `predicate` selects."""
    sql = ("WITH chosen AS (SELECT uid FROM samples WHERE (\n" + predicate + "\n))\n"
           "SELECT chosen.uid, e.image_embedding FROM chosen LEFT JOIN embeddings e ON e.uid = chosen.uid")
    labels: dict[str, str | None] = {}
    for batch in con.sql(sql).to_arrow_reader(SCORE_ROWS):
        uids, column = batch.column(0).to_pylist(), batch.column(1)
        valid = column.is_valid().to_numpy(zero_copy_only=False)
        labels |= {uid: None for uid, ok in zip(uids, valid, strict=True) if not ok}
        if not valid.any():
            continue
        embedded = column.filter(valid)
        vectors = embedded.flatten().to_numpy(zero_copy_only=False).reshape(len(embedded), -1)
        # Cosine similarity up to a positive factor per row (the weights are unit rows): the same argmax.
        best = np.argmax(vectors.astype(np.float32) @ weights.T, axis=1)
        labels |= {uid: classes[i] for uid, i in zip(np.asarray(uids, dtype=object)[valid], best, strict=True)}
    return labels

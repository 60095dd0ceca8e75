"""Running one stage inside the stage graph (curate.graph): check its inputs, columns, predicate and its own inputs
(its model, its computation when that writes nothing) with nothing recorded, then invalidate what read an older
version of it, record it, and rebuild the catalog in the same step."""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Callable, Iterator
from typing import Any

from curate.catalogs import build_catalog, connect
from curate.catalogs.connection import CATALOG
from curate.catalogs.selection import predicate_columns, select
from curate.errors import UsageError
from curate.graph import (
    COMPLETE,
    RUNNING,
    STALE,
    StageRun,
    column_owners,
    current_versions,
    dependents,
    entries,
    missing_stage,
    version_of,
)
from curate.rundir import DONE, MANIFEST, RunDir
from curate.stages.embeddings import DESCRIPTOR_STAGE, DESCRIPTORS
from curate.version import __version__


def predicate_stages(run: RunDir, where: str | None) -> tuple[str, ...]:
    """Returns the stages whose columns the SQL predicate `where` names, sorted."""
    owners = column_owners(run)
    return tuple(sorted({owners[c] for c in predicate_columns(where) if c in owners}))


def step_version(run: RunDir, step: StageRun) -> str:
    """Returns the version the step has on the run as it stands (its options and its inputs' versions)."""
    versions = current_versions(entries(run))
    return version_of(step, {n: versions.get(n) for n in step.inputs})


def check_plan(run: RunDir, steps: list[StageRun]) -> None:
    """Raises UsageError when running `steps` in order would invalidate a stage a later step (or the step itself)
    reads, or a step reads its own columns or a stage that is missing or stale; changes nothing."""
    stages = entries(run)
    versions = current_versions(stages)
    planned = {s.name for s in steps}
    lost: dict[str, str] = {}  # stage -> the step whose rerun invalidates it
    for step in steps:
        if step.name in step.inputs:
            raise UsageError(f"{step.name} would read its own columns (in --where or a column option); choose its "
                             "input by other stages' columns")
        for name in step.inputs:
            if name in lost:
                raise UsageError(
                    f"{step.name} reads {name}, which running {lost[name]} with these options would make stale; "
                    f"rerun {name} with the same {lost[name]} options first, or pass the ones it last ran with: "
                    f"{json.dumps(stages[lost[name]]['config'], sort_keys=True)}")
            if name not in versions:
                raise missing_stage(run, stages, name)
        version = version_of(step, {n: versions[n] for n in step.inputs})
        if step.name in stages and versions.get(step.name) != version:
            own = dependents(stages, {step.name})
            read = sorted(own & set(step.inputs))
            if read:
                raise UsageError(f"{step.name} reads {read[0]}, which read {step.name}: running {step.name} with "
                                 f"these options would make it stale; choose the input without {read[0]}'s columns")
            lost |= {n: step.name for n in own - planned}
        versions[step.name] = version


def check_columns(run: RunDir, step: StageRun) -> None:
    """Raises UsageError when a column of the step would clash with another stage's in `samples`."""
    owners = column_owners(run)
    for column in step.columns:
        owner = owners.get(column, step.name)
        if owner != step.name:
            raise UsageError(f"stage {step.name} would add the column {column}, which {owner} already adds to "
                             "samples; give the stage another name")


def check_column_prefix(cls: type) -> None:
    """Raises TypeError when a stage class declares a column that does not start with its name and an underscore
    (a programming error, caught when the class is defined)."""
    bad = [c for c in getattr(cls, "columns", ()) if not c.startswith(f"{cls.name}_")]
    if bad:
        raise TypeError(f"{cls.__name__}: columns must start with {cls.name}_: {bad}")


def remove_outputs(run: RunDir, name: str) -> None:
    """Deletes a stage's outputs: scores/<name>/, partitions/<name>/, concepts/<name>.parquet and <name>_*.parquet,
    a descriptor stage's (embed_<set>) descriptors/<set>/, and its completion markers."""
    shutil.rmtree(run.path / "scores" / name, ignore_errors=True)
    shutil.rmtree(run.path / "partitions" / name, ignore_errors=True)
    if name.startswith(DESCRIPTOR_STAGE):
        shutil.rmtree(run.path / DESCRIPTORS / name.removeprefix(DESCRIPTOR_STAGE), ignore_errors=True)
    concepts = run.path / "concepts"
    for path in [concepts / f"{name}.parquet", *concepts.glob(f"{name}_*.parquet")]:
        path.unlink(missing_ok=True)
    shutil.rmtree(run.path / DONE / name, ignore_errors=True)


def _entry(step: StageRun, state: str, version: str, inputs: dict[str, str], **fields) -> dict:
    folders = [step.name] if step.score_folders is None else list(step.score_folders)
    entry = dict(status=state, config=step.config, inputs=inputs, version=version, where=step.where,
                 columns=list(step.columns), score_folders=folders, hint=step.hint)
    return entry | fields  # a stage whose columns depend on its input (ingest) records them among its fields


def check_predicate_runs(run: RunDir, where: str | None) -> None:
    """Raises UsageError (one line) when the predicate `where` fails on the run's samples: it runs once, as a count,
    so one that parses but fails on the data (a cast, an integer division by zero, error()) is refused before the
    step is recorded; returns nothing."""
    if where is None:
        return
    con = connect(run)
    try:
        select(con, where)
    finally:
        con.close()


def _same_version(previous: dict | None, step: StageRun, version: str) -> bool:
    """Returns True when the recorded entry is this step again (same version, or same options when recorded
    before versions): a resume."""
    return previous is not None and previous.get("status") != STALE and (
        previous.get("version") == version
        or ("version" not in previous and previous.get("config") == step.config)
    )


def _check_refused(run: RunDir, step: StageRun, version: str) -> None:
    """Raises UsageError when the run holds the stage with another version and the stage refuses changes (ingest,
    embed); returns nothing."""
    previous = entries(run).get(step.name)
    if step.refuse_changes and previous is not None and not _same_version(previous, step, version):
        raise UsageError(f"{run.path} already holds the {step.name} stage made with other inputs or options; "
                         "pass the same ones to resume, or choose a new --run folder")


def _start(run: RunDir, step: StageRun, version: str, inputs: dict[str, str]) -> None:
    """Marks the step running; when it runs with another version than before, deletes its old outputs and its
    dependents', marks those stale, and rebuilds the catalog, so the step itself queries a consistent one."""
    stages = entries(run)
    if _same_version(stages.get(step.name), step, version):
        return  # the same stage again: resume (or recompute identically)
    for name in sorted(dependents(stages, {step.name})):
        remove_outputs(run, name)
        stages[name] = stages[name] | dict(status=STALE, stale_because=f"{step.name} reran with other options")
    remove_outputs(run, step.name)
    stages[step.name] = _entry(step, RUNNING, version, inputs)
    run.update_manifest(stages=stages)
    if (run.path / CATALOG).exists():
        build_catalog(run)


def _rebuild_after_failure(run: RunDir) -> None:
    """Rebuilds the catalog after a step failed; a catalog that does not build now is left to the next writer, so
    the step's own error is the one reported."""
    if (run.path / MANIFEST).exists():
        with contextlib.suppress(Exception):
            build_catalog(run)


@contextlib.contextmanager
def stage_step(run: RunDir, step: StageRun, prepare: Callable[[], Any] | None = None) -> Iterator[tuple[dict, Any]]:
    """Runs one stage under the run's writer lock, in two phases. First whatever can refuse it, recording nothing:
    its inputs and columns in the graph, a change the stage refuses, and `prepare` (the step's own checks, such as
    loading its model, or all of its work that writes nothing, its input selected with the step's predicate), or
    without one the predicate run on the samples. Then the stage is recorded running (what read an older version of
    it invalidated) and the block runs; it gets a dict to fill with `counts` and other fields to record, and what
    `prepare` returned (None without one). On success the stage is recorded complete; either way the catalog is
    rebuilt, so the run stays queryable."""
    with run.writing():
        check_plan(run, [step])
        check_columns(run, step)
        versions = current_versions(entries(run))
        inputs = {n: versions[n] for n in step.inputs}
        version = version_of(step, inputs)
        _check_refused(run, step, version)
        if prepare is None:
            check_predicate_runs(run, step.where)
            prepared = None
        else:  # it selects its input with the predicate: running that here too would scan the samples twice
            prepared = prepare()
        record: dict = {}
        try:
            _start(run, step, version, inputs)
            yield record, prepared
            stages = entries(run) | {step.name: _entry(step, COMPLETE, version, inputs, **record)}
            run.update_manifest(stages=stages, curate_version=__version__)
        except BaseException:
            _rebuild_after_failure(run)
            raise
        build_catalog(run)

"""The stage graph of a run, as its manifest records it: what each stage read, with which options, and
whether its outputs are still current.

Every stage records in manifest.json its options, the stages it read (declared ones plus those whose columns its
`--where` predicate names) with their versions, the columns it adds to `samples`, and its counts. A stage's
version hashes its name, options and its inputs' versions, so a stage is current when every input is current
and still has the version it read. When a stage reruns with another version, each stage that read it (and each
that read those) is invalidated in the same step: its outputs are deleted, its entry says why it is stale, and
the catalog is rebuilt (curate.stages.step runs that). A step that would invalidate one of its own inputs is
refused before anything changes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from curate.errors import UsageError
from curate.rundir import RunDir

ANNOTATION = "annotation"  # a field of the entries of `curate annotate` stages, whose columns are the user's
COMPLETE, RUNNING, STALE = "complete", "running", "stale"
# How to make a stage that a step needs and the run lacks.
MISSING_HINTS = {
    "ingest": "run `curate ingest INPUTS --run RUN` first",
    "embed": "embed the run first (`curate embed RUN --model MODEL`)",
}


@dataclass(frozen=True)
class StageRun:
    """One run of a stage: its name, the options that decide its outputs, the stages it reads, the predicate
    choosing its input (None: all), the columns it adds to `samples`, and whether other options must be refused
    (a stage too costly to recompute silently, like ingest and embed) instead of recomputed."""

    name: str
    config: dict
    inputs: tuple[str, ...] = ()
    where: str | None = None
    columns: tuple[str, ...] = ()
    score_folders: tuple[str, ...] | None = None  # its folders under scores/ (None: the one named after it)
    refuse_changes: bool = False
    hint: str = field(default="", compare=False)  # how to rerun it, shown where it is stale


def entries(run: RunDir) -> dict[str, dict]:
    """Returns the manifest's stage entries, name -> entry."""
    return run.manifest()["stages"]


def version_of(step: StageRun, input_versions: dict[str, str]) -> str:
    """Returns the version a step would record: a hash of its name, options, predicate and inputs' versions."""
    text = json.dumps([step.name, step.config, step.where, input_versions], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _version(entry: dict, name: str) -> str:
    # Runs made before the stage graph have entries without one: they stand for their config alone.
    return entry.get("version") or version_of(StageRun(name, entry.get("config", {})), {})


def current_versions(stages: dict[str, dict]) -> dict[str, str]:
    """Returns name -> version of every current stage: complete, and its inputs current at the versions it read."""
    versions: dict[str, str] = {}
    pending = dict(stages)
    while True:
        ready = [n for n, e in pending.items() if all(i in versions for i in e.get("inputs", {}))]
        if not ready:
            return versions
        for name in ready:
            entry = pending.pop(name)
            inputs_ok = all(versions[i] == v for i, v in entry.get("inputs", {}).items())
            if entry.get("status") == COMPLETE and inputs_ok:
                versions[name] = _version(entry, name)


def status(run: RunDir) -> dict[str, str]:
    """Returns name -> current, stale or incomplete for every stage the run has recorded."""
    stages = entries(run)
    current = current_versions(stages)
    return {n: "current" if n in current else "incomplete" if e.get("status") == RUNNING else "stale"
            for n, e in stages.items()}


def dependents(stages: dict[str, dict], names: set[str]) -> set[str]:
    """Returns every stage that read one of `names`, directly or through others (not `names` themselves)."""
    found: set[str] = set()
    frontier = set(names)
    while frontier:
        frontier = {n for n, e in stages.items() if frontier & set(e.get("inputs", {})) and n not in found | names}
        found |= frontier
    return found


def column_owners(run: RunDir) -> dict[str, str]:
    """Returns column -> the stage that adds it to `samples`, for every recorded stage."""
    return {c: name for name, entry in entries(run).items() for c in entry.get("columns", ())}


def missing_stage(run: RunDir, stages: dict[str, dict], name: str) -> UsageError:
    """Returns the error for a step that needs stage `name`: missing, unfinished or stale, and how to make it."""
    entry = stages.get(name)
    if entry is None:
        return UsageError(f"{run.path} has no completed {name} stage; "
                          f"{MISSING_HINTS.get(name, f'run the {name} stage first')}")
    hint = f"`{entry['hint']}`" if entry.get("hint") else f"the {name} stage"
    if entry.get("status") == RUNNING:
        return UsageError(f"{run.path} has no completed {name} stage (it did not finish); rerun {hint} to resume it")
    why = entry.get("stale_because", "its inputs changed")
    return UsageError(f"the {name} stage of {run.path} is stale ({why}); rerun {hint}")


def require_current(run: RunDir, name: str) -> dict:
    """Returns the manifest entry of a current stage; raises UsageError saying how to make it otherwise."""
    stages = entries(run)
    if status(run).get(name) != "current":
        raise missing_stage(run, stages, name)
    return stages[name]

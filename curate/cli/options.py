"""Argument types and checks shared by the subcommands."""

from pathlib import Path

from curate.errors import UsageError
from curate.rundir import MANIFEST, RunDir


def positive_int(text: str) -> int:
    """Returns text as an int >= 1; argparse turns the ValueError into a one-line error."""
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


def existing_run(path: str) -> RunDir:
    """Returns the run folder at `path`; raises UsageError when it holds no ingested run."""
    if not (Path(path) / MANIFEST).exists():
        raise UsageError(f"{path} is not a run folder (no {MANIFEST}); run `curate ingest INPUTS --run {path}` first")
    return RunDir(path)

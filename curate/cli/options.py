"""Argument types and checks shared by the subcommands."""

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from curate.errors import UsageError
from curate.rundir import MANIFEST, RunDir

if TYPE_CHECKING:
    from curate.models import ModelSpec


def positive_int(text: str) -> int:
    """Returns text as an int >= 1; argparse turns the ValueError into a one-line error."""
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


def non_negative_int(text: str) -> int:
    """Returns text as an int >= 0; argparse turns the ValueError into a one-line error."""
    value = int(text)
    if value < 0:
        raise ValueError(text)
    return value


def positive_float(text: str) -> float:
    """Returns text as a float > 0; argparse turns the ValueError into a one-line error."""
    value = float(text)
    if not value > 0:
        raise ValueError(text)
    return value


def existing_run(path: str) -> RunDir:
    """Returns the run folder at `path`; raises UsageError when it holds no ingested run."""
    if not (Path(path) / MANIFEST).exists():
        raise UsageError(f"{path} is not a run folder (no {MANIFEST}); run `curate ingest INPUTS --run {path}` first")
    return RunDir(path)


def add_runner_arguments(parser: argparse.ArgumentParser) -> None:
    """Declares --runner and --workers."""
    from curate.runners import RUNNER_NAMES

    parser.add_argument("--runner", choices=RUNNER_NAMES, default="local", help="where to run (default local)")
    parser.add_argument("--workers", type=positive_int, help="Ray: actors (default: one per GPU, else one)")


def runner_options(args: argparse.Namespace) -> dict:
    """Returns the keyword options for the chosen runner."""
    return {"workers": args.workers} if args.runner == "ray" and args.workers else {}


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Declares --model and --pretrained."""
    parser.add_argument("--model", required=True,
                        help="open_clip name (ViT-B-16), hf-hub:org/repo, or a folder from `curate train-dfn`")
    parser.add_argument("--pretrained", help="pretrained tag of a named model (dfn2b) or a checkpoint file")


def model_spec(args: argparse.Namespace) -> "ModelSpec":
    """Returns the ModelSpec the arguments name."""
    from curate.models import ModelSpec

    return ModelSpec(args.model, args.pretrained)

"""Arguments the subcommands and pipelines share: the run folder, the runner, the model, the TorchScript
permission."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from curate.options import positive_int
from curate.rundir import RunDir

if TYPE_CHECKING:
    from curate.models import ModelSpec
    from curate.runners import Runner


def existing_run(path: str) -> RunDir:
    """Returns the run folder at `path`; raises UsageError when it holds no ingested run (curate.api.Run's check)."""
    from curate.api import Run

    return Run(path).dir


WORKERS_HELP = ("how many run at once (default: local 1, in this process; ray: one per CPU, or for embedding one "
                "actor per GPU, else one CPU actor)")


def add_runner_arguments(parser: argparse.ArgumentParser, default: str = "local") -> None:
    """Declares --runner (a registered runner) and --workers, which every runner takes."""
    from curate.runners import RUNNER_NAMES

    parser.add_argument("--runner", choices=RUNNER_NAMES, default=default, help=f"where to run (default {default})")
    parser.add_argument("--workers", type=positive_int, help=WORKERS_HELP)


def runner_from(args: argparse.Namespace, progress: bool = True) -> Runner:
    """Returns the runner the --runner and --workers arguments name."""
    from curate.runners import make_runner

    return make_runner(args.runner, workers=args.workers, progress=progress)


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Declares --model and --pretrained."""
    parser.add_argument("--model", required=True,
                        help="open_clip name (ViT-B-16), hf-hub:org/repo, or a folder from `curate train-dfn`")
    parser.add_argument("--pretrained", help="pretrained tag of a named model (dfn2b) or a checkpoint file")


def add_trust_argument(parser: argparse.ArgumentParser) -> None:
    """Declares --trust-torchscript: permission for this command to run a TorchScript model file (never recorded,
    so each command that loads the file needs it again)."""
    parser.add_argument("--trust-torchscript", action="store_true",
                        help="run a TorchScript model file (TorchScript is code that runs when loaded): pass it only "
                             "for a file from a source you trust; every command that loads the file needs it again")


def model_spec(args: argparse.Namespace) -> ModelSpec:
    """Returns the ModelSpec the arguments name."""
    from curate.models import ModelSpec

    return ModelSpec(args.model, args.pretrained)

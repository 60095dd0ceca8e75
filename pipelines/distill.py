"""Dataset distillation of a run's labelled selection (TESLA: expert trajectories, then a few synthetic images per
class; CDA and SRe2L: a batch-norm teacher, then images recovered from it), in RUN/distilled/<name>/.

    python pipelines/distill.py --run runs/demo --where "dfn_keep" --label-column label --name tesla-ipc10 --ipc 10
    ray submit ray_cluster.yaml pipelines/distill.py -- --run /mnt/efs/runs/demo --label-column label \\
        --name tesla-ipc10 --ipc 10 --experts 20 --runner ray
    python pipelines/distill.py --run runs/demo --label-column label --method cda --ipc 10 --name cda-ipc10

With --runner ray (the default here) TESLA's experts train as parallel Ray tasks and the distillation runs on the
driver; CDA's teacher trains on the driver and its slices (an IPC index of a group of classes each) recover as
parallel Ray tasks. A rerun with the same options resumes. `ray submit` copies only this file: it imports the
installed curate package and nothing beside it.
"""

import argparse
import sys

from curate.cli.distill import add_arguments
from curate.cli.main import OneLineArgumentParser, guarded


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Returns the command-line options: `curate distill`'s, with the run as --run and Ray as the default runner."""
    parser = OneLineArgumentParser(prog="pipelines/distill.py", description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a run folder")
    add_arguments(parser, positional_run=False)
    parser.set_defaults(runner="ray")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Runs the pipeline and prints the set's summary as JSON; returns 0 (bad arguments raise UsageError)."""
    from curate.cli.distill import run

    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(guarded(main))

"""DFN filtering end to end: ingest shards, embed them with a data filtering network, score and keep the best.

    python pipelines/dfn.py --input "pool/{00000..00099}.tar" --run runs/dfn \
        --model ViT-B-16-quickgelu --pretrained dfn2b --keep-fraction 0.3
    ray submit ray_cluster.yaml pipelines/dfn.py -- --input s3://bucket/pool/ --run /mnt/efs/runs/dfn \
        --model models/dfn --keep-fraction 0.3

`ray submit` copies only this file to the head node: it imports the installed curate package and nothing
beside it. Every step resumes: rerun the same command after a failure.
"""

import argparse
import json
import sys

from curate.cli.main import OneLineArgumentParser, guarded
from curate.cli.options import add_runner_arguments, runner_from
from curate.filters.dfn import DFNFilter
from curate.io.samples import ReadOptions
from curate.models import ModelSpec
from curate.options import add_options, options_from, positive_int
from curate.rundir import RunDir
from curate.stages.embed import embed
from curate.stages.ingest import ingest


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Returns the command-line options."""
    parser = OneLineArgumentParser(prog="pipelines/dfn.py", description=__doc__.splitlines()[0])
    parser.add_argument("--input", nargs="+", required=True, help="shards: paths, globs, brace ranges, URLs")
    parser.add_argument("--run", required=True, help="run folder (reruns resume it)")
    parser.add_argument("--model", required=True, help="the DFN: a train-dfn folder, an open_clip name, hf-hub:")
    parser.add_argument("--pretrained", help="pretrained tag or checkpoint file for a named model")
    add_options(parser, DFNFilter)
    add_options(parser, ReadOptions)  # the shards' own columns ingest keeps
    add_runner_arguments(parser, default="ray")
    parser.add_argument("--batch-size", type=positive_int, default=256, help="samples per model batch (default 256)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Runs the pipeline and prints its summary as JSON; returns 0 (bad arguments raise UsageError)."""
    args = parse_args(argv)
    run, runner = RunDir(args.run), runner_from(args)
    method = options_from(DFNFilter, args)  # checked before hours of embedding, not after
    summary = {"ingest": ingest(args.input, run, runner, options_from(ReadOptions, args))}
    summary["embed"] = embed(run, ModelSpec(args.model, args.pretrained), runner, args.batch_size)
    summary["dfn"] = method.apply(run)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(guarded(main))

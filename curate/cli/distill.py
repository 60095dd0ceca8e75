"""Distill a run's labelled selection into a few synthetic images per class (TESLA, CDA or SRe2L), in
RUN/distilled/<name>/."""

import argparse
import json
import sys

from curate.cli.options import add_runner_arguments, existing_run, runner_from
from curate.options import non_negative_int, positive_int

# flag -> (DistillOptions field, type, help); defaults come from DistillOptions.
SETTINGS = {
    "--ipc": ("ipc", positive_int, "synthetic images per class"),
    "--image-size": ("image_size", positive_int, "side the real images are decoded to (center crop)"),
    "--experts": ("experts", positive_int, "expert trajectories to train"),
    "--expert-epochs": ("expert_epochs", positive_int, "epochs each expert trains"),
    "--iterations": ("iterations", positive_int, "distillation iterations (cda, sre2l: recovery iterations of each "
                     "image)"),
    "--syn-steps": ("syn_steps", positive_int, "student steps on the synthetic images per iteration"),
    "--expert-epochs-match": ("expert_epochs_match", positive_int, "expert epochs the student steps must match"),
    "--max-start-epoch": ("max_start_epoch", positive_int, "start epochs are drawn below this"),
    "--lr-img": ("lr_img", float, "learning rate of the synthetic pixels"),
    "--lr-lr": ("lr_lr", float, "learning rate of the learned student learning rate"),
    "--lr-teacher": ("lr_teacher", float, "initial student learning rate"),
    "--batch-syn": ("batch_syn", positive_int, "synthetic images per student step (default: all)"),
    "--width": ("width", positive_int, "ConvNet width of the experts and the student"),
    "--depth": ("depth", positive_int, "ConvNet depth"),
    "--seed": ("seed", int, "seed of every random choice"),
    "--teacher": ("teacher", str, "cda, sre2l: the batch-norm teacher, resnet18 (small-image) or convnet (ConvNet "
                  "with BN, --width/--depth)"),
    "--teacher-epochs": ("teacher_epochs", positive_int, "cda, sre2l: epochs the teacher trains"),
    "--teacher-lr": ("teacher_lr", float, "cda, sre2l: the teacher's SGD learning rate (cosine)"),
    "--teacher-batch": ("teacher_batch", positive_int, "cda, sre2l: the teacher's batch"),
    "--teacher-checkpoint": ("teacher_checkpoint", str, "cda, sre2l: a PyTorch state_dict FILE of the --teacher "
                             "architecture over the selection's classes, used instead of training one"),
    "--recover-lr": ("recover_lr", float, "cda, sre2l: Adam learning rate of the pixels (cosine)"),
    "--r-bn": ("r_bn", float, "cda, sre2l: weight of the BN-statistics matching loss"),
    "--first-bn-multiplier": ("first_bn_multiplier", float, "cda, sre2l: extra weight of the first BN layer"),
    "--jitter": ("jitter", int, "cda, sre2l: largest random roll, in pixels"),
    "--curriculum": ("curriculum", str, "cda: how the crop's lower scale bound falls from 1 to --min-scale: "
                     "cosine, linear, step or none"),
    "--milestone": ("milestone", float, "cda: share of the iterations by which the curriculum reaches --min-scale"),
    "--min-scale": ("min_scale", float, "cda, sre2l: the crop's lowest scale bound"),
    "--class-batch": ("class_batch", positive_int, "cda, sre2l: classes recovered together (sharing BN statistics) "
                      "in one slice"),
    "--relabel-epochs": ("relabel_epochs", non_negative_int, "cda, sre2l: student epochs of FKD soft labels (the "
                         "teacher's logits on stored crops; 0: hard labels only)"),
    "--relabel-temperature": ("relabel_temperature", float, "cda, sre2l: the soft labels' KD temperature"),
}
# Settings whose default depends on --method (DistillOptions resolves None).
METHOD_DEFAULTS = {"iterations": "5000 for tesla, 1000 for cda and sre2l",
                   "curriculum": "cosine for cda, none for sre2l"}


def add_arguments(parser: argparse.ArgumentParser, positional_run: bool = True) -> None:
    """Declares the distill command's options (the run folder as a positional argument unless told not to)."""
    from curate.distill.run import METHODS, DistillOptions

    defaults = DistillOptions()
    if positional_run:
        parser.add_argument("run", help="a run folder")
    parser.add_argument("--name", required=True, help="the set's folder name under RUN/distilled/")
    labels = parser.add_mutually_exclusive_group(required=True)
    labels.add_argument("--label-column", help="the samples column holding each sample's class")
    labels.add_argument("--labels", metavar="zeroshot:FILE",
                        help="label each sample by zero-shot classification of its image embedding with the run's "
                             "embedding model over FILE's class names (one a line; '#' lines are comments)")
    parser.add_argument("--where", help="SQL predicate on the samples view (default: every sample)")
    parser.add_argument("--method", default="tesla", help=f"one of {', '.join(METHODS)} (default tesla)")
    for flag, (field, kind, text) in SETTINGS.items():
        default = None if field in METHOD_DEFAULTS else getattr(defaults, field)
        shown = METHOD_DEFAULTS.get(field, default)
        parser.add_argument(flag, type=kind, dest=field, default=default, help=f"{text} (default {shown})")
    parser.add_argument("--soft-labels", action="store_true", help="learn against the experts' soft labels")
    parser.add_argument("--checkpoint-every", type=positive_int, default=100,
                        help="iterations between checkpoints, from which a rerun resumes (default 100)")
    parser.add_argument("--progress", action="store_true", help="show progress bars")
    add_runner_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Distills (or resumes) the set and prints its distilled.json as JSON; returns 0."""
    from curate.distill.run import DistillOptions, distill_run
    from curate.distill.zeroshot import read_classes

    classes = None if args.labels is None else read_classes(args.labels)
    settings = {field: getattr(args, field) for field, _, _ in SETTINGS.values()}
    options = DistillOptions(label_column=args.label_column, zeroshot_classes=classes, where=args.where,
                             method=args.method, soft_labels=args.soft_labels, **settings)
    runner = runner_from(args, progress=args.progress)
    summary = distill_run(existing_run(args.run), args.name, options, runner, progress=args.progress,
                          checkpoint_every=args.checkpoint_every)
    print(json.dumps(summary, default=str))
    for warning in summary.get("warnings", []):
        print(f"curate distill: warning: {warning}", file=sys.stderr)
    return 0


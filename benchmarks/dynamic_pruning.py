"""Dynamic pruning, accuracy against measured saved cost: full data, SeTa, InfoBatch and random dynamic pruning at
prune ratios that save about 30%, 50% and 70% of the forward passes, over seeds, on two tasks:

- classify: the small CNN of curate.dynamic.classify on labelled synth images (the first --classes concepts as
  classes; a training set of --per-class images per class and a test set of 50 per class drawn with another
  seed), trained for --epochs, long enough that full data converges (the papers' regime);
- clip: `curate evaluate --dynamic` (a tiny CLIP from scratch on the synth pool, zero-shot top-1 on its held-out
  set), with the pruned epochs of --samples-seen.

    python benchmarks/dynamic_pruning.py [--tasks classify,clip] [--variants full,seta,random] [--seeds 0,1,2]

SeTa runs in two settings: its code defaults (10 groups, window 0.5) and its CIFAR setting (5 groups, window 0.9).
Each variant's prune ratio for a target is calibrated by a dry run of its selection sizes (losses drawn from an
exponential distribution); the x axis is always the saved fraction measured in the real run. A target a variant
cannot reach (InfoBatch only prunes below-mean samples, at most 90% of them; SeTa's default window alone saves
about 45%) is run at the ratio that comes closest. Writes benchmarks/results/dynamic_pruning.json and .png; a run
of some tasks or --variants replaces only those rows in the JSON and keeps the rest (refused when the task's
rows there were run with other options).
"""

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import torch
from common import RESULTS, ensure_synth, write_results

from curate.cli.evaluate import seed_list
from curate.evaluate.run import DynamicPruning

VARIANTS: dict[str, tuple[str, dict]] = {  # label: (pruner, its options)
    "seta": ("seta", {}),
    "seta-cifar": ("seta", dict(num_groups=5, window_scale=0.9)),
    "infobatch": ("infobatch", {}),
    "random": ("random", {}),
}
JSON_NAME = "dynamic_pruning"
TASK_OPTIONS = {"classify": ("seeds", "targets", "classes", "epochs", "per_class", "width"),  # the JSON's configs
                "clip": ("seeds", "targets", "pool", "samples_seen")}


def dynamic_for(variant: str, ratio: float | None) -> DynamicPruning:
    """Returns the variant's pruner configuration at `ratio` ("full": random pruning at ratio 0, all the data)."""
    method, options = ("random", {}) if variant == "full" else VARIANTS[variant]
    return DynamicPruning(method, 0.0 if ratio is None else ratio, tuple(options.items()))


def dry_run_saved(variant: str, ratio: float, n: int, epochs: int) -> float:
    """Returns the saved fraction of the variant's selections over `epochs`, losses exponential and fresh."""
    pruner = dynamic_for(variant, ratio).pruner(n, epochs)
    generator = torch.Generator().manual_seed(0)
    for epoch in range(epochs):
        pruner.set_epoch(epoch)
        chosen = pruner.selection()
        pruner.update(chosen, torch.empty(len(chosen)).exponential_(generator=generator))
    return pruner.stats().saved_fraction


def calibrate(variant: str, target: float, n: int, epochs: int) -> float:
    """Returns the prune ratio in [0.05, 0.9] whose dry run saves closest to `target`."""
    grid = [round(0.05 * i, 2) for i in range(1, 19)]
    return min(grid, key=lambda r: (abs(dry_run_saved(variant, r, n, epochs) - target), -r))


def plans_for(args: argparse.Namespace, n: int, epochs: int) -> list[tuple[str, float | None]]:
    """Returns (variant, prune ratio) to run: full data, then each variant calibrated to each target (only those
    in args.variants)."""
    plans: list[tuple[str, float | None]] = [("full", None)] if "full" in args.variants else []
    for variant in (v for v in VARIANTS if v in args.variants):  # two targets may calibrate to one ratio
        plans += sorted({(variant, calibrate(variant, t, n, epochs)) for t in args.targets}, key=lambda p: p[1])
    print("plans:", plans)
    return plans


def first_classes(images: torch.Tensor, labels: torch.Tensor, names: list[str],
                  count: int) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Returns the images, labels and names of the first `count` classes only."""
    mask = labels < count
    return images[mask], labels[mask], names[:count]


def classify_data(args: argparse.Namespace) -> tuple[torch.Tensor, torch.Tensor, list[str], torch.Tensor,
                                                     torch.Tensor]:
    """Returns the classify task's training images, labels, class names, test images and test labels
    (generated into args.work the first time)."""
    from curate.dynamic.classify import load_labelled

    train = ensure_synth(args.work / f"classify-train-{args.per_class}", 4, hq_samples=0, seed=1,
                         heldout_per_concept=args.per_class)
    test = ensure_synth(args.work / "classify-test-50", 4, hq_samples=0, seed=2, heldout_per_concept=50)
    images, labels, all_names = load_labelled(train / "heldout.parquet", 32)
    test = load_labelled(test / "heldout.parquet", 32, classnames=all_names)
    images, labels, names = first_classes(images, labels, all_names, args.classes)
    test_images, test_labels, _ = first_classes(*test, args.classes)
    return images, labels, names, test_images, test_labels


def classify_runs(args: argparse.Namespace) -> list[dict]:
    """Trains the classifier for each calibrated plan and seed; returns one row per run."""
    from curate.dynamic.classify import ClassifyConfig, accuracy, train_classifier

    images, labels, names, test_images, test_labels = classify_data(args)
    rows = []
    for method, ratio in plans_for(args, len(images), args.epochs):
        for seed in args.seeds:
            config = ClassifyConfig(epochs=args.epochs, width=args.width, seed=seed)
            pruner = dynamic_for(method, ratio).pruner(len(images), args.epochs, seed)
            model, result = train_classifier(images, labels, len(names), config, pruner)
            rows.append(dict(task="classify", method=method, prune_ratio=ratio, seed=seed,
                             accuracy=accuracy(model, test_images, test_labels), saved=result.saved_fraction,
                             forwarded=result.samples_forwarded, seconds=round(result.seconds, 1)))
            print(rows[-1])
    return rows


def clip_runs(args: argparse.Namespace) -> list[dict]:
    """Runs `curate evaluate` with each calibrated plan's dynamic pruning on the synth pool; one row per run."""
    from curate.evaluate.run import evaluate_subset
    from curate.rundir import RunDir
    from curate.stages.ingest import ingest

    synth = ensure_synth(args.work / "clip-pool", args.pool, hq_samples=0)
    run = RunDir(args.work / "clip-run")
    kept = ingest([str(synth / "pool")], run, progress=False)["kept"]
    rows = []
    for method, ratio in plans_for(args, kept, -(-args.samples_seen // kept)):
        dynamic = dynamic_for(method, ratio)  # full data through the same pruned-epoch loop
        result = evaluate_subset(run, None, synth / "heldout.parquet", args.samples_seen, args.seeds,
                                 progress=False, dynamic=dynamic)
        for seed in result["per_seed"]:
            rows.append(dict(task="clip", method=method, prune_ratio=ratio, seed=seed["seed"],
                             accuracy=seed["zeroshot_top1"], saved=seed["saved_fraction"],
                             forwarded=seed["samples_forwarded"], seconds=seed["wall_seconds"]))
            print(rows[-1])
    return rows


def summarize(rows: list[dict], keys: tuple[str, ...] = ("task", "method", "prune_ratio")) -> list[dict]:
    """Returns mean and std of accuracy and mean saved fraction per distinct value of `keys` (over seeds)."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault(tuple(row[k] for k in keys), []).append(row)
    out = []
    for values, runs in groups.items():
        acc, saved = [r["accuracy"] for r in runs], [r["saved"] for r in runs]
        out.append(dict(zip(keys, values, strict=True), accuracy=statistics.fmean(acc),
                        accuracy_std=statistics.stdev(acc) if len(acc) > 1 else 0.0, saved=statistics.fmean(saved)))
    return out


def plot(summary: list[dict], path: Path) -> None:
    """Writes accuracy against measured saved fraction, one panel per task, a line per method."""
    from curate.plots import save_figure, subplots

    tasks = sorted({s["task"] for s in summary})
    fig, axes = subplots(1, len(tasks), figsize=(6 * len(tasks), 4), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        full = [s for s in summary if s["task"] == task and s["method"] == "full"]
        for s in full:
            ax.axhline(s["accuracy"], color="black", linestyle="--", label="full data")
        for method in VARIANTS:
            points = sorted((s for s in summary if s["task"] == task and s["method"] == method),
                            key=lambda s: s["saved"])
            ax.errorbar([p["saved"] for p in points], [p["accuracy"] for p in points],
                        yerr=[p["accuracy_std"] for p in points], marker="o", capsize=3, label=method)
        ax.set(xlabel="saved fraction (measured)", ylabel="top-1 accuracy", title=task)
        ax.legend()
    save_figure(fig, path, dpi=110)


def add_classify_options(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Adds the classify task's options (seeds, data, epochs, CNN width, work folder); returns the parser."""
    parser.add_argument("--seeds", type=seed_list, default=[0, 1, 2])
    parser.add_argument("--classes", type=int, default=40, help="classify: classes (the first of the concepts)")
    parser.add_argument("--epochs", type=int, default=80, help="classify: epochs")
    parser.add_argument("--per-class", type=int, default=40, help="classify: training images per class")
    parser.add_argument("--width", type=int, default=16, help="classify: CNN width")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "curate-bench-dynamic")
    return parser


def task_list(text: str) -> list[str]:
    """Returns the comma-separated tasks; raises a one-line error naming the known ones."""
    if unknown := [t for t in text.split(",") if t not in TASK_OPTIONS]:
        raise argparse.ArgumentTypeError(f"unknown task(s) {unknown}; choose from {','.join(TASK_OPTIONS)}")
    return text.split(",")


def variant_list(text: str) -> list[str]:
    """Returns the comma-separated variants; raises a one-line error naming the known ones."""
    variants, known = text.split(","), ["full", *VARIANTS]
    if unknown := [v for v in variants if v not in known]:
        raise argparse.ArgumentTypeError(f"unknown variant(s) {unknown}; choose from {','.join(known)}")
    return variants


def parse_args() -> argparse.Namespace:
    """Returns the command-line options."""
    parser = add_classify_options(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    parser.add_argument("--tasks", type=task_list, default=["classify", "clip"])
    parser.add_argument("--variants", type=variant_list, default=["full", *VARIANTS],
                        help="which plans to run; the JSON's rows of the others are kept")
    parser.add_argument("--targets", type=lambda t: [float(s) for s in t.split(",")], default=[0.3, 0.5, 0.7])
    parser.add_argument("--pool", type=int, default=1200, help="clip: synth pool size")
    parser.add_argument("--samples-seen", type=int, default=36_000, help="clip: full-data budget (30 epochs)")
    return parser.parse_args()


def merged_configs(previous: dict, args: argparse.Namespace, tasks: list[str]) -> dict:
    """Returns the JSON's per-task configs updated with this run's options and variants; exits with a one-line
    error when a task would mix rows run with different options."""
    configs = dict(previous)
    for task in tasks:
        options = {k: str(getattr(args, k)) for k in TASK_OPTIONS[task]}
        before = previous.get(task, {})
        kept = [v for v in before.get("variants", "").split(",") if v and v not in args.variants]
        if kept and (clash := {k: before[k] for k in options if before.get(k, options[k]) != options[k]}):
            sys.exit(f"error: the JSON's {task} rows of {','.join(kept)} were run with {clash}; "
                     f"pass the same options or rerun all variants")
        configs[task] = options | dict(variants=",".join(kept + args.variants))
    return configs


def main() -> None:
    """Runs the benchmark, prints its figures and writes its results."""
    args = parse_args()
    tasks = args.tasks
    previous = RESULTS / f"{JSON_NAME}.json"
    before = json.loads(previous.read_text()) if previous.exists() else dict(configs={}, runs=[])
    configs = merged_configs(before.get("configs", {}), args, tasks)
    rows = [r for r in before["runs"] if r["task"] not in tasks or r["method"] not in args.variants]
    rows += (classify_runs(args) if "classify" in tasks else []) + (clip_runs(args) if "clip" in tasks else [])
    summary = summarize(rows)
    RESULTS.mkdir(exist_ok=True)
    plot(summary, RESULTS / "dynamic_pruning.png")
    path = write_results(JSON_NAME, dict(configs=configs, summary=summary, runs=rows))
    print(f"wrote {path} and {RESULTS / 'dynamic_pruning.png'}")


if __name__ == "__main__":
    main()

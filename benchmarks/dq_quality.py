"""Dataset quantization quality: a small CNN trained on DQ subsets against random, one plain GraphCut coreset,
k-center greedy and the full data; and CLIP zero-shot with DQ after the DFN against DFN alone and DFN + DBP.

    python benchmarks/dq_quality.py [--tasks digits,synth,clip] [--seeds 0,1,2] [--fractions 0.1,0.2,0.3,0.6]

- digits: scikit-learn's 1,797 real 8 x 8 handwritten digits (upscaled to 16 px), a fixed stratified split:
  two thirds train, the held-out third tests;
- synth: labelled synth images, the first --classes concepts, --per-class training images per class, tested on
  50 per class drawn with another seed;
- clip: `curate evaluate`'s fixed-compute training (a tiny CLIP from scratch, zero-shot top-1 on the held-out
  set) on the synth pool's DFN top 40%, then DQ keeping half of it, against DFN + DBP and DFN alone (its top 20%)
  at the same size, the DFN's 40% and random, 3 seeds each.

Every selection keeps the same number per class (DQ's shares: int(N * fraction) in all) and every subset trains
the same epochs (the paper's protocol). DQ: 10 GraphCut bins per class (the reference's --per label setting),
then the same share of each bin at random. Features (both, as benchmarks/coresets.py says): the embeddings of a
tiny CLIP trained on the split and the reference's last-layer gradient features. Writes
benchmarks/results/dq_quality.json and .png; a run of some --tasks keeps the other tasks' rows.
"""

import argparse
import hashlib
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import numpy as np
import torch
from common import RESULTS, RowLog, dfn_scored_run, ensure_synth, write_results
from coresets import SELECTIONS, class_budgets, clip_features, gradient_features, uniform

from curate.cli.evaluate import seed_list
from curate.dynamic.classify import ClassifyConfig, accuracy, load_labelled, to_tensor, train_classifier

JSON_NAME = "dq_quality"
TASKS = ("digits", "synth", "clip")
FEATURE_EPOCHS = 5  # the gradient features' CNN: trained briefly on all the data (the reference's early training)


def row_log(args: argparse.Namespace, task: str) -> RowLog:
    """Returns the task's row log, named by the options that change the figures."""
    ignored = ("work", "tasks", "threads")  # they do not change the figures
    options = json.dumps({k: str(v) for k, v in sorted(vars(args).items()) if k not in ignored})
    path = args.work / f"rows-{task}-{hashlib.sha1(options.encode()).hexdigest()[:12]}.jsonl"
    return RowLog(path, ("method", "features", "fraction", "seed"))


def standardizer(pixels: np.ndarray):
    """Returns a function from uint8 N x S x S x 3 pixels to float images standardized by `pixels`' per-channel
    statistics, as to_tensor standardizes a whole training set (so a subset keeps the set's scale)."""
    whole = torch.from_numpy(pixels).permute(0, 3, 1, 2).float().div_(255)
    mean, std = whole.mean(dim=(0, 2, 3), keepdim=True), whole.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
    return lambda p: (torch.from_numpy(p).permute(0, 3, 1, 2).float().div_(255) - mean) / std


def digits_task() -> dict:
    """Returns the digits task: 16-px train/test tensors, labels, 32-px training pixels and captions, config."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = np.repeat((digits.images * (255 / 16)).round().astype(np.uint8)[..., None], 3, axis=3)
    rng = np.random.default_rng(0)
    test = np.zeros(len(pixels), dtype=bool)
    for c in range(10):
        rows = rng.permutation(np.flatnonzero(digits.target == c))
        test[rows[: len(rows) // 3]] = True
    big = pixels.repeat(2, axis=1).repeat(2, axis=2)  # 16 px for the CNN
    names = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    return dict(images=to_tensor(big[~test]), labels=torch.as_tensor(digits.target[~test]),
                test_images=to_tensor(big[test]), test_labels=torch.as_tensor(digits.target[test]), classes=10,
                pixels=big[~test], standardize=standardizer(big[~test]),
                clip_pixels=big[~test].repeat(2, axis=1).repeat(2, axis=2),
                captions=[f"a photo of the digit {names[c]}" for c in digits.target[~test]],
                config=dict(pad=2, flip=False))


def synth_task(args: argparse.Namespace) -> dict:
    """Returns the synth task (as digits_task), generated into args.work the first time."""
    from curate.models.heldout import load_heldout

    train = ensure_synth(args.work / f"train-{args.per_class}", 4, hq_samples=0, seed=1,
                         heldout_per_concept=args.per_class)
    test = ensure_synth(args.work / "test-50", 4, hq_samples=0, seed=2, heldout_per_concept=50)
    images, labels, names = load_labelled(train / "heldout.parquet", 32)
    test_images, test_labels, _ = load_labelled(test / "heldout.parquet", 32, classnames=names)
    pixels = load_heldout(train / "heldout.parquet", 32).pixels  # every class: `images` has their statistics
    keep, keep_test = labels < args.classes, test_labels < args.classes
    return dict(images=images[keep], labels=labels[keep], test_images=test_images[keep_test],
                test_labels=test_labels[keep_test], classes=args.classes, pixels=pixels[keep.numpy()],
                standardize=standardizer(pixels),
                clip_pixels=pixels[keep.numpy()],
                captions=[f"a photo of a {names[c]}" for c in labels[keep]], config=dict(pad=4, flip=True))


def feature_model(task: dict, config: dict) -> torch.nn.Module:
    """Returns the CNN of the gradient features: trained FEATURE_EPOCHS on all the task's training images."""
    model, _ = train_classifier(task["images"], task["labels"], task["classes"],
                                ClassifyConfig(**config | dict(epochs=FEATURE_EPOCHS)))
    return model


def classify_rows(task_name: str, task: dict, args: argparse.Namespace) -> list[dict]:
    """Trains the CNN on every selection, fraction and seed, and on the full data; returns one row per run."""
    labels = task["labels"].numpy()
    config = dict(epochs=args.epochs, batch_size=args.batch_size, width=args.width, **task["config"])
    features = {"clip": clip_features(task["clip_pixels"], task["captions"], seed=0),
                "gradient": gradient_features(feature_model(task, config), task["images"], task["labels"])}
    plans = [("full", "-", None)] + [("random", "-", f) for f in args.fractions]
    plans += [(m, kind, f) for kind in features for m in SELECTIONS for f in args.fractions]
    log = row_log(args, task_name)
    rows = []
    for method, kind, fraction in plans:
        for seed in args.seeds:
            if row := log.done.get((method, kind, fraction or 1.0, seed)):
                rows.append(row)
                continue
            if fraction is None:
                chosen = np.arange(len(labels))
            else:
                select = SELECTIONS.get(method, uniform)
                chosen = select(features.get(kind), labels, class_budgets(labels, fraction), seed)
            model, result = train_classifier(task["images"][chosen], task["labels"][chosen], task["classes"],
                                             ClassifyConfig(**config, seed=seed))
            rows.append(dict(task=task_name, method=method, features=kind, fraction=fraction or 1.0, seed=seed,
                             size=len(chosen), accuracy=accuracy(model, task["test_images"], task["test_labels"]),
                             seconds=round(result.seconds, 1)))
            log.add(rows[-1])
    return rows


def clip_rows(args: argparse.Namespace) -> list[dict]:
    """Runs `curate evaluate`'s fixed-compute training on DQ after the DFN and its comparisons; one row per seed."""
    from curate.evaluate.baselines import random_subset
    from curate.evaluate.run import evaluate_subset
    from curate.filters.dbp import DBP
    from curate.filters.dq import DQ
    from curate.stages.embeddings import load_embeddings

    synth = ensure_synth(args.work / f"pool-{args.pool}", args.pool)
    run, _ = dfn_scored_run(synth, args.work, 0.4, run_name=f"run-{args.pool}")
    size = DQ(keep_fraction=0.5, where="dfn_keep").apply(run, progress=False)["kept"]
    embedded = len(load_embeddings(run).uids)  # DBP's fraction is of every embedded sample
    assert DBP(keep_fraction=(size + 0.5) / embedded, where="dfn_keep").apply(run, progress=False)["kept"] == size
    subsets = {"DFN + DQ": "dq_keep", "DFN + DBP": "dbp_keep",
               "DFN alone": f"uid IN (SELECT uid FROM samples ORDER BY dfn_score DESC, uid LIMIT {size})",
               "DFN 40%": "dfn_keep", "random": random_subset(size, 0)}
    log = row_log(args, "clip")
    rows = []
    for label, where in subsets.items():
        if all((label, "-", None, seed) in log.done for seed in args.seeds):
            rows += [log.done[label, "-", None, seed] for seed in args.seeds]
            continue
        result = evaluate_subset(run, where, synth / "heldout.parquet", args.samples_seen, args.seeds,
                                 progress=False)
        for seed in result["per_seed"]:
            rows.append(dict(task="clip", method=label, features="-", fraction=None, seed=seed["seed"],
                             size=result["subset_size"], accuracy=seed["zeroshot_top1"],
                             seconds=round(seed["wall_seconds"], 1)))
            log.add(rows[-1])
    return rows


def summarize(rows: list[dict]) -> list[dict]:
    """Returns mean and std of accuracy over seeds per (task, method, features, fraction)."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["task"], row["method"], row["features"], row["fraction"]), []).append(row)
    return [dict(task=t, method=m, features=k, fraction=f, size=runs[0]["size"],
                 accuracy=statistics.fmean(r["accuracy"] for r in runs),
                 accuracy_std=statistics.stdev([r["accuracy"] for r in runs]) if len(runs) > 1 else 0.0)
            for (t, m, k, f), runs in groups.items()]


def targets(summary: list[dict]) -> list[dict]:
    """Returns the issue's targets per task and features: DQ >= random at every fraction, DQ > plain GraphCut at
    30% and 60%, DQ at 60% within 0.5 points of the full data; each with the figures and whether it holds."""
    mean = {(s["task"], s["method"], s["features"], s["fraction"]): s["accuracy"] for s in summary}
    checks = []
    for task, kind in sorted({(s["task"], s["features"]) for s in summary if s["method"] == "dq"}):
        fractions = sorted(f for (t, m, k, f) in mean if (t, m, k) == (task, "dq", kind))
        for f in fractions:
            dq = mean[task, "dq", kind, f]
            checks.append(dict(task=task, features=kind, target=f"DQ >= random at {f:.0%}", dq=dq,
                               other=mean[task, "random", "-", f], holds=dq >= mean[task, "random", "-", f]))
            if f in (0.3, 0.6):
                checks.append(dict(task=task, features=kind, target=f"DQ > GraphCut at {f:.0%}", dq=dq,
                                   other=mean[task, "graphcut", kind, f], holds=dq > mean[task, "graphcut", kind, f]))
        if 0.6 in fractions:
            full = mean[task, "full", "-", 1.0]
            checks.append(dict(task=task, features=kind, target="DQ at 60% within 0.5 pt of full",
                               dq=mean[task, "dq", kind, 0.6], other=full,
                               holds=mean[task, "dq", kind, 0.6] >= full - 0.005))
    return checks


def plot(summary: list[dict], path: Path) -> None:
    """Writes accuracy against keep fraction, a panel per classification task and features, a line per method."""
    from curate.plots import save_figure, subplots

    panels = sorted({(s["task"], s["features"]) for s in summary if s["method"] in SELECTIONS})
    fig, axes = subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False)
    for ax, (task, kind) in zip(axes[0], panels, strict=True):
        for s in (s for s in summary if (s["task"], s["method"]) == (task, "full")):
            ax.axhline(s["accuracy"], color="black", linestyle="--", label="full data")
        for method, features in [("random", "-"), *((m, kind) for m in SELECTIONS)]:
            points = sorted((s for s in summary if (s["task"], s["method"], s["features"]) == (task, method, features)),
                            key=lambda s: s["fraction"])
            ax.errorbar([p["fraction"] for p in points], [p["accuracy"] for p in points],
                        yerr=[p["accuracy_std"] for p in points], marker="o", capsize=3, label=method)
        ax.set(xlabel="keep fraction", ylabel="top-1 accuracy (held out)", title=f"{task}, {kind} features")
        ax.legend()
    save_figure(fig, path, dpi=110)


def task_list(text: str) -> list[str]:
    """Returns the comma-separated tasks; raises a one-line error naming the known ones."""
    if unknown := [t for t in text.split(",") if t not in TASKS]:
        raise argparse.ArgumentTypeError(f"unknown task(s) {unknown}; choose from {','.join(TASKS)}")
    return text.split(",")


def parse_args(extra: list[tuple] = ()) -> argparse.Namespace:
    """Returns the benchmark's options, with `extra` ones as (flag, type, default, help) (dq_pixels.py adds some)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for flag, kind, default, text in extra:
        parser.add_argument(flag, type=kind, default=default, help=text)
    parser.add_argument("--tasks", default=",".join(TASKS), type=task_list)
    parser.add_argument("--seeds", type=seed_list, default=[0, 1, 2])
    parser.add_argument("--fractions", default=[0.1, 0.2, 0.3, 0.6],
                        type=lambda s: [float(f) for f in s.split(",")])
    parser.add_argument("--epochs", type=int, default=40, help="CNN epochs on every subset")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--width", type=int, default=16, help="CNN width")
    parser.add_argument("--classes", type=int, default=20, help="synth: classes (the first concepts)")
    parser.add_argument("--per-class", type=int, default=100, help="synth: training images per class")
    parser.add_argument("--pool", type=int, default=8000, help="clip: synth pool samples")
    parser.add_argument("--samples-seen", type=int, default=16000, help="clip: samples each subset trains on")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's own choice)")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "curate-bench-dq")
    return parser.parse_args()


def main() -> None:
    """Runs the tasks, prints the summary and targets, and writes the results (other tasks' rows kept)."""
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for task in args.tasks:
        rows += clip_rows(args) if task == "clip" else classify_rows(
            task, digits_task() if task == "digits" else synth_task(args), args)
    path = RESULTS / f"{JSON_NAME}.json"
    this_run = {k: str(v) for k, v in vars(args).items() if k not in ("work", "tasks")}
    options = {task: this_run for task in args.tasks}
    if path.exists():  # the other tasks' rows stay, with the options they were run with
        previous = json.loads(path.read_text())
        rows += [r for r in previous["runs"] if r["task"] not in args.tasks]
        options |= {t: o for t, o in previous["options"].items() if t not in args.tasks and t in TASKS}
    summary = summarize(rows)
    checks = targets(summary)
    for s in summary:
        print(f"{s['task']:7s} {s['method']:10s} {s['features']:8s} {s['fraction'] or '-'!s:5s} n={s['size']:<5d}"
              f" top-1 {s['accuracy']:.4f} ± {s['accuracy_std']:.4f}")
    for c in checks:
        print(f"{'met    ' if c['holds'] else 'NOT MET'} {c['task']} {c['features']}: {c['target']}: "
              f"{c['dq']:.4f} vs {c['other']:.4f}")
    RESULTS.mkdir(exist_ok=True)
    plot(summary, RESULTS / f"{JSON_NAME}.png")
    print(f"wrote {write_results(JSON_NAME, dict(options=options, summary=summary, targets=checks, runs=rows))}")


if __name__ == "__main__":
    main()

"""Dataset distillation quality: TESLA's distilled sets against random real images, herding and the full data,
all evaluated by the papers' protocol (curate.distill.evaluate: fresh ConvNet-3s trained on the set alone).

    python benchmarks/distill.py [--tasks digits,synth] [--ipc 1,10] [--seeds 0,1,2] [--experts 10]
                                 [--expert-epochs 30] [--iterations 1000] [--eval-epochs 300] [--threads 1]

Data:
- digits: scikit-learn's 1,797 real 8 x 8 handwritten digits, upsampled (nearest) to --size px, 3 channels; a fixed
  stratified split (a third of each class held out, numpy default_rng(0), as benchmarks/dq_quality.py);
- synth: labelled synth images (benchmarks/common.ensure_synth), the first --classes concepts, --per-class training
  images per class at --synth-size px, tested on 50 per class generated with another seed.
Both are standardized per channel by the training split's mean and std (the test split too).

Per task: --experts expert trajectories (curate.distill.experts, the reference buffer.py recipe, --expert-epochs
epochs, batch --expert-batch); per IPC, TESLA (curate.distill.tesla) with hard labels and with soft labels (the
reference's --teacher_label), its hyper-parameters per IPC from the reference's CIFAR-10 commands unless given
(IPC 1: expert_epochs M 2, max_start_epoch 5, lr_lr 1e-7; IPC 10 and others: 2, 20, 1e-5; lr_img 1000,
lr_teacher 0.01; max_start_epoch is cut to fit the experts' epochs). Departure: syn_steps defaults to the experts'
own SGD steps over the M matched epochs (M x ceil(N / expert batch): 10 on digits) instead of the reference's 50
(IPC 1) or 30 (IPC 10). Those assume CIFAR-10's 196 expert steps per epoch; on a 1,201-image split an expert epoch
is 5 steps, so 50 student steps at the expert's lr overshoot the target tenfold (the matching loss starts at 44 and
the images blow up: 5-12% accuracy), while 10 steps took IPC 1 from 72% (random) to 90% in 60 iterations.
The set is evaluated at the --curve iteration counts (the distillation resumes from its checkpoint between them),
the last one being --iterations. Soft labels need experts that are already good at the matched epochs: with 3
experts of 6 epochs (30 SGD steps at lr 0.01, no momentum) the target expert gave every synthetic image the same
class and the soft-label sets scored 10-17%; a smaller --expert-batch or more --expert-epochs buys expert steps.
Baselines at the same IPC: random real images (a fresh draw per seed), herding (curate.distill.baselines) on the
--herding-features (expert: the penultimate features of expert 0 after its last epoch, a ConvNet trained on the
real data, as DC/DM use a trained ConvNet's embedding; pixels: the flattened standardized pixels), and the full
training split trained --full-epochs (the protocol's recipe at lr 0.01). Every set trains one network per seed;
mean +- population std.

Measured: the wall time and peak RSS of expert training and of each distillation; accuracy against iterations;
image grids of the final sets (one row per class). Writes distill.json and the PNGs to --results (default
benchmarks/results); a run of some --tasks keeps the other tasks' results. Rows already evaluated, experts and
distilled sets are kept in --work, so a killed run rerun with the same options resumes. The tasks are in
distill_tasks.py, the summary, targets and figures in distill_report.py.
Targets (issue 16): TESLA beats random real by >= 15 points at IPC 1 and by >= 5 at IPC 10, on both tasks.
"""

import argparse
import dataclasses
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import common
import torch
from common import RowLog, write_results
from concept_scale import peak_rss_gib, reset_peak
from distill_report import plot_curve, print_report, protocol, set_grid, summarize, targets, with_previous
from distill_tasks import TASKS, expert_embedding, load_task

from curate.cli.evaluate import seed_list
from curate.distill.baselines import herding, random_real
from curate.distill.evaluate import EvalConfig, evaluate_set
from curate.distill.experts import ExpertConfig, train_experts
from curate.distill.tesla import TeslaConfig, distill

JSON_NAME = "distill"
REFERENCE = {1: dict(syn_steps=50, expert_epochs=2, max_start_epoch=5, lr_lr=1e-7),  # TESLA CIFAR-10 IPC 1
             10: dict(syn_steps=30, expert_epochs=2, max_start_epoch=20, lr_lr=1e-5)}  # MTT CIFAR-10 IPC 10


def digest(value: object) -> str:
    """Returns a short stable hash of a JSON-able value (names work folders by the options that shape them)."""
    return hashlib.sha1(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:12]


def row_log(args: argparse.Namespace, task: str) -> RowLog:
    """Returns the task's row log, named by the options that change the figures, keyed by IPC, method,
    iterations and seed."""
    ignored = ("work", "tasks", "threads", "results", "seeds", "ipc", "curve", "iterations", "herding_features",
               "modes", "json_name")
    options = {k: v for k, v in vars(args).items()
               if k not in ignored and (k not in ("batch_syn", "lr_teacher", "zca") or v is not None)}
    return RowLog(args.work / f"rows-{task}-{digest(options)}.jsonl", ("ipc", "method", "iterations", "seed"))


def expert_trajectories(folder: Path, task: dict, args: argparse.Namespace) -> tuple[list[Path], dict]:
    """Trains the missing experts into `folder`; returns their paths and the cost of training them (seconds and
    peak RSS over the runs that trained some, kept in folder/costs.json)."""
    from curate.distill.convnet import param_count
    from curate.distill.experts import expert_path, is_complete, spec_for

    costs_path = folder / "costs.json"
    costs = json.loads(costs_path.read_text()) if costs_path.exists() else dict(seconds=0.0, peak_rss_gib=0.0)
    config = ExpertConfig(epochs=args.expert_epochs, batch_size=args.expert_batch)
    params = param_count(spec_for(task["images"], task["classes"], config))
    missing = [i for i in range(args.experts) if not is_complete(expert_path(folder, i), config.epochs, params)]
    reset_peak()
    began = time.perf_counter()
    paths = train_experts(task["images"], task["labels"], task["classes"], config, folder, args.experts, seed=0)
    if missing:
        costs = dict(seconds=costs["seconds"] + time.perf_counter() - began,
                     peak_rss_gib=max(costs["peak_rss_gib"], peak_rss_gib()))
        costs_path.write_text(json.dumps(costs))
    per_epoch = costs["seconds"] / (args.experts * args.expert_epochs)
    return paths, dict(experts=args.experts, epochs=args.expert_epochs, batch=args.expert_batch,
                       seconds=round(costs["seconds"], 1), peak_rss_gib=round(costs["peak_rss_gib"], 3),
                       seconds_per_expert_epoch=round(per_epoch, 2))


def tesla_config(args: argparse.Namespace, ipc: int, soft: bool, images: int) -> TeslaConfig:
    """Returns the TESLA settings at this IPC for a training split of `images` images: the reference's per-IPC
    values unless an option overrides them, max_start_epoch cut so that start + expert_epochs fits in the experts'
    epochs, and by default syn_steps = the expert's own SGD steps over the matched epochs (see the module doc)."""
    values = dict(REFERENCE.get(ipc, REFERENCE[10]))
    for name, option in (("syn_steps", "syn_steps"), ("expert_epochs", "match_epochs"),
                         ("max_start_epoch", "max_start_epoch"), ("lr_lr", "lr_lr"), ("lr_teacher", "lr_teacher")):
        if getattr(args, option) is not None:
            values[name] = getattr(args, option)
    values["expert_epochs"] = max(1, min(values["expert_epochs"], args.expert_epochs - 1))
    values["max_start_epoch"] = max(1, min(values["max_start_epoch"], args.expert_epochs - values["expert_epochs"]))
    if args.syn_steps is None:
        values["syn_steps"] = values["expert_epochs"] * -(-images // args.expert_batch)
    return TeslaConfig(ipc=ipc, lr_img=args.lr_img, soft_labels=soft, checkpoint_every=args.checkpoint_every,
                       batch_syn=args.batch_syn, **values)


def curve_points(args: argparse.Namespace) -> list[int]:
    """Returns the iteration counts to evaluate at: --curve (default 10% and 30% of --iterations), then
    --iterations; ascending, positive."""
    points = args.curve if args.curve is not None else [round(args.iterations * f) for f in (0.1, 0.3)]
    return sorted({p for p in points if 0 < p < args.iterations} | {args.iterations})


def distilled_sets(folder: Path, task: dict, paths: list[Path], config: TeslaConfig, points: list[int]) -> dict:
    """Distills to each iteration count in turn (resuming from the checkpoint in `folder`), keeping each set as
    folder/set-<iterations>.pt; returns {iterations: set dict (images, labels, soft_labels, lr, losses, seconds,
    wall_seconds and peak_rss_gib of the distillation up to there)}."""
    sets, wall, peak = {}, 0.0, 0.0
    for point in points:
        path = folder / f"set-{point}.pt"
        if not path.exists():
            reset_peak()
            began = time.perf_counter()
            result = distill(task["images"], task["labels"], task["classes"], paths,
                             dataclasses.replace(config, iterations=point), folder)
            wall, peak = wall + time.perf_counter() - began, max(peak, peak_rss_gib())
            torch.save(dict(images=result.images, labels=result.labels, soft_labels=result.soft_labels,
                            lr=result.lr, losses=result.losses, seconds=result.seconds, wall_seconds=wall,
                            peak_rss_gib=peak), path)
        sets[point] = torch.load(path, weights_only=True)
        wall, peak = sets[point]["wall_seconds"], sets[point]["peak_rss_gib"]
    return sets


def eval_row(log: RowLog, key: dict, train: tuple, task: dict, config: EvalConfig, lr: float | None = None) -> dict:
    """Returns the row of one (set, seed) evaluation: from the log, or trained, tested and logged."""
    if (row := log.done.get(log.key(key))) is not None:
        return row
    images, labels = train
    result = evaluate_set(images, labels, task["test_images"], task["test_labels"], task["classes"], config,
                          seeds=(key["seed"],), lr=lr)
    row = key | dict(size=len(images), accuracy=result["accuracies"][0], lr=result["lr"], soft=result["soft"],
                     epochs=result["epochs"], seconds=round(result["seconds"], 2))
    log.add(row)
    return row


def baseline_rows(task_name: str, task: dict, args: argparse.Namespace, paths: list[Path], log: RowLog,
                  with_full: bool = True) -> list[dict]:
    """Evaluates random real images and herding (args.herding_features) at every IPC, and unless told not to the
    full training split; returns the rows."""
    config = EvalConfig(epochs=args.eval_epochs)
    images, labels = task["images"], task["labels"]
    features = {"expert": lambda: expert_embedding(task, paths[0]), "pixels": lambda: images.flatten(1).numpy()}
    herded = {kind: features[kind]() for kind in args.herding_features}
    rows = []
    for seed in args.seeds:
        if with_full:
            key = dict(task=task_name, ipc=None, method="full", iterations=0, seed=seed)
            full = dataclasses.replace(config, epochs=args.full_epochs)
            rows.append(eval_row(log, key, (images, labels), task, full))
        for ipc in args.ipc:
            chosen = {"random": random_real(labels.numpy(), ipc, seed)}
            chosen |= {f"herding-{kind}": herding(f, labels.numpy(), ipc) for kind, f in herded.items()}
            for method, index in chosen.items():
                key = dict(task=task_name, ipc=ipc, method=method, iterations=0, seed=seed)
                rows.append(eval_row(log, key, (images[index], labels[index]), task, config))
    return rows


def tesla_rows(task_name: str, task: dict, args: argparse.Namespace, paths: list[Path],
               log: RowLog) -> tuple[list[dict], list[dict]]:
    """Distills with hard and soft labels at every IPC and evaluates every curve point; returns (rows, one cost
    record per distillation)."""
    config, rows, costs = EvalConfig(epochs=args.eval_epochs), [], []
    for ipc in args.ipc:
        for mode in args.modes:
            tesla = tesla_config(args, ipc, mode == "soft", len(task["images"]))
            # the experts' folder names the data they were trained on (size, ZCA, classes)
            settings = dataclasses.asdict(tesla) | dict(iterations=None, experts=[f"{p.parent.name}/{p.name}"
                                                                                for p in paths])
            folder = args.work / task_name / f"distill-ipc{ipc}-{mode}-{digest(settings)}"
            sets = distilled_sets(folder, task, paths, tesla, curve_points(args))
            for point, syn in sets.items():
                labels = syn["soft_labels"] if mode == "soft" else syn["labels"]
                for seed in args.seeds:
                    key = dict(task=task_name, ipc=ipc, method=f"tesla-{mode}", iterations=point, seed=seed)
                    rows.append(eval_row(log, key, (syn["images"], labels), task, config, lr=syn["lr"]))
            final = sets[max(sets)]
            costs.append(dict(task=task_name, ipc=ipc, method=f"tesla-{mode}", iterations=max(sets),
                              seconds=round(final["seconds"], 1), wall_seconds=round(final["wall_seconds"], 1),
                              peak_rss_gib=round(final["peak_rss_gib"], 3), lr=final["lr"],
                              first_loss=final["losses"][0], last_loss=final["losses"][-1],
                              settings=dataclasses.asdict(tesla) | dict(iterations=max(sets))))
            set_grid(final, task, args.results / f"{args.json_name}_{task_name}_ipc{ipc}_{mode}.png",
                     f"{task_name}: TESLA, {mode} labels, IPC {ipc}, {max(sets)} iterations")
    return rows, costs


def int_list(text: str) -> list[int]:
    """Returns "1,10" as [1, 10]."""
    return [int(part) for part in text.split(",") if part.strip()]


def name_list(choices: tuple[str, ...]):
    """Returns a parser of comma-separated names from `choices` (a one-line error naming them otherwise)."""
    def parse(text: str) -> list[str]:
        if unknown := [t for t in text.split(",") if t not in choices]:
            raise argparse.ArgumentTypeError(f"unknown {unknown}; choose from {','.join(choices)}")
        return text.split(",")
    return parse


def build_parser(description: str = __doc__.splitlines()[0]) -> argparse.ArgumentParser:
    """Returns the parser of the benchmark's options (benchmarks/distill_sweep.py adds its own to it)."""
    parser = argparse.ArgumentParser(description=description)
    add = parser.add_argument
    add("--tasks", default=list(TASKS), type=name_list(TASKS))
    add("--ipc", type=int_list, default=[1, 10], help="images per class")
    add("--modes", type=name_list(("hard", "soft")), default=["hard", "soft"], help="TESLA's label modes")
    add("--seeds", type=seed_list, default=[0, 1, 2], help="evaluation networks (and random-real draws)")
    add("--experts", type=int, default=10, help="expert trajectories per task (the reference: 100)")
    add("--expert-epochs", type=int, default=30, help="epochs per expert (the reference: 50)")
    add("--expert-batch", type=int, default=256, help="experts' batch (the reference: 256)")
    add("--iterations", type=int, default=1000, help="distillation iterations (the reference: 5,000 to 10,000)")
    add("--curve", type=int_list, help="iteration counts to evaluate at besides --iterations (default 10%%, 30%%)")
    add("--syn-steps", type=int, help="student steps per iteration (default: the experts' steps over M epochs)")
    add("--match-epochs", type=int, help="M, TESLA's expert_epochs: expert epochs matched (default 2)")
    add("--max-start-epoch", type=int, help="latest start epoch (default: per IPC)")
    add("--lr-img", type=float, default=1000.0, help="synthetic images' learning rate")
    add("--lr-lr", type=float, help="learned lr's learning rate (default: per IPC)")
    add("--lr-teacher", type=float, help="the learned student lr's initial value (default 0.01)")
    add("--batch-syn", type=int, help="synthetic images per student step (default: all of them)")
    add("--checkpoint-every", type=int, default=100, help="distillation checkpoint period (iterations)")
    add("--eval-epochs", type=int, default=300, help="evaluation epochs on a small set (the papers: 1,000)")
    add("--full-epochs", type=int, default=50, help="evaluation epochs on the full training split")
    add("--herding-features", type=name_list(("expert", "pixels")), default=["expert", "pixels"])
    add("--zca", type=float, help="ZCA-whiten the images with this eps, as the reference's CIFAR runs (0.1)")
    add("--size", type=int, default=16, choices=(8, 16, 32), help="digits: image side (px)")
    add("--synth-size", type=int, default=32, help="synth: image side (px)")
    add("--classes", type=int, default=10, help="synth: classes (the first concepts)")
    add("--per-class", type=int, default=100, help="synth: training images per class")
    add("--threads", type=int, default=1, help="torch threads")
    add("--work", type=Path, default=Path(tempfile.gettempdir()) / "curate-bench-distill")
    add("--results", type=Path, default=common.RESULTS, help="folder of the results JSON and the PNGs")
    add("--json-name", default=JSON_NAME, help="the results file's name (default distill: distill.json)")
    return parser


def task_and_experts_folder(name: str, args: argparse.Namespace) -> tuple[dict, Path]:
    """Returns the task's data and the folder of its experts (named by the options that shape them)."""
    task = load_task(name, args)
    data = dict(size=args.size) if name == "digits" else dict(size=args.synth_size, classes=args.classes,
                                                              per_class=args.per_class)
    data |= dict(zca=args.zca) if args.zca is not None else {}
    print(f"{name}: {len(task['images'])} training images of {tuple(task['images'].shape[1:])}, "
          f"{len(task['test_images'])} test images, {task['classes']} classes", flush=True)
    return task, args.work / name / f"experts-{digest(data | dict(epochs=args.expert_epochs, batch=args.expert_batch))}"


def run_task(name: str, args: argparse.Namespace) -> tuple[list[dict], dict, list[dict]]:
    """Runs one task: experts, distillations and their evaluation, baselines; returns (rows, expert costs,
    distillation costs)."""
    task, folder = task_and_experts_folder(name, args)
    paths, expert_costs = expert_trajectories(folder, task, args)
    print(f"{name}: experts {json.dumps(expert_costs)}", flush=True)
    log = row_log(args, name)
    rows, distill_costs = tesla_rows(name, task, args, paths, log)
    rows += baseline_rows(name, task, args, paths, log)
    return rows, expert_costs, distill_costs


def main() -> None:
    """Runs the tasks, prints the summary and targets, writes the results (other tasks' results kept)."""
    args = build_parser().parse_args()
    if args.expert_epochs < 2:
        raise SystemExit("--expert-epochs must be at least 2 (matching needs a start and a later epoch)")
    torch.set_num_threads(args.threads)
    began = time.perf_counter()
    rows, experts, distills = [], {}, []
    for name in args.tasks:
        task_rows, experts[name], task_distills = run_task(name, args)
        rows, distills = rows + task_rows, distills + task_distills
    this_run = {k: str(v) for k, v in vars(args).items() if k not in ("work", "tasks", "results", "json_name")}
    options = {name: this_run | dict(seconds=round(time.perf_counter() - began, 1)) for name in args.tasks}
    path = args.results / f"{args.json_name}.json"  # the other tasks' results stay, with the options they were run with
    merged = with_previous(path, args.tasks, dict(options=options, experts=experts, distillations=distills, runs=rows))
    summary = summarize(merged["runs"])
    checks = targets(summary)
    print_report(summary, checks)
    plot_curve(summary, args.results / f"{args.json_name}_curve.png")
    common.RESULTS = args.results  # write_results writes into common.RESULTS
    results = dict(options=merged["options"], protocol=protocol(args), experts=merged["experts"],
                   distillations=merged["distillations"], summary=summary, targets=checks, runs=merged["runs"])
    print(f"wrote {write_results(args.json_name, results)} in {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()

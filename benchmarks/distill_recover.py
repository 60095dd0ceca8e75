"""Dataset distillation by recovery from a batch-norm teacher: CDA (the curriculum) and SRe2L (no curriculum), with
FKD relabelling and with hard labels, on benchmarks/distill.py's tasks and evaluation protocol.

    python benchmarks/distill_recover.py [--tasks digits] [--ipc 1,10] [--seeds 0,1,2] [--teacher-epochs 30]
                                         [--iterations 500] [--eval-epochs 300] [--threads 1]

Per task: a ConvNet-3 teacher with batch norm (curate.distill.teacher, arch convnet, width 128: the small-set
teacher by default: it trains in a CPU budget at 16 px) trained --teacher-epochs on the training split;
per IPC, the recovered images (curate.distill.cda.recover_slice: IPC index by IPC index, all classes of an index
together, --iterations Adam steps, the reference's other settings) with the curriculum (cda: cosine, milestone 1)
and without (sre2l); each set evaluated by the protocol (curate.distill.evaluate) on hard labels and on FKD soft
crops (curate.distill.relabel: the teacher's logits on stored RandomResizedCrop crops, KL at temperature 20, one
stored epoch per training pass). Random real, herding and full data come from benchmarks/distill.py's results
on the same split and protocol (results/distill.json; IPC 50: results/distill_ipc50.json). Targets (issue 17):
CDA above SRe2L at every IPC; CDA at least 5 points above random real at IPC 10. Writes
results/distill_recover.json (--json-name) and an image grid per set (one row per class); rows, teachers and
sets are kept in --work, so a killed run resumes.
--teacher-arch resnet18 recovers from the small-image ResNet-18 (CDA's and SRe2L's own teacher family) instead.
Unless --no-random-relabel, random real images (distill.py's draw per seed) relabelled by the same teacher are
evaluated too (random-relabel): the relabelling without the recovery, which tells the two parts apart.
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import common
import torch
from common import RowLog, write_results
from distill import digest, int_list, name_list
from distill_report import set_grid
from distill_tasks import TASKS, load_task

from curate.cli.evaluate import seed_list
from curate.distill.baselines import random_real
from curate.distill.cda import CDAConfig, recover_slice
from curate.distill.evaluate import EvalConfig, evaluate_set
from curate.distill.relabel import RelabelConfig, relabel
from curate.distill.teacher import TeacherConfig, load_teacher, save_teacher, shape_meta, train_teacher

CURRICULA = {"cda": "cosine", "sre2l": "none"}
# benchmarks/distill.py's results: IPC 1 and 10 (distill.json), IPC 50 (--json-name distill_ipc50).
BASELINE_FILES = ("distill.json", "distill_ipc50.json")


def teacher_for(task: dict, args: argparse.Namespace, folder: Path) -> tuple[torch.nn.Module, float]:
    """Returns the task's teacher (trained once into folder/teacher.safetensors) and its test accuracy."""
    path = folder / "teacher.safetensors"
    if not path.exists():
        black = [-m / s for m, s in zip(task["mean"].flatten().tolist(), task["std"].flatten().tolist(), strict=True)]
        config = TeacherConfig(arch=args.teacher_arch, epochs=args.teacher_epochs, width=128, depth=3)
        model = train_teacher(task["images"], task["labels"], task["classes"], config, 0, pad_value=black)
        images = task["images"]
        save_teacher(path, model, shape_meta(config, images.shape[1], task["classes"], images.shape[-1]))
    model = load_teacher(path).eval()
    with torch.inference_mode():
        accuracy = (model(task["test_images"]).argmax(1) == task["test_labels"]).float().mean().item()
    return model, accuracy


def recovered_set(teacher: torch.nn.Module, task: dict, ipc: int, method: str, args: argparse.Namespace,
                  folder: Path, suffix: str = "") -> dict:
    """Returns {images (class-major, IPC indices in order), labels, seconds} of the recovered set, kept in
    `folder` (as <method>-ipc<ipc><suffix>.pt) so a rerun reuses it."""
    path = folder / f"{method}-ipc{ipc}{suffix}.pt"
    if not path.exists():
        config = CDAConfig(iterations=args.iterations, curriculum=CURRICULA[method], min_scale=args.min_scale)
        mean, std = task["mean"].flatten().tolist(), task["std"].flatten().tolist()
        classes, size = task["classes"], task["images"].shape[-1]
        images, seconds = torch.empty(classes, ipc, *task["images"].shape[1:]), 0.0
        for index in range(ipc):
            recovered = recover_slice(teacher, list(range(classes)), index, size, mean, std, config, 0)
            images[:, index], seconds = recovered.images, seconds + recovered.seconds
        torch.save(dict(images=images.flatten(0, 1), labels=torch.arange(classes).repeat_interleave(ipc),
                        seconds=seconds), path)
    return torch.load(path, weights_only=True)


def logged_row(log: RowLog, key: dict, train: tuple, task: dict, config: EvalConfig, crops=None) -> dict:
    """Returns the row of one (set, seed) evaluation (crops: FKD soft crops, None for hard labels): from the log,
    or trained on train = (images, labels), tested and logged."""
    if (row := log.done.get(log.key(key))) is None:
        images, labels = train
        result = evaluate_set(images, labels, task["test_images"], task["test_labels"], task["classes"], config,
                              seeds=(key["seed"],), crops=crops)
        row = key | dict(size=len(images), accuracy=result["accuracies"][0], seconds=round(result["seconds"], 2))
        log.add(row)
    return row


def evaluate_rows(task_name: str, task: dict, teacher: torch.nn.Module, args: argparse.Namespace,
                  log: RowLog, folder: Path) -> tuple[list[dict], list[dict]]:
    """Evaluates every (IPC, method, labels) set per seed; returns (rows, one cost record per recovered set)."""
    config, rows, costs = EvalConfig(epochs=args.eval_epochs), [], []
    for ipc in args.ipc:
        for method in args.methods:
            syn = recovered_set(teacher, task, ipc, method, args, folder)
            set_grid(syn, task, args.results / f"{args.json_name}_{task_name}_{method}_ipc{ipc}.png",
                     f"{task_name}: {method.upper()} recovered from a {args.teacher_arch} teacher, IPC {ipc}")
            crops = relabel(teacher, syn["images"], RelabelConfig(epochs=args.eval_epochs + 1))
            costs.append(dict(task=task_name, ipc=ipc, method=method, recover_seconds=round(syn["seconds"], 1),
                              seconds_per_image=round(syn["seconds"] / len(syn["images"]), 2)))
            for labels in ("relabel", "hard"):
                for seed in args.seeds:
                    key = dict(task=task_name, ipc=ipc, method=f"{method}-{labels}", seed=seed)
                    rows.append(logged_row(log, key, (syn["images"], syn["labels"]), task, config,
                                           crops if labels == "relabel" else None))
    return rows, costs


def random_relabel_rows(task_name: str, task: dict, teacher: torch.nn.Module, args: argparse.Namespace,
                        log: RowLog) -> list[dict]:
    """Evaluates random real images (benchmarks/distill.py's draw per seed) relabelled by the same teacher: the
    recovered sets' relabelling on real images instead, which tells the recovery's part from the relabelling's;
    returns the rows."""
    config, rows = EvalConfig(epochs=args.eval_epochs), []
    for ipc in args.ipc:
        for seed in args.seeds:
            key = dict(task=task_name, ipc=ipc, method="random-relabel", seed=seed)
            if (row := log.done.get(log.key(key))) is None:  # relabel only what the log lacks
                index = torch.from_numpy(random_real(task["labels"].numpy(), ipc, seed))
                train = task["images"][index], task["labels"][index]
                crops = relabel(teacher, train[0], RelabelConfig(epochs=args.eval_epochs + 1))
                row = logged_row(log, key, train, task, config, crops)
            rows.append(row)
    return rows


def over_seeds(rows: list[dict], keys: tuple[str, ...] = ("task", "ipc", "method")) -> list[dict]:
    """Returns the mean and population std of accuracy over the rows of each value of `keys`, with their count."""
    groups: dict[tuple, list[float]] = {}
    for row in rows:
        groups.setdefault(tuple(row[k] for k in keys), []).append(row["accuracy"])
    return [dict(zip(keys, key, strict=True)) | dict(accuracy=statistics.fmean(a), accuracy_std=statistics.pstdev(a),
                                                     seeds=len(a)) for key, a in groups.items()]


def summary_and_targets(rows: list[dict], baselines: list[dict]) -> tuple[list[dict], list[dict]]:
    """Returns the mean/std per (task, ipc, method) and the issue's targets against SRe2L and random real."""
    summary = over_seeds(rows)
    mean = {(s["task"], s["ipc"], s["method"]): s["accuracy"] for s in summary + baselines}
    checks = []
    for (task, ipc, method), value in list(mean.items()):
        if not method.startswith("cda-"):
            continue
        labels = method.removeprefix("cda-")
        if (other := mean.get((task, ipc, f"sre2l-{labels}"))) is not None:
            checks.append(dict(task=task, ipc=ipc, target=f"{method} > sre2l-{labels}", value=value, other=other,
                               holds=value > other))
        if ipc == 10 and (random := mean.get((task, ipc, "random"))) is not None:
            checks.append(dict(task=task, ipc=ipc, target=f"{method} >= random + 5 pt", value=value, other=random,
                               holds=value >= random + 0.05))
    return summary, checks


def with_earlier(path: Path, rows: list[dict], costs: list[dict], teachers: dict) -> tuple[list, list, dict]:
    """Returns this run's rows, costs and teachers with the earlier results file's entries for the (task, IPC)
    pairs this run did not evaluate, so a run of one task or IPC keeps the others' figures."""
    if not path.exists():
        return rows, costs, teachers
    earlier, ran = json.loads(path.read_text()), {(r["task"], r["ipc"]) for r in rows}
    kept = [r for r in earlier["runs"] if (r["task"], r["ipc"]) not in ran]
    kept_costs = [c for c in earlier["costs"] if (c["task"], c["ipc"]) not in ran]
    return rows + kept, costs + kept_costs, earlier["teachers"] | teachers


def build_parser(description: str = __doc__.splitlines()[0]) -> argparse.ArgumentParser:
    """Returns the parser of the benchmark's options (the task options as benchmarks/distill.py's)."""
    parser = argparse.ArgumentParser(description=description)
    add = parser.add_argument
    add("--tasks", default=["digits"], type=name_list(TASKS))
    add("--methods", default=list(CURRICULA), type=name_list(tuple(CURRICULA)))
    add("--ipc", type=int_list, default=[1, 10])
    add("--seeds", type=seed_list, default=[0, 1, 2])
    add("--teacher-arch", default="convnet", choices=("convnet", "resnet18"),
        help="the teacher: ConvNet-3 with batch norm (width 128) or the small-image ResNet-18")
    add("--teacher-epochs", type=int, default=30)
    add("--random-relabel", action=argparse.BooleanOptionalAction, default=True,
        help="also evaluate random real images relabelled by the teacher")
    add("--iterations", type=int, default=500, help="recovery iterations (the reference: 1,000 to 4,000)")
    add("--min-scale", type=float, default=0.08,
        help="the recovery's smallest crop (area fraction): CDA's end point, SRe2L's fixed bound (the reference: 0.08)")
    add("--eval-epochs", type=int, default=300)
    add("--size", type=int, default=16, choices=(8, 16, 32), help="digits: image side (px)")
    add("--synth-size", type=int, default=16, help="synth: image side (px)")
    add("--classes", type=int, default=10, help="synth: classes")
    add("--per-class", type=int, default=100, help="synth: training images per class")
    add("--threads", type=int, default=1)
    add("--work", type=Path, default=Path(tempfile.gettempdir()) / "curate-bench-distill")
    add("--results", type=Path, default=common.RESULTS)
    add("--json-name", default="distill_recover", help="the results file's name")
    return parser


def task_folder(name: str, args: argparse.Namespace) -> Path:
    """Returns (made) the work folder of a task's teacher, sets and rows, named by the options that shape them."""
    shape = dict(task=name, size=args.size if name == "digits" else args.synth_size,
                 teacher_epochs=args.teacher_epochs, iterations=args.iterations, eval_epochs=args.eval_epochs)
    # options at their first values keep the earlier folders' names
    shape |= {k: getattr(args, k) for k, first in (("teacher_arch", "convnet"), ("min_scale", 0.08))
              if getattr(args, k) != first}
    folder = args.work / name / f"recover-{digest(shape)}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def main() -> None:
    """Runs the tasks and writes results/distill_recover.json."""
    args = build_parser().parse_args()
    torch.set_num_threads(args.threads)
    began, rows, costs, teachers = time.perf_counter(), [], [], {}
    baselines = [s for path in BASELINE_FILES if (args.results / path).exists()
                 for s in json.loads((args.results / path).read_text())["summary"]
                 if not s["method"].startswith("tesla") and s["iterations"] == 0]
    for name in args.tasks:
        task, folder = load_task(name, args), task_folder(name, args)
        teacher, accuracy = teacher_for(task, args, folder)
        teachers[name] = dict(arch=args.teacher_arch, epochs=args.teacher_epochs, test_accuracy=accuracy)
        print(f"{name}: teacher test top-1 {accuracy:.4f}", flush=True)
        log = RowLog(folder / "rows.jsonl", ("ipc", "method", "seed"))
        task_rows, task_costs = evaluate_rows(name, task, teacher, args, log, folder)
        task_rows += random_relabel_rows(name, task, teacher, args, log) if args.random_relabel else []
        rows, costs = rows + task_rows, costs + task_costs
    rows, costs, teachers = with_earlier(args.results / f"{args.json_name}.json", rows, costs, teachers)
    summary, checks = summary_and_targets(rows, baselines)
    for s in sorted(summary, key=lambda s: (s["task"], s["ipc"], s["method"])):
        print(f"{s['task']:7s} ipc {s['ipc']:<3d} {s['method']:14s} {s['accuracy']:.4f} ± {s['accuracy_std']:.4f}")
    for c in checks:
        print(f"{'met    ' if c['holds'] else 'NOT MET'} {c['task']} IPC {c['ipc']}: {c['target']}: "
              f"{c['value']:.4f} vs {c['other']:.4f}")
    common.RESULTS = args.results
    options = {k: str(v) for k, v in vars(args).items() if k not in ("work", "results")}
    path = write_results(args.json_name, dict(options=options, teachers=teachers, costs=costs, summary=summary,
                                                 targets=checks, runs=rows, seconds=round(time.perf_counter() - began)))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

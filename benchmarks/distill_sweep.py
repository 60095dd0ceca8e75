"""TESLA's sensitivity to its step count and learning rates on one task: a grid of (syn_steps, lr_img, lr_teacher)
distilled and evaluated exactly as benchmarks/distill.py does (same experts, same protocol, same random-real
baseline), so a user can see which settings a data set needs before spending a long run on them.

    python benchmarks/distill_sweep.py --tasks synth --synth-size 16 --ipc 1 --iterations 300 --curve 100 \\
        --grid "8,1000,0.01;2,1000,0.01;2,100,0.01;4,100,0.01;2,1000,0.003;8,1000,0.003" --threads 1

Every other option is benchmarks/distill.py's (hard labels only). Each grid point is one distillation at the
--ipc values, evaluated at every --curve point with --seeds networks; random real images are drawn and evaluated
as distill.py does (the same draw per seed). Writes results/distill_sweep.json (--json-name): per grid point and
iteration count, mean and std over seeds, the learned lr and the first and last matching loss. Distilled sets and
rows are kept in --work, so a rerun resumes.
"""

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import common
import torch
from common import write_results
from distill import baseline_rows, build_parser, expert_trajectories, row_log, task_and_experts_folder, tesla_rows
from distill_report import summarize


def grid_points(text: str) -> list[dict]:
    """Returns "steps,lr_img,lr_teacher;..." as [{syn_steps, lr_img, lr_teacher}, ...]."""
    points = []
    for part in text.split(";"):
        steps, lr_img, lr_teacher = part.split(",")
        points.append(dict(syn_steps=int(steps), lr_img=float(lr_img), lr_teacher=float(lr_teacher)))
    return points


def sweep_task(name: str, args: argparse.Namespace) -> list[dict]:
    """Distills and evaluates every grid point on task `name`; returns one summary row per (point, IPC,
    iterations) and the random-real summary rows, each with the point's settings."""
    task, folder = task_and_experts_folder(name, args)
    paths, _ = expert_trajectories(folder, task, args)
    random_args = argparse.Namespace(**vars(args) | dict(herding_features=[]))
    random = baseline_rows(name, task, random_args, paths, row_log(random_args, name), with_full=False)
    results = [s | dict(syn_steps=None, lr_img=None, lr_teacher=None) for s in summarize(random)]
    for point in args.grid:
        point_args = argparse.Namespace(**vars(args) | point | dict(modes=["hard"], results=args.work / "grids",
                                                                    json_name=f"sweep-{point['syn_steps']}"))
        point_args.results.mkdir(parents=True, exist_ok=True)
        rows, costs = tesla_rows(name, task, point_args, paths, row_log(point_args, name))
        learned = {c["ipc"]: c for c in costs}
        for s in summarize(rows):
            cost = learned[s["ipc"]]
            results.append(s | point | dict(lr=cost["lr"], first_loss=cost["first_loss"],
                                            last_loss=cost["last_loss"]))
            print(f"{name} ipc {s['ipc']} {point} {s['iterations']} it: {s['accuracy']:.4f} ± "
                  f"{s['accuracy_std']:.4f} (lr {cost['lr']:.2e}, loss {cost['first_loss']:.2f} -> "
                  f"{cost['last_loss']:.2f})", flush=True)
    return results


def main() -> None:
    """Runs the grid on every task and writes the results."""
    parser = build_parser(__doc__.splitlines()[0])
    parser.add_argument("--grid", type=grid_points, required=True,
                        help='"syn_steps,lr_img,lr_teacher;...": the settings to distill with')
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    began = time.perf_counter()
    summary = [row | dict(task=name) for name in args.tasks for row in sweep_task(name, args)]
    common.RESULTS = args.results
    options = {k: str(v) for k, v in vars(args).items() if k not in ("work", "results")}
    name = args.json_name if args.json_name != "distill" else "distill_sweep"
    runs, summary = with_earlier(args.results / f"{name}.json", options, summary)
    path = write_results(name, dict(runs=runs, summary=summary, seconds=round(time.perf_counter() - began)))
    print(f"wrote {path}")


def with_earlier(path: Path, options: dict, summary: list[dict]) -> tuple[list[dict], list[dict]]:
    """Returns (the options of every run written into `path`, this run's summary rows plus the earlier rows of
    other (task, IPC, settings, iterations)): runs with more grid points, IPCs or iterations add to one file."""
    if not path.exists():
        return [options], summary
    earlier = json.loads(path.read_text())

    def key(row: dict) -> tuple:
        return tuple(row[k] for k in ("task", "ipc", "method", "syn_steps", "lr_img", "lr_teacher", "iterations"))

    ran = {key(row) for row in summary}
    return earlier["runs"] + [options], [r for r in earlier["summary"] if key(r) not in ran] + summary


if __name__ == "__main__":
    main()

"""CDA and SRe2L against their recovery budget: accuracy of the relabelled sets recovered with each of --points
iterations, on one task and IPC, so a user can choose --iterations.

    python benchmarks/distill_recover_curve.py --tasks digits --ipc 10 --points 100,250,500 --threads 1

Every other option is benchmarks/distill_recover.py's; the teacher is that script's (the same work folder, the one
of --iterations 500), and the set of the largest point equal to --iterations is its set. Each budget is its own
recovery (the cosine lr and CDA's curriculum span the whole budget), relabelled and evaluated by the protocol with
--seeds networks. Random real, herding and full data come from benchmarks/distill.py's results. Writes
results/distill_recover_curve.json and results/distill_recover_curve.png; rows and sets are kept in --work.
"""

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import common
import torch
from common import RowLog, write_results
from distill import int_list
from distill_recover import (
    BASELINE_FILES,
    build_parser,
    logged_row,
    over_seeds,
    recovered_set,
    task_folder,
    teacher_for,
)
from distill_report import plot_curve
from distill_tasks import load_task

from curate.distill.evaluate import EvalConfig
from curate.distill.relabel import RelabelConfig, relabel

JSON_NAME = "distill_recover_curve"


def curve_rows(name: str, args: argparse.Namespace) -> list[dict]:
    """Recovers, relabels and evaluates every (IPC, method, budget) of task `name`; returns one row per seed."""
    task, folder = load_task(name, args), task_folder(name, args)
    teacher, _ = teacher_for(task, args, folder)
    log = RowLog(folder / "curve_rows.jsonl", ("ipc", "method", "iterations", "seed"))
    done = RowLog(folder / "rows.jsonl", ("ipc", "method", "seed"))  # distill_recover.py's, at --iterations
    config, rows = EvalConfig(epochs=args.eval_epochs), []
    for ipc in args.ipc:
        for method in args.methods:
            for point in args.points:
                suffix = "" if point == args.iterations else f"-it{point}"
                budget = argparse.Namespace(**vars(args) | dict(iterations=point))
                syn = recovered_set(teacher, task, ipc, method, budget, folder, suffix)
                crops = relabel(teacher, syn["images"], RelabelConfig(epochs=args.eval_epochs + 1))
                for seed in args.seeds:
                    key = dict(task=name, ipc=ipc, method=f"{method}-relabel", seed=seed)
                    if point == args.iterations:
                        row = logged_row(done, key, (syn["images"], syn["labels"]), task, config, crops)
                    else:
                        row = logged_row(log, key | dict(iterations=point), (syn["images"], syn["labels"]), task,
                                         config, crops)
                    rows.append(row | dict(iterations=point, recover_seconds=round(syn["seconds"], 1)))
    return rows


def main() -> None:
    """Runs the curve on every task and writes its results and plot."""
    parser = build_parser(__doc__.splitlines()[0])
    parser.add_argument("--points", type=int_list, default=[100, 250, 500], help="recovery budgets (iterations)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    began = time.perf_counter()
    rows = [row for name in args.tasks for row in curve_rows(name, args)]
    seconds = {(r["task"], r["ipc"], r["method"], r["iterations"]): r["recover_seconds"] for r in rows}
    summary = [s | dict(recover_seconds=seconds[s["task"], s["ipc"], s["method"], s["iterations"]])
               for s in over_seeds(rows, ("task", "ipc", "method", "iterations"))]
    baselines = {}  # the first file's row of each (task, IPC, method): full data is in both
    for path in BASELINE_FILES:
        for s in json.loads((args.results / path).read_text())["summary"] if (args.results / path).exists() else []:
            if s["iterations"] == 0 and s["task"] in args.tasks and s["ipc"] in (*args.ipc, None):
                baselines.setdefault((s["task"], s["ipc"], s["method"]), s)
    methods = tuple(f"{m}-relabel" for m in args.methods)
    plot = plot_curve(summary + list(baselines.values()), args.results / f"{JSON_NAME}.png", methods,
                      "recovery iterations")
    for s in sorted(summary, key=lambda s: (s["task"], s["ipc"], s["method"], s["iterations"])):
        print(f"{s['task']:7s} ipc {s['ipc']:<3d} {s['method']:14s} {s['iterations']:5d} it "
              f"{s['accuracy']:.4f} ± {s['accuracy_std']:.4f} ({s['recover_seconds']} s)")
    common.RESULTS = args.results
    options = {k: str(v) for k, v in vars(args).items() if k not in ("work", "results")}
    path = write_results(JSON_NAME, dict(options=options, summary=summary, runs=rows,
                                         seconds=round(time.perf_counter() - began)))
    print(f"wrote {path} and {plot}")


if __name__ == "__main__":
    main()

"""The results of benchmarks/distill.py: the summary over seeds, the issue's targets, the printed table, the
accuracy curves and the distilled sets' image grids, and keeping the other tasks' results of an earlier run."""

import argparse
import dataclasses
import json
import statistics
from pathlib import Path

from distill_tasks import TASKS, to_pixels

TARGET_POINTS = {1: 0.15, 10: 0.05}


def summarize(rows: list[dict]) -> list[dict]:
    """Returns mean and population std of accuracy over seeds per (task, ipc, method, iterations)."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["task"], row["ipc"], row["method"], row["iterations"]), []).append(row)
    return [dict(task=t, ipc=ipc, method=m, iterations=it, size=runs[0]["size"], seeds=len(runs),
                 epochs=runs[0]["epochs"], accuracy=statistics.fmean(r["accuracy"] for r in runs),
                 accuracy_std=statistics.pstdev([r["accuracy"] for r in runs]),
                 eval_seconds=round(sum(r["seconds"] for r in runs), 1))
            for (t, ipc, m, it), runs in groups.items()]


def targets(summary: list[dict]) -> list[dict]:
    """Returns the issue's targets per task, IPC and label mode: TESLA (its last iteration count) beats random real
    by >= 15 points at IPC 1 and >= 5 at IPC 10; each with the figures and whether it holds."""
    checks = []
    for s in summary:
        if s["method"].startswith("tesla") and s["ipc"] in TARGET_POINTS:
            last = max(o["iterations"] for o in summary if (o["task"], o["ipc"], o["method"]) ==
                       (s["task"], s["ipc"], s["method"]))
            random = [o for o in summary if (o["task"], o["ipc"], o["method"]) == (s["task"], s["ipc"], "random")]
            if s["iterations"] != last or not random:
                continue
            margin = TARGET_POINTS[s["ipc"]]
            checks.append(dict(task=s["task"], ipc=s["ipc"], method=s["method"], iterations=last,
                               target=f"{s['method']} >= random + {margin * 100:.0f} pt", tesla=s["accuracy"],
                               random=random[0]["accuracy"], holds=s["accuracy"] >= random[0]["accuracy"] + margin))
    return checks


def protocol(args: argparse.Namespace) -> dict:
    """Returns the evaluation protocol of the results: the small sets' EvalConfig, the full data's epochs, the std
    and the herding features."""
    from curate.distill.evaluate import EvalConfig

    return dataclasses.asdict(EvalConfig(epochs=args.eval_epochs)) | dict(
        full_data_epochs=args.full_epochs, std="population (np.std), over seeds",
        herding_features=dict(expert="penultimate features of expert 0 after its last epoch",
                              pixels="flattened standardized pixels"))


def print_report(summary: list[dict], checks: list[dict]) -> None:
    """Prints the summary table and the targets."""
    for s in sorted(summary, key=lambda s: (s["task"], s["ipc"] or 10**6, s["method"], s["iterations"])):
        print(f"{s['task']:7s} ipc {s['ipc'] or 'all'!s:4s} {s['method']:16s} it {s['iterations']:<6d} "
              f"n={s['size']:<5d} top-1 {s['accuracy']:.4f} ± {s['accuracy_std']:.4f} ({s['seeds']} seeds, "
              f"{s['epochs']} epochs, {s['eval_seconds']} s)")
    for c in checks:
        print(f"{'met    ' if c['holds'] else 'NOT MET'} {c['task']} IPC {c['ipc']}: {c['target']}: "
              f"{c['tesla']:.4f} vs {c['random']:.4f}")


def plot_curve(summary: list[dict], path: Path, methods: tuple[str, ...] = ("tesla-hard", "tesla-soft"),
               xlabel: str = "distillation iterations") -> Path | None:
    """Writes accuracy against iterations, a panel per (task, IPC): the `methods` (TESLA hard and soft by default)
    with the baselines and the full data as horizontal lines; returns the path (None without rows of `methods`)."""
    from curate.plots import save_figure, subplots

    panels = sorted({(s["task"], s["ipc"]) for s in summary if s["method"] in methods})
    if not panels:
        return None
    fig, axes = subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False)
    colors = {"full": "black", "random": "tab:gray", "herding-expert": "tab:green", "herding-pixels": "tab:purple"}
    for ax, (task, ipc) in zip(axes[0], panels, strict=True):
        for method in methods:
            points = sorted((s for s in summary if (s["task"], s["ipc"], s["method"]) == (task, ipc, method)),
                            key=lambda s: s["iterations"])
            ax.errorbar([p["iterations"] for p in points], [p["accuracy"] for p in points],
                        yerr=[p["accuracy_std"] for p in points], marker="o", capsize=3, label=method)
        baselines = [s for s in summary if s["task"] == task and s["iterations"] == 0 and s["ipc"] in (ipc, None)]
        for s in baselines:
            ax.axhline(s["accuracy"], color=colors.get(s["method"], "tab:brown"), linestyle="--",
                       label=f"{s['method']} ({s['accuracy']:.3f})")
        ax.set(xlabel=xlabel, ylabel="top-1 accuracy (held out)", title=f"{task}, IPC {ipc}")
        ax.legend(fontsize=7)
    return save_figure(fig, path, dpi=110)


def set_grid(syn: dict, task: dict, path: Path, title: str) -> Path:
    """Writes a distilled set's images (un-standardized) as a grid, one row per class (curate.grids);
    returns the path."""
    from curate.grids import image_grid

    return image_grid(to_pixels(syn["images"], task), syn["labels"].numpy(), task["classnames"], title, path)


def with_previous(path: Path, tasks: list[str], results: dict) -> dict:
    """Returns `results` (options, experts, distillations and runs of this run's `tasks`) with the other tasks'
    entries of the results file at `path`, when there is one, added as they were (with their options)."""
    if not path.exists():
        return results
    previous = json.loads(path.read_text())
    keep = [t for t in previous["options"] if t not in tasks and t in TASKS]
    return results | dict(
        runs=results["runs"] + [r for r in previous["runs"] if r["task"] in keep],
        distillations=results["distillations"] + [d for d in previous["distillations"] if d["task"] in keep],
        experts=results["experts"] | {t: previous["experts"][t] for t in keep},
        options=results["options"] | {t: previous["options"][t] for t in keep})

"""benchmarks/distill.py's results on synthetic rows: the summary over seeds, the targets at the last iteration
count, keeping the other tasks' results, and the image grid of a standardized set."""

import json

import pytest
import torch
from PIL import Image

from tests.benchmarks import bench_module


@pytest.fixture(scope="module")
def bench():
    return bench_module("distill_report.py")


def row(method: str, accuracy: float, seed: int, ipc: int | None = 1, iterations: int = 0, task: str = "digits"):
    return dict(task=task, ipc=ipc, method=method, iterations=iterations, seed=seed, size=10, accuracy=accuracy,
                epochs=2, seconds=0.5)


def test_targets_compare_the_last_iteration_count_with_random(bench):
    rows = [row("random", a, s) for s, a in enumerate((0.5, 0.7))]
    rows += [row("tesla-hard", 0.9, s, iterations=it) for s in (0, 1) for it in (10, 100)]
    rows += [row("tesla-soft", a, s, iterations=100) for s, a in enumerate((0.6, 0.7))]
    rows += [row("random", 0.5, 0, ipc=10), row("full", 0.95, 0, ipc=None)]
    summary = {(s["method"], s["ipc"], s["iterations"]): s for s in bench.summarize(rows)}
    assert len(summary) == 6
    random = summary[("random", 1, 0)]
    assert random["accuracy"] == pytest.approx(0.6) and random["accuracy_std"] == pytest.approx(0.1)
    assert random["seeds"] == 2 and random["eval_seconds"] == 1.0
    checks = bench.targets(list(summary.values()))
    assert [(c["method"], c["iterations"], c["holds"]) for c in checks] == [("tesla-hard", 100, True),
                                                                          ("tesla-soft", 100, False)]
    assert checks[0]["target"] == "tesla-hard >= random + 15 pt"


def test_a_run_keeps_the_other_tasks_results(bench, tmp_path):
    path = tmp_path / "distill.json"
    assert bench.with_previous(path, ["digits"], dict(options={}, runs=[])) == dict(options={}, runs=[])
    previous = dict(options=dict(digits="old", synth="s"), experts=dict(digits=1, synth=2),
                    distillations=[dict(task="digits"), dict(task="synth")],
                    runs=[row("random", 0.1, 0), row("random", 0.2, 0, task="synth")])
    path.write_text(json.dumps(previous))
    merged = bench.with_previous(path, ["digits"], dict(options=dict(digits="new"), experts=dict(digits=3),
                                                        distillations=[], runs=[row("random", 0.3, 0)]))
    assert merged["options"] == dict(digits="new", synth="s") and merged["experts"] == dict(digits=3, synth=2)
    assert merged["distillations"] == [dict(task="synth")]
    assert [(r["task"], r["accuracy"]) for r in merged["runs"]] == [("digits", 0.3), ("synth", 0.2)]


def test_the_set_grid_draws_the_un_standardized_images(bench, tmp_path):
    mean, std = torch.full((1, 3, 1, 1), 0.5), torch.full((1, 3, 1, 1), 0.25)
    task = dict(mean=mean, std=std, classnames=["zero", "one", "two"])
    syn = dict(images=(torch.zeros(6, 3, 8, 8) - mean) / std, labels=torch.tensor([0, 0, 1, 1, 2, 2]))
    path = bench.set_grid(syn, task, tmp_path / "grid.png", "digits: TESLA, hard labels, IPC 2, 4 iterations")
    with Image.open(path) as im:
        pixels = torch.as_tensor(list(im.convert("L").getdata()))
    assert (pixels < 10).float().mean() > 0.1  # the black images (0 after un-standardizing) are drawn


def test_the_curve_plots_the_methods_asked_for_with_the_baselines(bench, tmp_path):
    rows = [row("cda-relabel", a, 0, ipc=10, iterations=it) for it, a in ((100, 0.8), (500, 0.9))]
    rows += [row("random", 0.7, 0, ipc=10), row("full", 0.95, 0, ipc=None), row("random", 0.2, 0, ipc=1)]
    summary = bench.summarize(rows)
    assert bench.plot_curve(summary, tmp_path / "tesla.png") is None  # no TESLA rows
    path = bench.plot_curve(summary, tmp_path / "cda.png", ("cda-relabel",), "recovery iterations")
    assert path == tmp_path / "cda.png" and Image.open(path).size[0] > 300

"""Memory of one distillation iteration against the number of student steps: TESLA's two-pass gradient (constant
memory) and MTT's full unroll (every step's activations and their double-backward kept).

    python benchmarks/tesla_memory.py [--tesla-steps 10,80] [--mtt-steps 10,20] [--width 128] [--size 32]
                                      [--classes 10] [--ipc 10] [--batch-syn 100] [--threads 1]

Each (method, syn_steps) runs in its own process (a fresh interpreter per setting; `--one a:N,b:M` measures
several settings in children forked after one torch import, which the test suite uses): it builds the synthetic
set (classes * ipc random images), an expert segment (a seeded ConvNet-3 initialization and a perturbed copy as
the target), runs a 1-step iteration to warm up, resets the peak-RSS mark, then runs one full iteration of
syn_steps steps; the figure is that peak minus the resident memory just before it (the iteration's own memory).
The issue's target: TESLA's growth from 10 to 80 steps within 70 x P x 4 bytes + 10% (P the parameter count: the
cost of keeping 70 more parameter snapshots, which this implementation does not even do: it recomputes them).
Writes benchmarks/results/tesla_memory.json.
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import write_results
from concept_scale import peak_rss_gib, reset_peak


def rss_gib() -> float:
    """Returns this process's current resident memory in GiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 2**20
    raise RuntimeError("no VmRSS in /proc/self/status")


def measure(method: str, syn_steps: int, width: int, size: int, classes: int, ipc: int, batch_syn: int) -> dict:
    """Runs one iteration of `method` ('tesla' or 'mtt') at `syn_steps`; returns its memory and time."""
    import torch

    from curate.distill.convnet import ConvNetSpec, init_params, param_count
    from curate.distill.dsa import DSAConfig
    from curate.distill.matching import make_plan, tesla_gradients, unrolled_gradients

    spec = ConvNetSpec(3, classes, size, width)
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(classes * ipc, 3, size, size, generator=generator)
    labels = torch.arange(classes).repeat_interleave(ipc)
    start = init_params(spec, 0)
    target = start + 0.01 * torch.randn(start.shape, generator=generator)
    gradients = tesla_gradients if method == "tesla" else unrolled_gradients

    def run(steps: int) -> float:
        plan = make_plan(len(images), steps, batch_syn, size, generator, DSAConfig())
        began = time.perf_counter()
        gradients(images, labels, 0.01, start, target, spec, plan, DSAConfig())
        return time.perf_counter() - began

    run(1)
    baseline = rss_gib()
    reset_peak()
    seconds = run(syn_steps)
    peak = peak_rss_gib()
    params = param_count(spec)
    return dict(method=method, syn_steps=syn_steps, params=params, seconds=round(seconds, 1),
                baseline_rss_gib=round(baseline, 4), peak_rss_gib=round(peak, 4),
                iteration_mib=round((peak - baseline) * 1024, 1))


def forked(settings: list[tuple[str, int]], args: argparse.Namespace) -> list[dict]:
    """Measures each (method, syn_steps) in a child forked from this process once torch is imported (a fresh
    process per setting without paying the import each time); returns their figures in order."""
    import os

    rows = []
    for method, steps in settings:
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: measure, send the figures, leave without running the parent's cleanup
            os.close(read)
            figures = measure(method, steps, args.width, args.size, args.classes, args.ipc, args.batch_syn)
            os.write(write, json.dumps(figures).encode())
            os._exit(0)
        os.close(write)
        data = b""
        while chunk := os.read(read, 1 << 16):
            data += chunk
        os.close(read)
        _, status = os.waitpid(pid, 0)
        if status != 0 or not data:
            raise RuntimeError(f"measuring {method} at {steps} steps failed (wait status {status})")
        rows.append(json.loads(data))
    return rows


def run_one(args: argparse.Namespace, method: str, steps: int) -> dict:
    """Measures one setting in a fresh process; returns its figures."""
    command = [sys.executable, __file__, "--one", f"{method}:{steps}", "--width", str(args.width), "--size",
               str(args.size), "--classes", str(args.classes), "--ipc", str(args.ipc), "--batch-syn",
               str(args.batch_syn), "--threads", str(args.threads)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])[0]


def summary(rows: list[dict], tesla_steps: list[int]) -> dict:
    """Returns TESLA's growth between its smallest and largest step counts against the issue's budget, and the
    MTT growth per step."""
    tesla = {r["syn_steps"]: r for r in rows if r["method"] == "tesla"}
    mtt = sorted((r for r in rows if r["method"] == "mtt"), key=lambda r: r["syn_steps"])
    low, high = min(tesla_steps), max(tesla_steps)
    params = rows[0]["params"]
    budget = (high - low) * params * 4 * 1.1 / 2**20
    growth = tesla[high]["iteration_mib"] - tesla[low]["iteration_mib"]
    out = dict(tesla_growth_mib=round(growth, 1), budget_mib=round(budget, 1), within_budget=growth <= budget,
               tesla_steps=[low, high])
    if len(mtt) >= 2:
        per_step = (mtt[-1]["iteration_mib"] - mtt[0]["iteration_mib"]) / (mtt[-1]["syn_steps"] - mtt[0]["syn_steps"])
        extrapolated = mtt[0]["iteration_mib"] + per_step * (high - mtt[0]["syn_steps"])
        out |= dict(mtt_mib_per_step=round(per_step, 1), mtt_extrapolated_mib={str(high): round(extrapolated, 1)})
    return out


def main() -> None:
    """Runs the benchmark, prints its table and writes its results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tesla-steps", default="10,80")
    parser.add_argument("--mtt-steps", default="10,20")
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--ipc", type=int, default=10)
    parser.add_argument("--batch-syn", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="tesla_memory")
    # internal: "method:steps[,method:steps...]", measure each in a forked child, print one JSON list
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        import torch

        import curate.distill.matching  # noqa: F401  (imported once, before the forks)

        torch.set_num_threads(args.threads)  # before any parallel region, so forking is safe
        settings = [(item.split(":")[0], int(item.split(":")[1])) for item in args.one.split(",")]
        print(json.dumps(forked(settings, args)))
        return
    tesla_steps = [int(s) for s in args.tesla_steps.split(",")]
    settings = [("tesla", s) for s in tesla_steps] + [("mtt", int(s)) for s in args.mtt_steps.split(",") if s]
    rows = []
    print(f"{'method':<7}{'steps':>6}{'iteration MiB':>15}{'peak GiB':>10}{'seconds':>9}")
    for method, steps in settings:
        rows.append(run_one(args, method, steps))
        r = rows[-1]
        print(f"{method:<7}{steps:>6}{r['iteration_mib']:>15.1f}{r['peak_rss_gib']:>10.2f}{r['seconds']:>9.1f}",
              flush=True)
    result = summary(rows, tesla_steps)
    print(json.dumps(result))
    setting = dict(width=args.width, size=args.size, classes=args.classes, ipc=args.ipc, batch_syn=args.batch_syn,
                   threads=args.threads, params=rows[0]["params"])
    path = write_results(args.out, dict(setting=setting, rows=rows, summary=result))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

"""Reliability: hostile shards per fault class on both runners, runs killed at random moments, hostile CLI use.

    python benchmarks/reliability.py [--cases 20] [--kills 20] [--samples 600] [--hostile-samples 300]
                                     [--parts faults,kills,hostile] [--fork]

Fault classes (curate.synth.hostile): for each class, `cases` shards of 8 samples, half of them carrying the
fault, ingested on the local runner and on Ray: samples accounted for (every good one accepted, every faulty one
quarantined with its reason, read = kept + quarantined), crashes (target 0), and the peak memory of ingesting one
200-sample shard of that class against a clean shard of the same size (target within 2x): a fresh local process,
and a Ray worker reading the shard as ingest's actors do (each with the kernel's high-water mark reset first).

Kills: a synth pool through ingest, embed (the tiny model, from a checkpoint file), DFN, SemDeDup and DBP by the
CLI. For each stage, `kills` times: the run as it was before the stage, the stage's command SIGKILLed at a
uniformly random moment between Python's start-up and the end of its uninterrupted duration, the same command run
again to the end, and the catalog (samples with every score column, quarantine, shards, accounting, embeddings,
clusters) compared with the uninterrupted run's (target: identical every time). With --fork, every command is a
process forked from one that imported curate, torch and open_clip once (benchmarks/forks.py): no interpreter
start-up, so the kill moments fall in the stages' work rather than in imports (the test suite uses it).

Hostile use (issue 26; benchmarks/reliability_hostile.py): per class of misuse, `cases` commands drawn at random, run
as a user runs them: crashes, losses and whether the run is usable after (target: 0 crashes, nothing lost). Writes
results/reliability.json, keeping the figures of the parts not run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import RESULTS, ensure_synth, write_results
from forks import ForkServer
from reliability_hostile import measure_hostile

# One thread each, so that faiss's k-means gives the same clusters in every process.
ENV = os.environ | {"OMP_NUM_THREADS": "1"}
# The child resets the kernel's high-water mark first: a forked child starts with its parent's.
MEMORY = """import re, sys
from pathlib import Path
Path("/proc/self/clear_refs").write_text("5")
from curate.rundir import RunDir
from curate.stages.ingest import ingest
from curate.synth.hostile import read_options
ingest([sys.argv[1]], RunDir(sys.argv[2]), options=read_options(), progress=False)
print(re.search(r"VmHWM:\\s+(\\d+)", Path("/proc/self/status").read_text()).group(1))
"""


def fault_classes() -> dict[str, dict]:
    """Returns class name -> how to write a shard of it: kind (tar or parquet) and hostile_* keyword arguments."""
    from curate.synth.hostile import PARQUET_FAULTS, TAR_FAULTS

    classes = {f"tar: {name}": dict(kind="tar", faults=[name]) for name in TAR_FAULTS}
    classes["tar: cut short"] = dict(kind="tar", cut=True)
    classes |= {f"parquet: {name}": dict(kind="parquet", faults=[name]) for name in PARQUET_FAULTS}
    classes["parquet: integer captions"] = dict(kind="parquet", text_captions=False)
    return classes


def write_case(path: Path, rng: np.random.Generator, spec: dict, samples: int):
    """Writes one shard of a fault class (half its samples faulty); returns its ShardTruth."""
    from curate.synth.hostile import hostile_parquet, hostile_tar

    if spec["kind"] == "tar":
        cut, faults = spec.get("cut", False), spec.get("faults")
        return hostile_tar(path.with_suffix(".tar"), rng, samples, 0.0 if cut else 0.5, cut, faults)
    return hostile_parquet(path.with_suffix(".parquet"), rng, samples, 0.5, spec.get("text_captions", True),
                           spec.get("faults"))


def ingest_cases(folder: Path, runner: str, truths: list) -> tuple[int, int, list[str]]:
    """Ingests the shards in `folder` on `runner`; returns (samples read, crashes, mismatches)."""
    from curate.rundir import RunDir
    from curate.stages.ingest import ingest
    from curate.synth.hostile import mismatches, read_options

    run = RunDir(folder.parent / f"run-{folder.name}-{runner}")
    try:
        counts = ingest([str(folder)], run, runner, options=read_options(), progress=False)
    except Exception as exc:  # a crash is the figure this benchmark counts
        return 0, 1, [f"{type(exc).__name__}: {exc}"]
    return counts["read"], 0, mismatches(run, truths)


def peak_kib(shard: Path, work: Path) -> int:
    """Returns the peak RSS (KiB) of a fresh process that ingests `shard`."""
    done = subprocess.run([sys.executable, "-c", MEMORY, str(shard), str(work)],
                          capture_output=True, text=True, env=ENV, check=True)
    return int(done.stdout.split()[-1])


def _read_in_worker(url: str) -> int:
    """Reads one shard as a Ray ingest worker does (the high-water mark reset first); returns its peak RSS, KiB."""
    import re

    from curate.io.inputs import ShardTask
    from curate.io.readers import read_shard
    from curate.synth.hostile import read_options

    Path("/proc/self/clear_refs").write_text("5")
    read_shard(ShardTask("s", url, "parquet" if url.endswith(".parquet") else "webdataset"), read_options())
    return int(re.search(r"VmHWM:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))


def ray_peak_kib(shard: Path) -> int:
    """Returns the peak RSS (KiB) of a Ray worker process reading `shard`."""
    import ray

    return ray.get(ray.remote(num_cpus=1)(_read_in_worker).remote(str(shard)))


def measure_faults(work: Path, cases: int) -> dict:
    """Returns per fault class: cases, samples read, accounted (no mismatch), crashes and memory ratios."""
    from curate.synth.hostile import hostile_tar

    rng = np.random.default_rng(0)
    work.mkdir(parents=True, exist_ok=True)
    clean_shard = hostile_tar(work / "clean.tar", rng, 200, 0.0, False).path
    clean, clean_ray = peak_kib(clean_shard, work / "clean-run"), ray_peak_kib(clean_shard)
    rows = {}
    for name, spec in fault_classes().items():
        folder = work / name.replace(": ", "-").replace(" ", "_")
        folder.mkdir(parents=True)
        truths = [write_case(folder / f"{i:03d}", rng, spec, 8) for i in range(cases)]
        row = dict(cases=cases)
        for runner in ("local", "ray"):
            read, crashes, wrong = ingest_cases(folder, runner, truths)
            row[runner] = dict(read=read, crashes=crashes, mismatches=len(wrong), first=wrong[:1])
        big = write_case(work / f"{folder.name}-big", rng, spec, 200)
        row["peak_kib"] = peak_kib(big.path, work / f"{folder.name}-big-run")
        row["peak_vs_clean"] = round(row["peak_kib"] / clean, 2)
        row["ray_peak_kib"] = ray_peak_kib(big.path)
        row["ray_peak_vs_clean"] = round(row["ray_peak_kib"] / clean_ray, 2)
        rows[name] = row
        local, ray = row["local"], row["ray"]
        print(f"{name:40s} read {local['read']:4d} / {ray['read']:4d}  crashes {local['crashes']} / {ray['crashes']}"
              f"  mismatches {local['mismatches']} / {ray['mismatches']}  memory x{row['peak_vs_clean']} / "
              f"x{row['ray_peak_vs_clean']}")
    return dict(clean_peak_kib=clean, clean_ray_peak_kib=clean_ray, classes=rows)


def checkpoint(path: Path) -> Path:
    """Writes the tiny model's seeded random weights as a checkpoint file (as a user's own would be); returns it."""
    import torch

    from curate.models import ModelSpec, load_model

    torch.save(load_model(ModelSpec(random_weights=True), "cpu").model.state_dict(), path)
    return path


def stage_commands(run: Path, synth: Path, model: Path) -> list[tuple[str, list[str]]]:
    """Returns (stage, CLI arguments) of the pipeline, in order."""
    return [
        ("ingest", ["ingest", str(synth / "pool"), "--run", str(run)]),
        ("embed", ["embed", str(run), "--model", "curate-tiny", "--pretrained", str(model)]),
        ("dfn", ["filter", "dfn", str(run), "--keep-fraction", "0.5"]),
        ("semdedup", ["filter", "semdedup", str(run), "--eps", "0.01", "--clusters", "8"]),
        ("dbp", ["filter", "dbp", str(run), "--keep-fraction", "0.2", "--where", "dfn_keep", "--clusters", "8"]),
    ]


def curate_cli(args: list[str], forks: ForkServer | None = None):
    """Starts the curate command line with `args`, in a fresh interpreter or forked by `forks`; returns the process
    (poll, send_signal, wait and communicate as subprocess.Popen's)."""
    if forks is not None:
        return forks.start(args)
    return subprocess.Popen([sys.executable, "-m", "curate.cli.main", *args], env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)


# What the kill test's commands import, loaded by its fork server (benchmarks/forks.py) before it forks.
PRELOAD = ("torch", "open_clip", "faiss", "duckdb", "pyarrow.parquet", "curate.stages.ingest", "curate.stages.embed",
           "curate.models.loading", "curate.filters.dfn", "curate.filters.semdedup", "curate.filters.dbp")


def catalog_state(run: Path) -> dict:
    """Returns every view's rows in a fixed order: equal states mean equal catalogs."""
    from curate.catalogs import connect

    con = connect(run)
    try:
        views = {name for (name,) in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}
        orders = {"samples": "uid, shard, key", "quarantine": "shard, key, reason, detail", "shards": "shard_id",
                  "embeddings": "uid", "clusters": "cluster_id", "accounting": "1"}
        return {v: con.execute(f"SELECT * FROM {v} ORDER BY {o}").fetchall() for v, o in orders.items() if v in views}
    finally:
        con.close()


def reference(work: Path, synth: Path, model: Path, startup: str = "each", forks: ForkServer | None = None,
              stages: tuple[str, ...] | None = None) -> list[dict]:
    """Runs the pipeline uninterrupted (its commands forked by `forks`, if given); returns per stage its arguments,
    a copy of the run before it, its duration, its start-up (the duration of its command's `--help`: for each
    stage, or with startup="first" the first stage's for all) and the catalog after it."""
    run, states = work / "reference", []
    for stage, args in stage_commands(run, synth, model):
        if stages is not None and stage not in stages:
            continue
        before = work / f"before-{stage}"
        if run.exists():
            shutil.copytree(run, before)
        start = time.perf_counter()
        done = curate_cli(args, forks)
        _, err = done.communicate()
        assert done.returncode == 0, err.decode()
        seconds = time.perf_counter() - start
        if startup == "each" or not states:
            start = time.perf_counter()
            curate_cli([*args[:2], "--help"] if args[0] == "filter" else [args[0], "--help"], forks).communicate()
            help_seconds = time.perf_counter() - start
        states.append(dict(stage=stage, args=args, before=before, seconds=seconds,
                           startup=min(help_seconds, seconds), after=catalog_state(run)))
    return states


def kill_and_resume(state: dict, run: Path, rng: np.random.Generator,
                    forks: ForkServer | None = None) -> tuple[bool, bool]:
    """Puts the run as it was before the stage back at `run` (the path the stage's command names), kills the
    command at a random moment, reruns it to the end; returns (killed before it finished, catalog identical to
    the uninterrupted run's)."""
    shutil.rmtree(run, ignore_errors=True)
    if state["before"].exists():
        shutil.copytree(state["before"], run)
    process = curate_cli(state["args"], forks)
    time.sleep(rng.uniform(state["startup"], state["seconds"]))  # after Python's start-up, before the end
    killed = process.poll() is None
    process.send_signal(signal.SIGKILL)
    process.wait()
    again = curate_cli(state["args"], forks)
    _, err = again.communicate()
    if again.returncode != 0:
        print(f"  {state['stage']}: rerun failed: {err.decode().strip()[:300]}")
        return killed, False
    return killed, catalog_state(run) == state["after"]


def measure_kills(work: Path, samples: int, kills: int, startup: str = "each", fork: bool = False,
                  stages: tuple[str, ...] | None = None) -> dict:
    """Returns per stage: trials, how many were killed before finishing, and how many ended identical (`startup`:
    see reference; `fork`: every command forked by a ForkServer instead of a fresh interpreter; `stages`: those of
    stage_commands to run, default all)."""
    synth = ensure_synth(work / "synth", samples, hq_samples=0, heldout_per_concept=0)
    forks = ForkServer(work / "commands", PRELOAD, ENV) if fork else None
    try:
        states = reference(work / "ref", synth, checkpoint(work / "tiny.pt"), startup, forks, stages)
        rng, rows = np.random.default_rng(0), {}
        for state in states:
            rows[state["stage"]] = kill_rows(state, work, kills, rng, forks)
    finally:
        if forks is not None:
            forks.close()
    return dict(samples=samples, fork=fork, stages=rows)


def kill_rows(state: dict, work: Path, kills: int, rng: np.random.Generator, forks: ForkServer | None) -> dict:
    """Kills and resumes the stage `kills` times; prints and returns its row."""
    results = [kill_and_resume(state, work / "ref" / "reference", rng, forks) for _ in range(kills)]
    row = dict(trials=kills, killed=sum(k for k, _ in results), identical=sum(i for _, i in results),
               seconds=round(state["seconds"], 2))
    print(f"{state['stage']:10s} killed {row['killed']:3d}/{kills}  identical {row['identical']}/{kills}  "
          f"({state['seconds']:.1f} s uninterrupted)")
    return row


def main() -> None:
    """Runs the benchmark, prints its figures and writes its results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=20, help="shards per fault class, cases per hostile-use class")
    parser.add_argument("--kills", type=int, default=20, help="kills per stage")
    parser.add_argument("--samples", type=int, default=600, help="synth pool size of the kill test")
    parser.add_argument("--hostile-samples", type=int, default=300, help="synth pool size of the hostile-use part")
    parser.add_argument("--parts", default="faults,kills,hostile")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "curate-bench-reliability")
    parser.add_argument("--fork", action="store_true", help="kills: fork each command from a process that imported "
                        "curate once, instead of starting an interpreter")
    args = parser.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    previous = RESULTS / "reliability.json"  # a run of some parts keeps the other parts' figures
    results: dict = json.loads(previous.read_text()) if previous.exists() else {}
    config = results.setdefault("config", {})
    if "faults" in args.parts:
        from curate.runners.ray import init_ray

        init_ray()
        config["cases"] = args.cases
        results["faults"] = measure_faults(args.work / "faults", args.cases)
    if "kills" in args.parts:
        config |= dict(kills=args.kills, samples=args.samples)
        results["kills"] = measure_kills(args.work / "kills", args.samples, args.kills, fork=args.fork)
    if "hostile" in args.parts:
        results["hostile"] = measure_hostile(args.work / "hostile", args.hostile_samples, args.cases)
    print(f"wrote {write_results('reliability', results)}")


if __name__ == "__main__":
    main()

"""Hostile-use classes 5-8 of benchmarks/reliability_hostile.py, commands that fail or are stopped: writers on a
read-only disk, exports killed at a random moment, steps that fail before they compute, and empty selections."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

from hostile_checks import CLI, ENV, Case, Dealer, Watch, snapshot, under
from hostile_paths import FORMATS

if TYPE_CHECKING:
    from reliability_hostile import Pool

BAD_MODELS = ("empty folder", "corrupt weights", "corrupt config", "corrupt checkpoint")
# Predicates refused when checked, and ones that fail only while rows are read.
BAD_WHERE = ("no_such_column", "uid =", "error('x')", "CAST(caption AS INTEGER) > 0", "CAST(uid AS INTEGER) = 1")
METHODS = {"random": ["--keep-fraction", "0.5"], "dfn": ["--keep-fraction", "0.5"], "semdedup": ["--eps", "0.01"],
           "dbp": ["--keep-fraction", "0.5"], "dq": ["--keep-fraction", "0.3", "--bins", "2"]}


def mount_namespaces() -> bool:
    """Returns whether this machine lets a process bind-mount a folder read-only in a mount namespace of its own."""
    if shutil.which("unshare") is None:
        return False
    probe = ["unshare", "-m", "sh", "-c", "mount --bind /tmp /tmp && mount -o remount,bind,ro /tmp"]
    return subprocess.run(probe, capture_output=True).returncode == 0


def read_only(folder: Path) -> tuple[str, ...]:
    """Returns the command prefix that runs a command with `folder` mounted read-only, as a read-only disk would."""
    script = 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && exec "$@"'
    return ("unshare", "-m", "sh", "-c", script, "sh", str(folder))


def read_only_case(pool: Pool, folder: Path, rng: Dealer) -> Case:
    """Class 5: a writer on a read-only run, or an ingest, export or sql --out under a read-only folder: a one-line
    error and nothing lost. Returns the case."""
    run, case, locked = pool.run(pool.ingested, folder), Case(), folder / "locked"
    locked.mkdir()
    case.kind = kind = rng.deal(("ingest", "filter basic", "export", "sql --out"))
    mounted, args = {
        "ingest": (locked, ["ingest", pool.shards[0], "--run", locked / "run"]),
        "filter basic": (run, ["filter", "basic", run, "--min-side", "32"]),
        "export": (locked, ["export", run, "--format", rng.choice(FORMATS), "--out", locked / "subset"]),
        "sql --out": (locked, ["sql", run, "SELECT uid FROM samples", "--format", "csv", "--out", locked / "a.csv"]),
    }[kind]
    watch = Watch((folder, pool.sources), run)
    case.cli(args, "refused", prefix=read_only(mounted))
    case.lost += watch.losses()
    case.check_usable(run)
    return case


def exported(out: Path) -> dict:
    """Returns what an export folder holds: its files' hashes and its summary without the run's and its own path."""
    files = snapshot(out)
    summary = json.loads((out / "_export.json").read_text()) if "_export.json" in files else {}
    files.pop("_export.json", None)
    return files | {"summary": {k: v for k, v in summary.items() if k not in ("run", "out")}}


def export_options(pool: Pool, fmt: str) -> list[str]:
    """Returns the options of class 6's exports in format `fmt` (six output shards, replacing an earlier one)."""
    return ["--format", fmt, "--shard-size", str(max(pool.kept // 6, 1)), "--overwrite"]


def reference_export(pool: Pool, fmt: str) -> tuple[float, float, dict]:
    """Returns (start-up seconds, seconds, output) of an uninterrupted export of the ingested run in `fmt`, measured
    the first time."""
    if fmt not in pool.references:
        out = pool.work / "references" / fmt
        start = time.perf_counter()
        Case().cli(["export", pool.ingested, *export_options(pool, fmt), "--out", out], 0)
        seconds = time.perf_counter() - start
        start = time.perf_counter()
        subprocess.run([*CLI, "export", "--help"], env=ENV, capture_output=True)
        pool.references[fmt] = (min(time.perf_counter() - start, seconds), seconds, exported(out))
    return pool.references[fmt]


def killed_export_case(pool: Pool, folder: Path, rng: Dealer) -> Case:
    """Class 6: an export SIGKILLed at a random moment between start-up and its uninterrupted duration, then rerun:
    no temporary folder left, the output that of an uninterrupted export. Returns the case."""
    run, case, out, fmt = pool.run(pool.ingested, folder), Case(), folder / "subset", rng.deal(FORMATS)
    case.kind = fmt
    startup, seconds, expected = reference_export(pool, fmt)
    args = ["export", run, *export_options(pool, fmt), "--out", out]
    watch = Watch((folder, pool.sources), run)
    process = subprocess.Popen([*CLI, *map(str, args)], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(rng.uniform(startup, seconds))
    process.kill()
    process.wait()
    if case.cli(args, 0).returncode == 0 and exported(out) != expected:
        case.wrong.append("the rerun's output is not an uninterrupted export's")
    case.lost += watch.losses(under(out))
    case.check_usable(run)
    return case


def broken_model(kind: str, folder: Path, pool: Pool) -> list:
    """Returns the --model (and --pretrained) arguments of a broken model of `kind`, made in `folder`."""
    broken = folder / "broken"
    if kind == "empty folder":
        broken.mkdir()
    elif kind == "corrupt checkpoint":
        broken.write_bytes((pool.model / "open_clip_model.safetensors").read_bytes()[:4096])
        return ["--model", "curate-tiny", "--pretrained", broken]
    else:
        shutil.copytree(pool.model, broken)
        name = "open_clip_model.safetensors" if kind == "corrupt weights" else "open_clip_config.json"
        (broken / name).write_bytes((broken / name).read_bytes()[:200] + b"\x00 garbage")
    return ["--model", broken]


def failed_step_case(pool: Pool, folder: Path, rng: Dealer) -> Case:
    """Class 7: a step that fails before it computes (embed with a broken --model; DBP or DQ with a --where that is
    invalid or fails while rows are read), then the right command, which must succeed. Returns the case."""
    case = Case()
    bad = rng.deal(BAD_MODELS + BAD_WHERE)
    if bad in BAD_MODELS:
        run, case.kind = pool.run(pool.ingested, folder), f"embed --model {bad}"
        first = ["embed", run, *broken_model(bad, folder, pool)]
        then = ["embed", run, "--model", pool.model]
    else:
        run, method = pool.run(pool.embedded, folder), rng.choice(["dbp", "dq"])
        case.kind = f"filter {method} --where {bad}"
        first = ["filter", method, run, "--keep-fraction", "0.5", "--where", bad]
        then = [*first[:-1], "uid IS NOT NULL"]
    watch = Watch((folder, pool.sources), run)
    case.cli(first, "refused")
    right = case.cli(then, 0)
    case.lost += watch.losses(writer=True)
    case.check_usable(run, right)
    return case


def empty_selection_case(pool: Pool, folder: Path, rng: Dealer) -> Case:
    """Class 8: a pool method over an empty selection (`--where FALSE` where it takes one, else a run whose embedded
    pool is empty): an empty stage or a one-line refusal; then another filter and status must work. Returns the
    case."""
    from dataclasses import fields

    from curate.filters import filter_class

    method = rng.deal(tuple(METHODS))
    case = Case(kind=method)
    takes_where = "where" in {f.name for f in fields(filter_class(method))}
    run = pool.run(pool.embedded if takes_where else pool.empty, folder)
    watch = Watch((folder, pool.sources), run)
    case.cli(["filter", method, run, *METHODS[method], *(["--where", "FALSE"] if takes_where else [])])
    other = "dfn" if method == "random" else "random"
    again = case.cli(["filter", other, run, *METHODS[other]], 0)
    case.lost += watch.losses(writer=True)
    case.check_usable(run, again)
    return case

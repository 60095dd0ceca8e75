"""Hostile-use classes 1-4 of benchmarks/reliability_hostile.py, where commands read and write: --out paths of sql
and export drawn inside and around the run, run paths of awkward characters, and an awkward current directory."""

from __future__ import annotations

import itertools
import json
import shutil
import string
from pathlib import Path
from typing import TYPE_CHECKING

from hostile_checks import Case, Dealer, Watch, nothing, under

if TYPE_CHECKING:
    from reliability_hostile import Pool

FORMATS = ("webdataset", "parquet", "datacomp")
# Characters DuckDB's paths and globs, shells or CSV treat specially; a backslash must be refused.
AWKWARD = (",", "'", '"', " ", "é", "\n", "*", "[", "]", "%", "?", "{", "}", "$", ";")
CWD_CASES = tuple(itertools.product(("another run", "samples/ and a manifest"), ("sql", "export --where", "export")))
PLACES = ("run file", "new in run", "run", "holds the run", "source", "sources", "new", "new deeper", "user file",
          "user folder", "own export")


def user_files(folder: Path, pool: Pool) -> None:
    """Puts the user's own files in the case folder (mine/) and a copy of curate's earlier export (earlier/)."""
    (folder / "mine" / "photos").mkdir(parents=True)
    (folder / "mine" / "notes.txt").write_text("the user's notes\n")
    (folder / "mine" / "photos" / "a.jpg").write_bytes(b"\xff\xd8 not curate's")
    shutil.copytree(pool.export, folder / "earlier")


def draw_place(rng: Dealer, run: Path, pool: Pool, folder: Path) -> tuple[str, Path]:
    """Returns (kind, path) of an output path drawn inside and around the run."""
    kind = rng.deal(PLACES)
    paths = {
        "run file": lambda: run / rng.choice(["samples/00000.parquet", "manifest.json", "catalog.duckdb"]),
        "new in run": lambda: run / rng.choice(["samples/x.parquet", "scores/x", "_done/x", "new/deeper"]),
        "run": lambda: run,
        "holds the run": lambda: rng.choice([folder, folder.parent]),
        "source": lambda: rng.choice(pool.shards),
        "sources": lambda: pool.sources,
        "new": lambda: folder / f"out-{rng.randrange(100)}",
        "new deeper": lambda: folder / "new" / "deeper",
        "user file": lambda: folder / "mine" / "notes.txt",
        "user folder": lambda: folder / "mine",
        "own export": lambda: folder / "earlier",
    }
    return kind, paths[kind]()


def out_case(pool: Pool, folder: Path, rng: Dealer, command: str) -> Case:
    """Classes 1 and 2: `curate sql` or `curate export` with an --out drawn inside and around the run, with or
    without --overwrite; returns the case. Refused except at a new path (sql may refuse one in a missing folder, as
    a shell redirect does), or with --overwrite over the user's file (sql) or curate's earlier export (export)."""
    run, case = pool.run(pool.ingested, folder), Case()
    user_files(folder, pool)
    kind, out = draw_place(rng, run, pool, folder)
    overwrite = kind == "user folder" or rng.random() < 0.5
    case.kind = kind + " --overwrite" * overwrite
    if command == "sql":
        query = rng.choice(["SELECT * FROM samples WHERE false", "SELECT uid, caption FROM samples"])
        args = ["sql", run, query, "--format", rng.choice(["parquet", "csv", "json"]), "--out", out]
        allowed = kind in ("new", "new deeper") or (kind == "user file" and overwrite)
        expect = None if kind == "new deeper" else 0 if allowed else "refused"
    else:
        where = rng.choice([[], ["--where", "FALSE"], ["--where", "random() < 0.5"]])
        args = ["export", run, "--format", rng.choice(FORMATS), "--out", out, *where]
        allowed = kind in ("new", "new deeper") or (kind == "own export" and overwrite)
        expect = 0 if allowed else "refused"
    watch = Watch((folder, pool.sources), run)
    case.cli(args + ["--overwrite"] * overwrite, expect)
    case.lost += watch.losses(under(out) if allowed else nothing)
    case.check_usable(run)
    return case


def awkward_name(rng: Dealer) -> str:
    """Returns a folder name of one to three letters, each followed by an awkward character."""
    return "".join(rng.choice(string.ascii_lowercase) + rng.choice(AWKWARD) for _ in range(rng.randint(1, 3)))


def awkward_run_case(pool: Pool, folder: Path, rng: Dealer) -> Case:
    """Class 3: ingest two of the pool's shards into a run path of awkward characters (in its name, sometimes in its
    parent's too), count its samples, export it; a path with a backslash must be refused. Returns the case."""
    case = Case()
    case.kind = rng.deal(("awkward name", "awkward parent", "backslash"))
    name = awkward_name(rng) + ("\\b" if case.kind == "backslash" else "")
    run = folder / (awkward_name(rng) if case.kind == "awkward parent" else "runs") / name
    shards = rng.sample(pool.shards, 2)
    watch = Watch((pool.sources,))
    ingested = case.cli(["ingest", *shards, "--run", run], "refused" if case.kind == "backslash" else 0)
    case.lost += watch.losses()
    if case.kind == "backslash":
        if run.exists():
            case.wrong.append("the refused run folder was created")
        return case
    watch, out = Watch((folder, pool.sources), run), folder / "out"
    done = case.cli(["sql", run, "SELECT count(*) AS n FROM samples", "--format", "json"], 0)
    kept = json.loads(ingested.stdout.splitlines()[-1])["kept"] if ingested.returncode == 0 else None
    if done.returncode == 0 and json.loads(done.stdout)[0]["n"] != kept:
        case.wrong.append(f"sql counted {json.loads(done.stdout)[0]['n']} samples, ingest kept {kept}")
    case.cli(["export", run, "--format", rng.choice(FORMATS), "--out", out], 0)
    case.lost += watch.losses(under(out))
    case.check_usable(run)
    return case


def awkward_cwd_case(pool: Pool, folder: Path, rng: Dealer) -> Case:
    """Class 4: from a current directory holding samples/secret.txt (and a manifest, or a whole other run), SQL or an
    export --where reading it by a relative path must be refused and never show the secret; an export of the
    absolute run must export every sample. Returns the case."""
    run, case, cwd, out = pool.run(pool.ingested, folder), Case(), folder / "here", folder / "out"
    here, kind = rng.deal(CWD_CASES)
    case.kind = f"{kind} from {here}"
    if here == "another run":
        shutil.copytree(pool.ingested, cwd)
    else:
        (cwd / "samples").mkdir(parents=True)
        (cwd / "manifest.json").write_text('{"stages": {}}\n')
    secret = f"secret-{rng.getrandbits(64):016x}"
    (cwd / "samples" / "secret.txt").write_text(secret)
    relative = rng.choice(["samples/secret.txt", "samples/*.txt", "./samples/secret.txt", "../here/samples/secret.txt"])
    read = f"SELECT content FROM read_text('{relative}')"
    args = {"sql": ["sql", run, rng.choice([read, f"SELECT count(*) FROM samples WHERE uid IN ({read})"])],
            "export --where": ["export", run, "--format", "datacomp", "--out", out, "--where", f"uid IN ({read})"],
            "export": ["export", run, "--format", rng.choice(FORMATS), "--out", out]}[kind]
    watch = Watch((folder, pool.sources), run)
    done = case.cli(args, 0 if kind == "export" else "refused", cwd=cwd)
    written = b"".join(p.read_bytes() for p in out.rglob("*") if p.is_file())
    if secret in done.stdout + done.stderr or secret.encode() in written:
        case.wrong.append(f"the secret leaked through {kind}")
    count = json.loads(done.stdout.splitlines()[-1])["samples"] if kind == "export" and not done.returncode else None
    if count not in (None, pool.kept):
        case.wrong.append(f"export wrote {count} samples, not {pool.kept}")
    case.lost += watch.losses(under(out))
    case.check_usable(run)
    return case

"""Hostile use (issue 26): the CLI driven as a careless or hostile user would, one row per class of misuse, each case
drawn at random (seeded), measuring whether a command crashed, what it lost and whether the run is usable after.

    python benchmarks/reliability.py --parts hostile [--cases 20] [--hostile-samples 300]

Classes (benchmarks/hostile_paths.py, hostile_failures.py): 1-2 sql and export --out drawn inside and around the run,
3 run paths of awkward characters, 4 an awkward current directory, 5 read-only runs and --out folders, 6 exports
SIGKILLed then rerun, 7 steps that fail before they compute then the right command, 8 empty selections.

Every case works on its own copy of a run of a synth pool (three shards). Crashed: an exit code other than 0, 1 or
2, a traceback, or a refusal of more than one line (progress bars and faiss's k-means advice aside). Lost: a file or
folder of the case (the run, the user's own files beside it) or of the pool's shards that changed or vanished though
the command may not touch it, a file that appeared in the run from a command that does not write it, catalog rows
of samples, quarantine, shards or accounting that changed, or a temporary left anywhere. Usable: `curate status` and
`curate sql RUN "SELECT count(*) FROM samples"` succeed after it (and, where a class says so, the command that
follows). Wrong: an outcome other than the expected one (a success where a refusal was due or the reverse, a leaked
secret, an incomplete export). Cases without a problem are deleted; the others stay under --work for a look.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import hostile_failures as failures
import hostile_paths as paths
from common import ensure_synth
from hostile_checks import Case, Dealer


@dataclass
class Pool:
    """What the cases start from: the synth pool's shards, template runs (ingested; for the model classes also
    embedded, and one whose embedded pool is empty), a tiny model folder, and an earlier export of curate's."""

    work: Path
    shards: list[Path]
    kept: int
    ingested: Path
    export: Path
    model: Path | None = None
    embedded: Path | None = None
    empty: Path | None = None
    references: dict = field(default_factory=dict)

    @property
    def sources(self) -> Path:
        """Returns the pool's shard folder, the ingested run's source."""
        return self.shards[0].parent

    def run(self, template: Path, folder: Path) -> Path:
        """Returns a copy of the template run at folder/run."""
        return Path(shutil.copytree(template, folder / "run", symlinks=True))


def tiny_model_folder(out: Path) -> Path:
    """Writes the tiny CLIP with seeded random weights as a model folder (as `curate train-dfn` writes one); returns
    it."""
    from curate.models.dfn import build_model
    from curate.models.train import save_model_folder

    loaded, model_cfg = build_model(None, seed=0, device="cpu")
    return save_model_folder(loaded.model, model_cfg, dict(loaded.model.visual.preprocess_cfg), out)


def prepare(work: Path, samples: int, models: bool) -> Pool:
    """Returns the pool of `samples` synth samples, its ingested run and earlier export, and with `models` the tiny
    model folder, the embedded run and a run whose every sample is quarantined, embedded. Raises RuntimeError when
    the CLI cannot set them up."""
    synth = ensure_synth(work / "synth", samples, hq_samples=0, heldout_per_concept=0, shard_size=-(-samples // 3))
    templates, setup = work / "templates", Case()
    pool = Pool(work, sorted((synth / "pool").glob("*.tar")), 0, templates / "ingested", templates / "export")
    ingested = setup.cli(["ingest", pool.sources, "--run", pool.ingested], 0)
    pool.kept = json.loads(ingested.stdout.splitlines()[-1])["kept"] if ingested.returncode == 0 else 0
    setup.cli(["export", pool.ingested, "--format", "datacomp", "--out", pool.export], 0)
    if models:
        pool.model = tiny_model_folder(templates / "model")
        pool.embedded = Path(shutil.copytree(pool.ingested, templates / "embedded"))
        pool.empty = templates / "empty"
        setup.cli(["ingest", pool.shards[0], "--run", pool.empty, "--max-pixels", "1"], 0)
        for run in (pool.embedded, pool.empty):
            setup.cli(["embed", run, "--model", pool.model], 0)
    if setup.crashed or setup.wrong:
        raise RuntimeError(f"the pool could not be set up: {setup.crashed + setup.wrong}")
    return pool


CLASSES = {
    "sql --out": lambda pool, folder, rng: paths.out_case(pool, folder, rng, "sql"),
    "export --out": lambda pool, folder, rng: paths.out_case(pool, folder, rng, "export"),
    "awkward run path": paths.awkward_run_case,
    "awkward cwd": paths.awkward_cwd_case,
    "read-only": failures.read_only_case,
    "killed export": failures.killed_export_case,
    "failed step": failures.failed_step_case,
    "empty selection": failures.empty_selection_case,
}
MODEL_CLASSES = ("failed step", "empty selection")


def summary(cases: list[Case]) -> dict:
    """Returns a class's row: cases, crashes, lost, usable of checked, wrong outcomes, the kinds drawn (how many
    cases, how many with a problem) and the first problems seen."""
    problems = [p for c in cases for p in c.problems]
    kinds = {kind: [sum(c.kind == kind for c in cases), sum(c.kind == kind and bool(c.problems) for c in cases)]
             for kind in sorted({c.kind for c in cases})}
    return dict(cases=len(cases), crashes=sum(bool(c.crashed) for c in cases), lost=sum(bool(c.lost) for c in cases),
                usable=sum(c.checked and not c.unusable for c in cases), checked=sum(c.checked for c in cases),
                wrong=sum(bool(c.wrong) for c in cases), kinds=kinds, problems=list(dict.fromkeys(problems))[:8])


def measure_hostile(work: Path, samples: int, cases: int, classes: tuple[str, ...] = tuple(CLASSES),
                    seed: int = 0) -> dict:
    """Returns per class its summary() over `cases` cases drawn with `seed` and its seconds, or why it was skipped;
    and the seconds the pool took to set up."""
    start = time.perf_counter()
    pool = prepare(work, samples, models=any(name in MODEL_CLASSES for name in classes))
    rows, setup = {}, round(time.perf_counter() - start, 1)
    print(f"pool of {samples} samples set up in {setup} s")
    for name in classes:
        if name == "read-only" and not failures.mount_namespaces():
            rows[name] = dict(cases=0, skipped="unshare cannot mount a folder read-only here")
            print(f"{name:18s} skipped: {rows[name]['skipped']}")
            continue
        rng, results, start = Dealer(f"{seed}:{name}"), [], time.perf_counter()
        for i in range(cases):
            folder = work / "-".join(name.replace("-", " ").split()) / f"{i:03d}"
            folder.mkdir(parents=True)
            results.append(CLASSES[name](pool, folder, rng))
            if not results[-1].problems:
                shutil.rmtree(folder)
        row = rows[name] = summary(results) | dict(seconds=round(time.perf_counter() - start, 1))
        print(f"{name:18s} cases {row['cases']:3d}  crashes {row['crashes']}  lost {row['lost']}  usable "
              f"{row['usable']}/{row['checked']}  wrong {row['wrong']}  {'; '.join(row['problems'][:2])}", flush=True)
    return dict(samples=samples, cases=cases, seed=seed, setup_seconds=setup, classes=rows)

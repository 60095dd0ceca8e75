"""Distillation along the product's whole path, on unlabelled web-like data: a synth pool ingested and embedded by
the project's tiny DFN, filtered by it, selected by caption, labelled by zero-shot classification, distilled by
TESLA and by CDA (`curate distill --labels zeroshot:FILE`) and evaluated by `curate distill-eval` against random
real images and herding from the same selection.

    python benchmarks/distill_path.py [--samples 8000] [--classes 10] [--ipc 1,10] [--seeds 0,1,2]
                                      [--iterations 300] [--threads 1]

The class list is the --classes most frequent concepts of the pool (a user brings their own list); the selection
is `dfn_keep` and a caption naming one of them (as web subsets are cut by caption), so some images show another
concept than their caption names, and the zero-shot labels carry the tiny CLIP's errors: their accuracy against
the pool's ground truth is measured. The held-out set is the synth held-out images of those classes. TESLA runs
with the CLI's settings except syn_steps, set to the experts' own SGD steps over the matched epochs (see
benchmarks/distill.py for why). Writes benchmarks/results/distill_path.json and the set grids
(distill_path_ipc<N>.png, distill_path_cda_ipc<N>.png). Reruns resume: the run folder, the sets and their
evaluations are kept in --work.
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import common
import pyarrow.parquet as pq
from common import dfn_scored_run, ensure_synth, write_results

from curate.cli.evaluate import seed_list
from curate.cli.main import main as curate
from curate.report import distilled_grid
from curate.rundir import RunDir

EXPERT_BATCH = 256  # curate.distill.experts.ExpertConfig's default batch


def int_list(text: str) -> list[int]:
    """Returns "1,10" as [1, 10]."""
    return [int(part) for part in text.split(",") if part.strip()]


def class_list(synth: Path, count: int) -> list[str]:
    """Returns the `count` most frequent image concepts of the pool's clean samples (ground truth)."""
    truth = pq.read_table(synth / "truth.parquet").to_pandas()
    return truth[truth["kind"] == "clean"]["concept"].value_counts().index[:count].tolist()


def caption_predicate(classes: list[str]) -> str:
    """Returns the selection: the DFN keeps it and its caption names one of the classes (the names are this
    benchmark's constants, written into the predicate as literals)."""
    names = " OR ".join(f"contains(lower(caption), '{name}')" for name in classes)
    return f"dfn_keep AND ({names})"


def zeroshot_accuracy(run: RunDir, name: str, synth: Path) -> dict:
    """Returns how the set's zero-shot labels compare with the ground truth over its source selection: samples
    labelled, share whose label is their image's concept."""
    from curate.distill.output import read_set
    from curate.distill.source import labelled_selection

    meta, _ = read_set(run, name)
    source = meta["source"]
    data = labelled_selection(run, source["where"], None, 8, zeroshot_classes=meta["options"]["zeroshot_classes"])
    truth = dict(zip(*pq.read_table(synth / "truth.parquet", columns=["uid", "concept"]).to_pydict().values(),
                     strict=True))
    right = sum(truth.get(uid) == data.classnames[c] for uid, c in zip(data.uids, data.labels.tolist(), strict=True))
    return dict(labelled=len(data.uids), label_accuracy=right / len(data.uids), class_counts=source["class_counts"])


def heldout_subset(synth: Path, classes: list[str], out: Path) -> Path:
    """Writes the synth held-out images of `classes` as a Parquet file (jpg, label); returns it."""
    table = pq.read_table(synth / "heldout.parquet")
    labels = table["label"].to_pylist()
    pq.write_table(table.filter([label in classes for label in labels]).select(["jpg", "label"]), out)
    return out


def method_arguments(method: str, ipc: int, selected: int, args: argparse.Namespace) -> list[str]:
    """Returns the `curate distill` options of a method: TESLA with syn_steps = the experts' own steps over the
    matched epochs; CDA with a ConvNet-3 BN teacher (30 epochs: a small set) and FKD relabelling for the
    evaluation's epochs."""
    if method == "cda":
        return ["--method", "cda", "--teacher", "convnet", "--teacher-epochs", "30", "--iterations",
                str(args.recover_iterations), "--relabel-epochs", str(args.eval_epochs)]
    syn_steps = args.match_epochs * -(-selected // EXPERT_BATCH)
    return ["--experts", str(args.experts), "--expert-epochs", str(args.expert_epochs),
            "--iterations", str(args.iterations), "--syn-steps", str(syn_steps),
            "--expert-epochs-match", str(args.match_epochs), "--max-start-epoch",
            str(min(args.expert_epochs - args.match_epochs, 20 if ipc > 1 else 5))]


def distill_and_evaluate(run: RunDir, ipc: int, method: str, args: argparse.Namespace, class_file: Path,
                         test: Path) -> dict:
    """Distills the selection at `ipc` with `method` (resuming) and evaluates it, TESLA's sets with random and
    herding baselines from the same selection; returns the set's summary and the evaluation's."""
    from curate.distill.eval_set import SetEvalOptions, evaluate_distilled
    from curate.distill.source import labelled_selection

    name = f"path-ipc{ipc}" if method == "tesla" else f"path-{method}-ipc{ipc}"
    classes = class_file.read_text().split("\n")
    selected = len(labelled_selection(run, args.where, None, 8, zeroshot_classes=[c for c in classes if c]).uids)
    began = time.perf_counter()
    assert curate(["distill", str(run.path), "--name", name, "--where", args.where, "--labels",
                   f"zeroshot:{class_file}", "--ipc", str(ipc), "--image-size", str(args.image_size),
                   *method_arguments(method, ipc, selected, args)]) == 0
    seconds = time.perf_counter() - began
    options = SetEvalOptions(test=str(test), seeds=tuple(args.seeds), epochs=args.eval_epochs,
                             baselines=("random", "herding") if method == "tesla" else ())
    result = evaluate_distilled(run, name, options)
    meta = json.loads((run.path / "distilled" / name / "distilled.json").read_text())
    return dict(ipc=ipc, method=method, name=name, distill_seconds=round(seconds, 1), lr=meta["lr"],
                summary=result["summary"], evaluation=result["evaluation"])


def parse_args() -> argparse.Namespace:
    """Returns the benchmark's options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--samples", type=int, default=8000, help="synth pool size")
    add("--classes", type=int, default=10, help="the most frequent concepts to classify")
    add("--keep-fraction", type=float, default=0.5, help="the DFN's keep fraction")
    add("--ipc", type=int_list, default=[1, 10])
    add("--seeds", type=seed_list, default=[0, 1, 2])
    add("--image-size", type=int, default=16)
    add("--experts", type=int, default=5)
    add("--expert-epochs", type=int, default=20)
    add("--match-epochs", type=int, default=2)
    add("--iterations", type=int, default=300, help="TESLA's iterations")
    add("--recover-iterations", type=int, default=500, help="CDA's recovery iterations")
    add("--methods", type=lambda t: t.split(","), default=["tesla", "cda"], help="tesla, cda or both")
    add("--eval-epochs", type=int, default=300)
    add("--threads", type=int, default=1, help="torch threads")
    add("--work", type=Path, default=Path(tempfile.gettempdir()) / "curate-bench-distill-path")
    add("--results", type=Path, default=common.RESULTS)
    return parser.parse_args()


def main() -> None:
    """Runs the path, prints and writes the results."""
    import torch

    args = parse_args()
    torch.set_num_threads(args.threads)
    began = time.perf_counter()
    synth = ensure_synth(args.work / f"synth-{args.samples}", args.samples)
    run, timings = dfn_scored_run(synth, args.work, args.keep_fraction)
    classes = class_list(synth, args.classes)
    args.where = caption_predicate(classes)
    class_file = args.work / "classes.txt"
    class_file.write_text("\n".join(classes) + "\n")
    test = heldout_subset(synth, classes, args.work / "heldout-classes.parquet")
    sets = [distill_and_evaluate(run, ipc, m, args, class_file, test) for m in args.methods for ipc in args.ipc]
    labels = zeroshot_accuracy(run, sets[0]["name"], synth)
    for s in sets:
        for row in s["summary"]:
            print(f"{s['method']:5s} ipc {s['ipc']:3d} {row['method']:8s} n={row['size']:<5d} "
                  f"top-1 {row['mean']:.4f} ± {row['std']:.4f}")
    print(f"zero-shot labels: {labels['labelled']} samples, {labels['label_accuracy']:.3f} match the truth")
    args.results.mkdir(parents=True, exist_ok=True)
    for s in sets:  # the set's grid as `curate report` draws it
        distilled_grid(run, s["name"], args.results / f"distill_{s['name'].replace('-', '_')}.png")
    common.RESULTS = args.results
    options = {k: str(v) for k, v in vars(args).items() if k not in ("work", "results")}
    path = write_results("distill_path", dict(options=options, classes=classes, pipeline_seconds=timings,
                                              zeroshot=labels, sets=sets,
                                              seconds=round(time.perf_counter() - began, 1)))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

"""Distillation of labelled real images through the product's path: scikit-learn's digits written as WebDataset
shards whose class is the `.cls` member, `curate ingest`, `curate distill --label-column cls` (relabel with herding
and with random picks, CDA), `curate distill-eval --test` on held-out `.cls` shards.

    python benchmarks/distill_labelled.py [--ipc 1,10] [--seeds 0,1,2] [--methods relabel,relabel-random,cda]
                                          [--teacher-epochs 30] [--iterations 500] [--eval-epochs 300]

The 1,797 real 8 x 8 digits are upsampled (nearest) to 32 px RGB PNGs, a third of each class held out (numpy
default_rng(0), as benchmarks/distill.py splits them), in shards of 200. Every set is distilled at --image-size 16
with a ConvNet-3 teacher (--teacher convnet, width 128) trained --teacher-epochs, soft crops for --relabel-epochs,
and evaluated by the papers' protocol (fresh ConvNets per seed, --eval-epochs) with `--baselines random`. Writes
benchmarks/results/distill_labelled.json; reruns resume (the run and its sets are kept in --work).
"""

import argparse
import io
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from common import write_results

from curate.cli.main import main as curate
from curate.synth.hostile import write_tar

SHARD = 200
METHODS = {"relabel": ["--method", "relabel", "--pick", "herding"],
           "relabel-random": ["--method", "relabel", "--pick", "random"],
           "cda": ["--method", "cda"]}


def write_digits(folder: Path) -> tuple[Path, Path]:
    """Writes the digits' training and held-out shards (train/, test/) once; returns the two folders."""
    from sklearn.datasets import load_digits

    train, test = folder / "train", folder / "test"
    if (test / "done").exists():
        return train, test
    digits = load_digits()
    rng = np.random.default_rng(0)
    held = np.zeros(len(digits.target), dtype=bool)
    for label in np.unique(digits.target):
        rows = np.flatnonzero(digits.target == label)
        held[rng.choice(rows, size=len(rows) // 3, replace=False)] = True
    for out, rows in ((train, np.flatnonzero(~held)), (test, np.flatnonzero(held))):
        out.mkdir(parents=True, exist_ok=True)
        for start in range(0, len(rows), SHARD):
            _write_shard(out / f"{start // SHARD:05d}.tar", digits.images, digits.target, rows[start:start + SHARD])
    (test / "done").write_text("")
    return train, test


def _write_shard(path: Path, images: np.ndarray, labels: np.ndarray, rows: np.ndarray) -> None:
    samples = []
    for row in rows:
        pixels = np.repeat(np.repeat((images[row] * 255 / 16).astype(np.uint8), 4, 0), 4, 1)
        png = io.BytesIO()
        Image.fromarray(np.stack([pixels] * 3, axis=-1)).save(png, format="PNG")
        key, label = f"{row:05d}", int(labels[row])
        members = {"png": png.getvalue(), "cls": str(label).encode(), "txt": f"a handwritten {label}".encode()}
        samples.append((key, [(f"{key}.{suffix}", data, 0) for suffix, data in members.items()]))
    write_tar(path, samples)


def run_command(arguments: list[str]) -> dict:
    """Runs a curate command in this process; returns the JSON it printed last."""
    import contextlib

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = curate(arguments)
    if code != 0:
        raise SystemExit(f"curate {' '.join(arguments)} failed ({code})")
    return json.loads(printed.getvalue().strip().splitlines()[-1])


def measure(run: Path, test: Path, method: str, ipc: int, args: argparse.Namespace) -> dict:
    """Distills and evaluates one set; returns its row."""
    name = f"{method}-ipc{ipc}"
    settings = ["--ipc", str(ipc), "--image-size", "16", "--teacher", "convnet", "--teacher-epochs",
                str(args.teacher_epochs), "--relabel-epochs", str(args.relabel_epochs), "--seed", "0"]
    if method == "cda":
        settings += ["--iterations", str(args.iterations)]
    summary = run_command(["distill", str(run), "--name", name, "--label-column", "cls", *METHODS[method],
                           *settings])
    result = run_command(["distill-eval", str(run), "--name", name, "--test", str(test), "--epochs",
                          str(args.eval_epochs), "--seeds", ",".join(map(str, args.seeds)), "--baselines", "random"])
    rows = {row["method"]: row for row in result["summary"]}
    distilled = rows[summary["method"]]
    row = dict(method=method, ipc=ipc, top1=round(distilled["mean"], 4), std=round(distilled["std"], 4),
               random_top1=round(rows["random"]["mean"], 4), random_std=round(rows["random"]["std"], 4),
               seeds=distilled["seeds"], distill_seconds=round(summary["seconds"], 1),
               test_images=result.get("test_size"))
    print(f"{method:15s} IPC {ipc:3d}  top-1 {row['top1']:.4f} ± {row['std']:.4f}   random real "
          f"{row['random_top1']:.4f} ± {row['random_std']:.4f}   ({row['distill_seconds']} s)")
    return row


def main() -> None:
    """Runs the benchmark, prints its figures and writes its results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--ipc", type=lambda t: [int(v) for v in t.split(",")], default=[1, 10])
    add("--seeds", type=lambda t: [int(v) for v in t.split(",")], default=[0, 1, 2])
    add("--methods", type=lambda t: t.split(","), default=list(METHODS))
    add("--teacher-epochs", type=int, default=30)
    add("--relabel-epochs", type=int, default=300)
    add("--iterations", type=int, default=500, help="CDA's recovery iterations")
    add("--eval-epochs", type=int, default=300)
    add("--work", type=Path, default=Path(tempfile.gettempdir()) / "curate-bench-distill-labelled")
    args = parser.parse_args()
    train, test = write_digits(args.work / "digits")
    run = args.work / "run"
    if not (run / "catalog.duckdb").exists():
        run_command(["ingest", str(train), "--run", str(run)])
    rows = [measure(run, test, method, ipc, args) for ipc in args.ipc for method in args.methods]
    options = {k: str(v) for k, v in vars(args).items() if k != "work"}
    print(f"wrote {write_results('distill_labelled', dict(options=options, rows=rows))}")


if __name__ == "__main__":
    main()

"""How CDA's recovery scales across Ray workers: the same slices recovered by 1 and by N workers, side by side.

    python benchmarks/recover_scaling.py [--workers 1,2] [--ipc 4] [--iterations 200] [--threads 1]

On scikit-learn's digits (benchmarks/distill_tasks.py, 16 px), one ConvNet-3 BN teacher is trained once and copied
into a fresh set folder per worker count; then curate.distill.recover.distill_cda recovers --ipc slices (an IPC
index of all 10 classes each) through the Ray runner's map (curate.distill.run.expert_map, the map `curate distill
--runner ray` uses) with at most W tasks at a time. Measured per W: the wall time of the recovery (teacher
excluded), the compute seconds the slices report, and the speed-up over W = 1; the sets are compared to check
they are the same images whatever the split. Each Ray task sets torch to one thread (curate.runners.ray), so W
workers use W cores. Writes results/recover_scaling.json.
"""

import argparse
import dataclasses
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import torch
from common import write_results
from distill import int_list
from distill_tasks import load_task

from curate.distill.recover import TEACHER, distill_cda, squeeze
from curate.distill.run import DistillOptions, expert_map
from curate.distill.source import LabelledImages
from curate.runners import make_runner


def labelled(task: dict) -> LabelledImages:
    """Returns the task's training split as the LabelledImages a distillation reads."""
    classes = int(task["classes"])
    return LabelledImages(task["images"], task["labels"], [str(c) for c in range(classes)],
                          [str(i) for i in range(len(task["labels"]))], tuple(task["mean"].flatten().tolist()),
                          tuple(task["std"].flatten().tolist()))


def recover_with(workers: int, data: LabelledImages, options: DistillOptions, teacher: Path, work: Path) -> dict:
    """Recovers the set in a fresh folder with at most `workers` Ray tasks at a time; returns its figures and
    images."""
    folder = work / f"workers-{workers}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    shutil.copy(teacher, folder / TEACHER)
    began = time.perf_counter()
    result = distill_cda(data, options, folder, expert_map(make_runner("ray", workers, progress=False), "slices"))
    wall = time.perf_counter() - began
    slices = options.ipc
    return dict(workers=workers, slices=slices, wall_seconds=round(wall, 2),
                wall_per_slice=round(wall / slices, 2), images=result.images)


def main() -> None:
    """Runs the recovery at each worker count; prints and writes the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int_list, default=[1, 2])
    parser.add_argument("--ipc", type=int, default=4, help="slices (IPC indices of all 10 classes)")
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "curate-bench-recover-scaling")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = labelled(load_task("digits", argparse.Namespace(size=16)))
    options = DistillOptions(method="cda", ipc=args.ipc, iterations=args.iterations, teacher="convnet",
                             teacher_epochs=30, class_batch=10, relabel_epochs=0, image_size=16)
    args.work.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    teacher = squeeze(data, options, args.work)
    teacher_seconds = time.perf_counter() - began
    rows = [recover_with(w, data, options, teacher, args.work) for w in args.workers]
    first = rows[0]["images"]
    for row in rows:
        row["speedup"] = round(rows[0]["wall_seconds"] / row["wall_seconds"], 2)
        row["same_images_as_first"] = bool(torch.equal(row.pop("images"), first))
        print(json.dumps(row))
    path = write_results("recover_scaling", dict(
        options=dataclasses.asdict(options) | dict(threads=args.threads), teacher_seconds=round(teacher_seconds, 1),
        cpus=torch.get_num_threads(), rows=rows))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

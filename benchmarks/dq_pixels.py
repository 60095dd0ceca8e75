"""DQ's pixel quantization: accuracy and bytes when each kept image stores only its most salient patches and an MAE
rebuilds the rest, at patch-drop 0 / 0.25 / 0.5, on dq_quality.py's digits and synth tasks.

    python benchmarks/dq_pixels.py [--tasks digits,synth] [--fraction 0.3] [--seeds 0,1,2]

Per task: the DQ subset at --fraction (gradient features, as in dq_quality.py), an MAE trained from scratch on
the task's training images (`curate train-mae`'s trainer; digits at 16 px in 2 px patches, one patch per
original pixel; synth at 32 px in 4 px patches), patches ranked by GradCAM of the gradient features' CNN
(curate.models.saliency.classifier_saliency) or, as a control, at random; the lowest share dropped, the images
rebuilt (kept patches exact, the rest the MAE's), and the CNN trained on the rebuilt subset and tested on real
held-out images. Bytes: the kept patches as curate stores them (a lossless PNG with the dropped patches black, the
mask JSON) against the same images whole as PNG. Writes benchmarks/results/dq_pixels.json and .png (a run of
some --tasks keeps the others' rows).
"""

import argparse
import io
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import numpy as np
import torch
from common import RESULTS, write_results
from coresets import class_budgets, dq, gradient_features
from dq_quality import digits_task, feature_model, parse_args, row_log, synth_task
from PIL import Image

from curate.dynamic.classify import ClassifyConfig, accuracy, train_classifier
from curate.models.mae import MAEConfig, reconstruct
from curate.models.saliency import classifier_saliency
from curate.models.train_mae import MAETrainConfig, scratch_mae, train_mae_model
from curate.pixels import encode_patches, select_patches

DROPS = (0.0, 0.25, 0.5)
PATCH = {"digits": (16, 2), "synth": (32, 4)}  # MAE input size, patch size


def stored_bytes(pixels: np.ndarray, keep: np.ndarray, patch: int) -> int:
    """Returns the bytes of the images' kept patches as a patch-drop export stores them (PNG + mask)."""
    total = 0
    for image, mask in zip(pixels, keep, strict=True):
        png, meta = encode_patches(image, mask, patch, image.shape[:2])
        total += len(png) + len(json.dumps(meta, separators=(",", ":")))
    return total


def png_bytes(pixels: np.ndarray) -> int:
    """Returns the bytes of the images stored whole as PNG."""
    total = 0
    for image in pixels:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, "PNG", compress_level=9)
        total += buffer.tell()
    return total


def task_rows(name: str, task: dict, args: argparse.Namespace) -> list[dict]:
    """Runs every drop and ranking on the task's DQ subset for each seed; returns one row per run."""
    size, patch = PATCH[name]
    config = dict(epochs=args.epochs, batch_size=args.batch_size, width=args.width, **task["config"])
    ranker = feature_model(task, config)
    features = gradient_features(ranker, task["images"], task["labels"])
    mae = scratch_mae(MAEConfig(img_size=size, patch_size=patch), seed=0)
    train_mae_model(mae, torch.from_numpy(task["pixels"]).permute(0, 3, 1, 2).contiguous(),
                    MAETrainConfig(steps=args.mae_steps, progress=False))
    log, rows = row_log(args, f"pixels-{name}"), []
    labels = task["labels"].numpy()
    for seed in args.seeds:
        chosen = dq(features, labels, class_budgets(labels, args.fraction), seed)
        pixels = task["pixels"][chosen]
        scores = {"gradcam": classifier_saliency(ranker, task["images"][chosen], patch, task["labels"][chosen]),
                  "random": np.random.default_rng(seed).random((len(chosen), (size // patch) ** 2))}
        for drop in DROPS:
            for ranking in ("gradcam", "random") if drop else ("gradcam",):
                if row := log.done.get((ranking, "-", drop, seed)):
                    rows.append(row)
                    continue
                keep = select_patches(scores[ranking], drop)
                rebuilt = reconstruct(mae, pixels, keep)
                model, _ = train_classifier(task["standardize"](rebuilt), task["labels"][chosen], task["classes"],
                                            ClassifyConfig(**config, seed=seed))
                rows.append(dict(task=name, method=ranking, features="-", fraction=drop, seed=seed, size=len(chosen),
                                 accuracy=accuracy(model, task["test_images"], task["test_labels"]),
                                 stored_bytes=stored_bytes(pixels, keep, patch), png_bytes=png_bytes(pixels)))
                log.add(rows[-1])
    return rows


def summarize(rows: list[dict]) -> list[dict]:
    """Returns per (task, ranking, drop): mean and std accuracy over seeds, mean bytes and bytes ratio."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["task"], row["method"], row["fraction"]), []).append(row)
    out = []
    for (task, ranking, drop), runs in sorted(groups.items()):
        acc = [r["accuracy"] for r in runs]
        stored = statistics.fmean(r["stored_bytes"] for r in runs)
        whole = statistics.fmean(r["png_bytes"] for r in runs)
        out.append(dict(task=task, ranking=ranking, patch_drop=drop, accuracy=statistics.fmean(acc),
                        accuracy_std=statistics.stdev(acc) if len(acc) > 1 else 0.0, stored_bytes=round(stored),
                        whole_png_bytes=round(whole), bytes_ratio=round(stored / whole, 3)))
    return out


def plot(summary: list[dict], path: Path) -> None:
    """Writes accuracy against bytes ratio, a panel per task, a line per ranking."""
    from curate.plots import save_figure, subplots

    tasks = sorted({s["task"] for s in summary})
    fig, axes = subplots(1, len(tasks), figsize=(5 * len(tasks), 4), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        for ranking in ("gradcam", "random"):
            points = [s for s in summary if s["task"] == task and (s["ranking"] == ranking or s["patch_drop"] == 0)]
            points.sort(key=lambda s: s["patch_drop"])
            ax.errorbar([p["bytes_ratio"] for p in points], [p["accuracy"] for p in points],
                        yerr=[p["accuracy_std"] for p in points], marker="o", capsize=3, label=f"{ranking} ranking")
            for p in points:
                ax.annotate(f"drop {p['patch_drop']}", (p["bytes_ratio"], p["accuracy"]), fontsize=7)
        ax.set(xlabel="stored bytes / whole-image PNG bytes", ylabel="top-1 accuracy (held out)", title=task)
        ax.legend()
    save_figure(fig, path, dpi=110)


def main() -> None:
    """Runs the tasks, prints the summary and writes the results."""
    sys.argv += [] if "--tasks" in sys.argv else ["--tasks", "digits,synth"]
    args = parse_args(extra=[("--fraction", float, 0.3, "the DQ keep fraction"),
                             ("--mae-steps", int, 1500, "MAE training steps")])
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for name in args.tasks:
        rows += task_rows(name, digits_task() if name == "digits" else synth_task(args), args)
    previous = RESULTS / "dq_pixels.json"
    if previous.exists():  # the other tasks' rows stay
        rows += [r for r in json.loads(previous.read_text())["runs"] if r["task"] not in args.tasks]
    summary = summarize(rows)
    for s in summary:
        print(f"{s['task']:7s} {s['ranking']:8s} drop {s['patch_drop']:<4} top-1 {s['accuracy']:.4f} ± "
              f"{s['accuracy_std']:.4f}  bytes {s['stored_bytes']:>9,} ({s['bytes_ratio']:.3f} of whole PNG)")
    RESULTS.mkdir(exist_ok=True)
    plot(summary, RESULTS / "dq_pixels.png")
    options = {k: str(v) for k, v in vars(args).items() if k != "work"}
    print(f"wrote {write_results('dq_pixels', dict(options=options, summary=summary, runs=rows))}")


if __name__ == "__main__":
    main()

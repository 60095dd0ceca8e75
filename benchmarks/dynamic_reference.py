"""Side by side with the reference: curate's SeTa and InfoBatch pruners against the unmodified SeTa and InfoBatch
classes of mrazhou/SeTa (its seta.py), in the same classify loop, data, seeds and prune ratios as
benchmarks/dynamic_pruning.py.

    git clone https://github.com/mrazhou/SeTa /tmp/SeTa
    python benchmarks/dynamic_reference.py --reference /tmp/SeTa/seta.py [--plans seta-cifar:0.1,infobatch:0.5]

The reference's own code draws every epoch's order (its IBSampler.reset(): InfoBatch.prune / SeTa.prune, the
annealing no_prune, its numpy and torch global RNGs), holds the loss weights and records the scores (its
update()). Only its DataLoader glue is bypassed: IBSampler.__iter__ re-draws the epoch and returns itself, and
torch's BatchSampler (since it batches with itertools.islice, which calls iter() again per batch) then re-draws
on every batch and never ends an epoch; the patched `_BaseDataLoaderIter.__next__` is not needed without it.
Writes benchmarks/results/dynamic_reference.json.
"""

import argparse
import contextlib
import hashlib
import importlib.util
import io
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace

sys.path.insert(0, str(Path(__file__).parent))
import torch
from common import write_results
from dynamic_pruning import add_classify_options, classify_data, dynamic_for, summarize

from curate.dynamic import DynamicPruner, SeTaPruner
from curate.dynamic.classify import ClassifyConfig, accuracy, train_classifier

JSON_NAME = "dynamic_reference"
REFERENCE_VARIANTS = ("seta", "seta-cifar", "infobatch")  # random has no reference code


class ReferencePruner:
    """The pruner protocol train_classifier uses, served by a reference SeTa or InfoBatch object."""

    def __init__(self, reference: object, sampler: object) -> None:
        self.reference, self.sampler, self.order = reference, sampler, []

    def set_epoch(self, epoch: int) -> None:
        """Draws the next epoch's order with the reference's sampler (its epochs count themselves). Returns None."""
        with contextlib.redirect_stdout(io.StringIO()):  # the reference prints group sizes every epoch
            self.sampler.reset()
        self.order = [int(i) for i in self.sampler.sample_indices]

    def batch_sampler(self, batch_size: int) -> list[list[int]]:
        """Returns the epoch's order in consecutive batches."""
        return [self.order[i:i + batch_size] for i in range(0, len(self.order), batch_size)]

    def weights(self, indices: torch.Tensor) -> torch.Tensor:
        """Returns the reference's current loss weights of `indices`."""
        return self.reference.weights[indices].clone()

    def update(self, indices: torch.Tensor, losses: torch.Tensor) -> None:
        """Records the losses as scores through the reference's update(). Returns None."""
        self.reference.set_active_indices(indices)
        self.reference.update(losses.clone())  # it scales its argument in place

    def stats(self) -> SimpleNamespace:
        """Returns the reference's own saved ratio (pruned samples / (N * epochs))."""
        return SimpleNamespace(saved_fraction=self.reference.get_saved_ratio())


def load_reference(path: Path) -> ModuleType:
    """Returns the reference seta.py imported as a module (it patches torch's DataLoader iterator on import)."""
    spec = importlib.util.spec_from_file_location("seta_reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def reference_pruner(module: ModuleType, ours: DynamicPruner, seed: int) -> ReferencePruner:
    """Returns the reference's SeTa or InfoBatch configured as curate's pruner `ours`, wrapped."""
    dataset = torch.utils.data.TensorDataset(torch.arange(ours.num_samples))
    torch.manual_seed(seed)  # SeTa.prune draws its random share from the global torch RNG
    if isinstance(ours, SeTaPruner):
        reference = module.SeTa(dataset, ours.epochs, ours.prune_ratio, ours.num_groups, ours.window_scale,
                                ours.delta)
    else:
        reference = module.InfoBatch(dataset, ours.epochs, ours.prune_ratio, ours.delta)
    return ReferencePruner(reference, module.IBSampler(reference))


def plan_list(text: str) -> list[tuple[str, float]]:
    """Returns "variant:ratio,..." as (variant, ratio) pairs; raises ArgumentTypeError naming a bad one."""
    plans = []
    for plan in text.split(","):
        variant, _, ratio = plan.partition(":")
        try:
            plans.append((variant, float(ratio)))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{plan!r} is not variant:prune_ratio, e.g. seta-cifar:0.1") from None
        if variant not in REFERENCE_VARIANTS:
            raise argparse.ArgumentTypeError(f"{variant!r} has no reference code; use one of "
                                             f"{', '.join(REFERENCE_VARIANTS)}")
    return plans


def parse_args() -> argparse.Namespace:
    """Returns the command-line options."""
    parser = add_classify_options(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    parser.add_argument("--reference", type=Path, required=True, help="mrazhou/SeTa's seta.py")
    parser.add_argument("--plans", type=plan_list, default="seta:0.05,seta-cifar:0.1,seta-cifar:0.35,infobatch:0.5",
                        help=f"variant:prune_ratio,... (variants: {', '.join(REFERENCE_VARIANTS)})")
    args = parser.parse_args()
    if not args.reference.is_file():
        parser.error(f"--reference {args.reference}: no such file; pass the seta.py of a mrazhou/SeTa clone")
    return args


def main() -> None:
    """Trains the classifier with both implementations per plan and seed; prints and writes the results."""
    args = parse_args()
    module = load_reference(args.reference)
    images, labels, names, test_images, test_labels = classify_data(args)
    rows = []
    for variant, ratio in args.plans:
        for seed in args.seeds:
            for implementation in ("curate", "reference"):
                pruner = dynamic_for(variant, ratio).pruner(len(images), args.epochs, seed)
                if implementation == "reference":
                    pruner = reference_pruner(module, pruner, seed)
                config = ClassifyConfig(epochs=args.epochs, width=args.width, seed=seed)
                model, result = train_classifier(images, labels, len(names), config, pruner)
                rows.append(dict(implementation=implementation, method=variant, prune_ratio=ratio, seed=seed,
                                 accuracy=accuracy(model, test_images, test_labels), saved=result.saved_fraction,
                                 seconds=round(result.seconds, 1)))
                print(rows[-1], flush=True)
    summary = summarize(rows, keys=("method", "prune_ratio", "implementation"))
    for s in summary:
        print(f"{s['method']:>10} {s['prune_ratio']:.2f} {s['implementation']:>9}: top-1 {s['accuracy']:.3f} "
              f"± {s['accuracy_std']:.3f}, saved {s['saved']:.3f}")
    config = {k: str(v) for k, v in vars(args).items() if k != "reference"}
    config["reference_sha256"] = hashlib.sha256(args.reference.read_bytes()).hexdigest()  # which seta.py
    print("wrote", write_results(JSON_NAME, dict(config=config, summary=summary, runs=rows)))


if __name__ == "__main__":
    main()

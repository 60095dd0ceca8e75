"""The options of training a copy descriptor (`curate train-copy-detector`), apart from the training code so the
command line can show its defaults without importing torch."""

from __future__ import annotations

from dataclasses import dataclass

from curate.errors import UsageError


@dataclass(frozen=True)
class CopyTrainConfig:
    """The options of a copy-descriptor training run."""

    epochs: int = 10
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_epochs: float = 1.0
    temperature: float = 0.05
    koleo_weight: float = 30.0
    seed: int = 0
    image_size: int = 64
    dim: int = 128
    arch: str = "tiny"
    width: int = 32
    max_images: int | None = None

    def check(self) -> None:
        """Raises UsageError (one line) for options no training can run with."""
        for name in ("epochs", "batch_size", "image_size", "dim", "width"):
            if getattr(self, name) < 1:
                raise UsageError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.batch_size < 2:
            raise UsageError("--batch-size must be at least 2 (every other image in a batch is a negative)")
        if not (self.lr > 0 and self.temperature > 0 and self.koleo_weight >= 0):
            raise UsageError("--lr and --temperature must be positive and --koleo-weight not negative")
        from curate.copydetect.model import ARCHS

        if self.arch not in ARCHS:
            raise UsageError(f"unknown --arch {self.arch!r}; choose one of {', '.join(ARCHS)}")

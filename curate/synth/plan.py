"""The pool's plan: each sample's noise kind and concepts, and which earlier sample a duplicate copies."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from curate.synth.concepts import CONCEPTS, zipf_probabilities
from curate.synth.render import JUNK_IMAGE_TYPES

# Default share of each noise kind in the pool; the pool holds round(rate * samples) of each.
NOISE_RATES: dict[str, float] = {
    "clean": 0.60,
    "misaligned": 0.10,
    "junk_caption": 0.08,
    "exact_dup": 0.06,
    "near_dup": 0.08,
    "junk_image": 0.08,
}
KINDS: tuple[str, ...] = tuple(NOISE_RATES)
DUP_KINDS = ("exact_dup", "near_dup")

# Share of junk images whose caption still names a concept (so only an image check catches them).
JUNK_IMAGE_CONCEPT_CAPTION = 0.7


@dataclass(frozen=True)
class PlannedSample:
    """What one pool sample is: its kind, image concept, caption concept and duplicate source."""

    kind: str
    concept: int  # concept of the image (for junk images: only what a tiny thumbnail shows; truth says null)
    caption_concept: int | None  # concept the caption names; None for a junk caption
    dup_of: int | None = None  # pool index of the clean sample a duplicate copies
    junk_type: str | None = None


def kind_counts(samples: int, rates: dict[str, float] = NOISE_RATES) -> dict[str, int]:
    """Returns how many samples of each kind a pool of `samples` holds (largest-remainder rounding)."""
    total = sum(rates.values())
    exact = {k: samples * r / total for k, r in rates.items()}
    counts = {k: int(v) for k, v in exact.items()}
    by_remainder = sorted(rates, key=lambda k: (-(exact[k] - counts[k]), list(rates).index(k)))
    for k in by_remainder[: samples - sum(counts.values())]:
        counts[k] += 1
    return counts


def _kind_sequence(rng: np.random.Generator, samples: int, rates: dict[str, float]) -> list[str]:
    """Returns the shuffled kinds, reordered so that every duplicate has a clean sample before it."""
    kinds = [k for k, n in kind_counts(samples, rates).items() for _ in range(n)]
    kinds = [kinds[i] for i in rng.permutation(len(kinds))]
    seen_clean = False
    for i, kind in enumerate(kinds):
        if kind in DUP_KINDS and not seen_clean:
            j = next((j for j in range(i + 1, len(kinds)) if kinds[j] == "clean"), None)
            if j is None:
                raise ValueError("a pool with duplicates needs at least one clean sample")
            kinds[i], kinds[j] = kinds[j], kinds[i]
        seen_clean = seen_clean or kinds[i] == "clean"
    return kinds


def _other_concept(rng: np.random.Generator, concept: int) -> int:
    other = int(rng.integers(len(CONCEPTS) - 1))
    return other + 1 if other >= concept else other


def plan_pool(samples: int, seed: int, rates: dict[str, float] = NOISE_RATES) -> list[PlannedSample]:
    """Returns the plan of every pool sample, in pool order; a function of (samples, seed, rates) only."""
    rng = np.random.default_rng([seed, 0])
    kinds = _kind_sequence(rng, samples, rates)
    concepts = rng.choice(len(CONCEPTS), size=samples, p=zipf_probabilities(seed))
    plan: list[PlannedSample] = []
    clean: list[int] = []
    for i, kind in enumerate(kinds):
        concept = int(concepts[i])
        if kind in DUP_KINDS:
            src = clean[int(rng.integers(len(clean)))]
            plan.append(PlannedSample(kind, plan[src].concept, plan[src].concept, dup_of=src))
            continue
        caption_concept: int | None = concept
        junk_type = None
        if kind == "misaligned":
            caption_concept = _other_concept(rng, concept)
        elif kind == "junk_caption":
            caption_concept = None
        elif kind == "junk_image":
            junk_type = JUNK_IMAGE_TYPES[int(rng.integers(len(JUNK_IMAGE_TYPES)))]
            caption_concept = concept if rng.random() < JUNK_IMAGE_CONCEPT_CAPTION else None
        elif kind == "clean":
            clean.append(i)
        plan.append(PlannedSample(kind, concept, caption_concept, junk_type=junk_type))
    return plan

"""Synthetic benchmark pool: rendered shape x colour concepts with web-like noise, in img2dataset's layout.

`generate_pool(out)` writes out/pool (noisy shards), out/truth.parquet (what each pool sample really is),
out/hq (trusted clean shards) and out/heldout.parquet (labelled evaluation images).
"""

from curate.synth.concepts import COLORS, CONCEPTS, SHAPES
from curate.synth.plan import KINDS, NOISE_RATES
from curate.synth.pool import generate_pool

__all__ = ["COLORS", "CONCEPTS", "KINDS", "NOISE_RATES", "SHAPES", "generate_pool"]

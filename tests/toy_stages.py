"""Score stages of a user's own, for tests that need keep flags: every step-th sample in uid order of its shard."""

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from curate.options import option
from curate.stages.score import ScoreStage


@dataclass(kw_only=True)
class EveryNth(ScoreStage):
    """Keeps every `step`-th sample of a shard in uid order; score is the rank over the shard's size."""

    name = "toy"
    columns = ("toy_score", "toy_keep", "toy_reason")
    step: int = option(2, "keep every step-th sample")

    def process_batch(self, samples: pa.Table) -> pa.Table:
        """Returns uid, <name>_score, <name>_keep and <name>_reason for the shard's samples."""
        rank = np.argsort(np.argsort(samples["uid"].to_numpy(zero_copy_only=False), kind="stable"), kind="stable")
        keep = rank % self.step == 0
        return pa.table({"uid": samples["uid"], self.columns[0]: rank / max(1, len(rank)), self.columns[1]: keep,
                         self.columns[2]: pa.array([None if k else "not every nth" for k in keep], pa.string())})


@dataclass(kw_only=True)
class A(EveryNth):
    """Flags a_keep: every second sample."""

    name = "a"
    columns = ("a_score", "a_keep", "a_reason")


@dataclass(kw_only=True)
class B(EveryNth):
    """Flags b_keep: every third sample."""

    name = "b"
    columns = ("b_score", "b_keep", "b_reason")
    step: int = option(3, "keep every step-th sample")

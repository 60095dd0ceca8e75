import numpy as np
import pytest

from curate.concepts.members import segments


@pytest.mark.parametrize(
    "ids, spans",
    [
        ([], []),
        ([4], [(0, 1)]),
        ([2, 2, 5, 7, 7, 7], [(0, 2), (2, 3), (3, 6)]),
        ([0, 1, 0], [(0, 1), (1, 2), (2, 3)]),
    ],
)
def test_segments_are_the_runs_of_equal_ids(ids, spans):
    assert segments(np.asarray(ids, np.int64)) == spans

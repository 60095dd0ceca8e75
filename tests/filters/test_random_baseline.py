"""The random baseline: an exact fraction of the pool, each sample's draw fixed by its uid and the seed."""

import json

import numpy as np
import pytest

from curate.api import open as open_run
from curate.cli.main import main
from curate.errors import UsageError
from curate.filters.random_baseline import RandomBaseline, uid_draws
from tests.shards import planted_datacomp_run


def test_draws_depend_on_uid_and_seed_only():
    draws = uid_draws(["a", "b", "c"], 0)
    assert uid_draws(["c", "a"], 0).tolist() == [draws[2], draws[0]]
    assert not np.array_equal(uid_draws(["a", "b", "c"], 1), draws)
    many = uid_draws([str(i) for i in range(20000)], 3)
    assert many.min() >= 0 and many.max() < 1 and abs(many.mean() - 0.5) < 0.01


def test_keeps_the_fraction_of_the_pool_from_the_command_line(tmp_path, capsys):
    run, _, _ = planted_datacomp_run(tmp_path)
    assert main(["filter", "random", str(run.path), "--keep-fraction", "0.25", "--seed", "7"]) == 0
    # int(132 * 0.25) = 33 kept: the threshold is the 33rd best score, kept when >= it
    counts = json.loads(capsys.readouterr().out)
    assert (counts["scored"], counts["kept"], counts["dropped"]) == (132, 33, 99)
    draws = -np.sort(-uid_draws(open_run(run.path).sql("SELECT uid FROM samples")["uid"].to_list(), 7))
    assert counts["threshold"] == draws[32]  # exact, in float64
    kept = open_run(run.path).sql("SELECT uid FROM samples WHERE random_keep ORDER BY random_score DESC")
    assert kept.height == 33
    with pytest.raises(UsageError, match=r"keep-fraction must be in \(0, 1\]"):
        RandomBaseline(keep_fraction=0)

"""The DQ benchmark's selections: each keeps exactly its per-class budget of distinct samples of that class, and
each does what its name says (k-center spreads out, GraphCut and DQ are the library's)."""

import numpy as np
import pytest

from tests.benchmarks import bench_module


@pytest.fixture(scope="module")
def coresets():
    return bench_module("coresets.py")


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], [50, 37, 23])
    return rng.normal(size=(len(labels), 6)) + labels[:, None] * 3, labels


@pytest.mark.parametrize("fraction", [0.1, 0.3, 0.6])
def test_every_selection_keeps_each_class_budget(coresets, data, fraction):
    x, labels = data
    budgets = coresets.class_budgets(labels, fraction)
    assert sum(budgets.values()) == int(len(labels) * fraction)
    for select in [*coresets.SELECTIONS.values(), coresets.uniform]:
        chosen = select(x, labels, budgets, 1)
        assert len(set(chosen.tolist())) == len(chosen)
        assert {c: int((labels[chosen] == c).sum()) for c in budgets} == budgets, select.__name__


def test_kcenter_spreads_out_more_than_random(coresets, data):
    x, labels = data
    budgets = coresets.class_budgets(labels, 0.2)

    def coverage(chosen):  # the farthest any sample of class 0 lies from its nearest chosen one
        members, centers = x[labels == 0], x[chosen[labels[chosen] == 0]]
        return np.linalg.norm(members[:, None] - centers[None], axis=2).min(axis=1).max()

    random_cover = np.mean([coverage(coresets.uniform(x, labels, budgets, s)) for s in range(5)])
    assert coverage(coresets.kcenter(x, labels, budgets, 0)) < random_cover


def test_dq_draws_from_every_bin(coresets, data):
    from curate.concepts.quantization import graphcut_bins

    x, labels = data
    chosen = coresets.dq(x, labels, coresets.class_budgets(labels, 0.2), seed=0)
    class0 = np.flatnonzero(labels == 0)
    bins = [class0[b] for b in graphcut_bins(x[class0], 10)]
    assert all(np.isin(b, chosen).sum() == 1 for b in bins)  # 10 of 50: one from each bin of 5

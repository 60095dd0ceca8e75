"""The dynamic-pruning benchmark's JSON merge: a run of some variants keeps the others' rows only when they were
run with the same options."""

import argparse

import pytest

from tests.benchmarks import bench_module


@pytest.fixture(scope="module")
def bench():
    return bench_module("dynamic_pruning.py")


def clip_args(variants: list[str], samples_seen: int = 36_000) -> argparse.Namespace:
    return argparse.Namespace(seeds=[0, 1, 2], targets=[0.3, 0.5, 0.7], pool=1200, samples_seen=samples_seen,
                              variants=variants)


def test_a_run_of_some_variants_adds_them_to_the_kept_ones(bench):
    previous = bench.merged_configs({}, clip_args(["full", "seta"]), ["clip"])
    merged = bench.merged_configs(previous, clip_args(["random", "seta"]), ["clip"])
    assert merged["clip"]["variants"] == "full,random,seta"
    assert merged["clip"]["samples_seen"] == "36000"


def test_kept_rows_run_with_other_options_are_refused(bench):
    previous = bench.merged_configs({}, clip_args(["full", "seta"]), ["clip"])
    with pytest.raises(SystemExit, match=r"clip rows of full,seta were run with \{'samples_seen': '36000'\}"):
        bench.merged_configs(previous, clip_args(["random"], samples_seen=12_000), ["clip"])


def test_rerunning_every_kept_variant_may_change_the_options(bench):
    previous = bench.merged_configs({}, clip_args(["full", "seta"]), ["clip"])
    merged = bench.merged_configs(previous, clip_args(["full", "seta"], samples_seen=12_000), ["clip"])
    assert merged["clip"]["samples_seen"] == "12000"


def test_unknown_variant_names_the_known_ones(bench):
    with pytest.raises(argparse.ArgumentTypeError, match="choose from full,seta,seta-cifar,infobatch,random"):
        bench.variant_list("seta,setaa")

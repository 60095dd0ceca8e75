import ast
import functools
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from curate.catalogs import connect
from curate.rundir import RunDir

TESTS = Path(__file__).parent
# Tests that start a Ray cluster of their own in a subprocess, not the ray_local one: a local Ray, and a two-node
# cluster whose test SIGKILLs a task process of that cluster's (its raylets' children only). They form a group of
# their own, which another worker can run while the Ray group runs.
RAY_PROCESS_MODULES = ("tests/runners/test_multinode.py", "tests/runners/test_ray_quiet.py")
# Modules whose tests run whole in the Ray group: a Ray test compares with what a module-scoped fixture built (a
# distilled set), built once, not once on each worker; or tests parametrized over both runners ask for ray_local
# with request.getfixturevalue, which ray_tests() cannot see.
RAY_SHARED_MODULES = ("tests/distill/test_cda.py", "tests/distill/test_distill_eval.py",
                      "tests/stages/test_filesearch.py", "tests/stages/test_listsearch.py")
RAY_GROUPS = ("ray", "ray-processes")  # the longest groups, scheduled first


@functools.cache
def ray_tests() -> frozenset[str]:
    """Returns "path::function" of every test function that takes the ray_local fixture (read from the sources: the
    pytest-xdist controller, which schedules, collects no tests)."""
    found = set()
    for path in TESTS.rglob("test_*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and any(a.arg == "ray_local" for a in node.args.args):
                found.add(f"{path.relative_to(TESTS.parent).as_posix()}::{node.name}")
    return frozenset(found)


def xdist_group(nodeid: str) -> str:
    """Returns the group a test runs in under pytest-xdist: "ray" for the tests that use ray_local (and the modules
    that share a fixture with one), "ray-processes" for those that start a Ray of their own, else its module."""
    path = nodeid.split("::")[0]
    if path in RAY_PROCESS_MODULES:
        return "ray-processes"
    return "ray" if path in RAY_SHARED_MODULES or nodeid.split("[")[0] in ray_tests() else path


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """With `-n N` (`make test`) and no other --dist: each group of xdist_group on one worker, the Ray groups first
    (then the others, most tests first). One local Ray serves every ray_local test (its warm workers reused), and a
    module's fixtures are built once. (xdist's own `--dist loadgroup` does not group under pytest 9.2: it renames
    item._nodeid, which pytest no longer reads.)"""
    if config.getvalue("dist") != "load":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class Groups(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return xdist_group(nodeid)

        def _assign_work_unit(self, node) -> None:
            for group in reversed(RAY_GROUPS):  # xdist orders the queue by tests per group: the Ray groups go first
                if group in self.workqueue:
                    self.workqueue.move_to_end(group, last=False)
            super()._assign_work_unit(node)

    return Groups(config, log)


def pytest_collection_modifyitems(config, items):
    """On a pytest-xdist worker, puts the Ray groups' tests first (as they are scheduled), and refuses a test that
    reaches ray_local through another fixture, which ray_tests() cannot see."""
    if not hasattr(config, "workerinput"):
        return
    hidden = [i.nodeid for i in items if "ray_local" in i.fixturenames and xdist_group(i.nodeid) != "ray"]
    if hidden:
        raise pytest.UsageError(f"take the ray_local fixture as an argument of the test itself: {hidden}")
    items.sort(key=lambda item: xdist_group(item.nodeid) not in RAY_GROUPS)


@pytest.fixture(autouse=True, scope="session")
def own_ray_tmpdir():
    """Ray's state (sessions, and the address file `ray.init()` looks for an existing cluster in) lives in a folder
    of this test process's own, inherited by its subprocesses: a Ray cluster of another test process on the machine
    (another pytest-xdist worker, another checkout's test run) is never joined, nor ours by theirs. Short, under
    /tmp: Ray's socket paths must fit in 107 bytes."""
    folder = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    saved = os.environ.get("RAY_TMPDIR")
    os.environ["RAY_TMPDIR"] = folder
    yield folder
    if saved is None:
        os.environ.pop("RAY_TMPDIR", None)
    else:
        os.environ["RAY_TMPDIR"] = saved
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """The tests run torch on one thread: their many small ops are several times faster on one of 2 shared cores
    than spread over both, and far faster when another test process (pytest-xdist) or a Ray worker holds the other
    core: torch's threads spin waiting for each other."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def ray_local(own_ray_tmpdir):
    """A real local Ray for the whole session, shut down at the end."""
    import ray

    from curate.runners.ray import init_ray

    init_ray()
    yield ray
    ray.shutdown()


def catalog_snapshot(run: RunDir) -> dict:
    """Returns every view's rows in a fixed order: equal snapshots mean equal catalogs."""
    con = connect(run)
    try:
        return {
            "samples": con.execute("SELECT * FROM samples ORDER BY uid, shard, key").fetchall(),
            "quarantine": con.execute("SELECT * FROM quarantine ORDER BY shard, key, reason, detail").fetchall(),
            "shards": con.execute("SELECT * FROM shards ORDER BY shard_id").fetchall(),
            "accounting": con.execute("SELECT * FROM accounting").fetchall(),
        }
    finally:
        con.close()

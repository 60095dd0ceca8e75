import pytest

from curate.catalogs import connect
from curate.rundir import RunDir


@pytest.fixture(scope="session")
def ray_local():
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

"""pipelines/dfn.py as users run it: a script in a subprocess, importing only the installed package."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from curate.catalogs import connect
from curate.models import ModelSpec, load_model
from curate.rundir import RunDir
from tests.shards import clean_shard, sample_members, write_tar

SCRIPT = Path(__file__).parents[2] / "pipelines" / "dfn.py"


def _script(tmp_path, *args):
    # Copied elsewhere first, as `ray submit` does: nothing beside the script can be imported.
    copy = tmp_path / "submitted" / "dfn.py"
    copy.parent.mkdir(exist_ok=True)
    shutil.copy(SCRIPT, copy)
    return subprocess.run([sys.executable, str(copy), *map(str, args)], capture_output=True, text=True,
                          cwd=tmp_path)


@pytest.fixture
def checkpoint(tmp_path):
    path = tmp_path / "dfn.pt"
    torch.save(load_model(ModelSpec(random_weights=True), "cpu").model.state_dict(), path)
    return path


def test_pipeline_ingests_embeds_and_keeps_a_fraction(tmp_path, checkpoint):
    clean_shard(tmp_path / "00000.tar", 6)
    clean_shard(tmp_path / "00001.tar", 4, start=6)
    write_tar(tmp_path / "00002.tar", sample_members("bad", image=b"not an image", meta={}))
    run = tmp_path / "run"
    result = _script(tmp_path, "--input", tmp_path / "{00000..00002}.tar", "--run", run, "--model", "curate-tiny",
                     "--pretrained", checkpoint, "--keep-fraction", "0.5", "--runner", "local")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout[result.stdout.index("{"):])
    assert summary["ingest"] == dict(read=11, kept=10, quarantined=1, shard_errors=0)
    assert summary["embed"] == {"embedded": 10} and summary["dfn"]["kept"] == 5
    con = connect(RunDir(run))
    assert con.execute("SELECT count(*) FILTER (dfn_keep), count(dfn_score) FROM samples").fetchone() == (5, 10)


def test_pipeline_bad_arguments_are_one_line(tmp_path):
    result = _script(tmp_path, "--input", tmp_path / "none*.tar", "--run", tmp_path / "r", "--model", "curate-tiny",
                     "--keep-fraction", "0.3", "--runner", "local")
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "no shards found" in result.stderr
    result = _script(tmp_path, "--run", tmp_path / "r", "--model", "x", "--keep-fraction", "0.3")
    assert result.returncode == 2 and "--input" in result.stderr and result.stderr.count("\n") == 1

"""TorchScript is code: a TorchScript file, whatever its name, runs only with --trust-torchscript, on each command
that loads it (`curate embed --as`, then `curate decontaminate` re-loading it), and the permission is no part of
a stage's version. Pickled Python objects in a model file are refused through the CLI in one line."""

import json

import pytest
import torch

from curate.cli.main import main
from curate.graph import status
from curate.stages.describe import describe
from tests.shards import image_bytes, ingested_tars

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")


class Hostile(torch.nn.Module):
    """A descriptor whose forward also creates the file `target` (torch.from_file with shared=True writes it)."""

    def __init__(self, target: str):
        super().__init__()
        self.target = target

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mark = torch.from_file(self.target, shared=True, size=8, dtype=torch.uint8)
        y = torch.nn.functional.adaptive_avg_pool2d(x, 2).flatten(1)
        return torch.nn.functional.normalize(y, dim=1) + mark[:1].float() * 0


class Pickled:
    """A Python object beside the tensors of a torch.save file."""


@pytest.fixture
def run(tmp_path):
    return ingested_tars(tmp_path / "pool", shards=1, per_shard=2)


def refused(capsys, args: list[str]) -> str:
    """Runs the CLI and checks it failed with a one-line error, the last line of stderr; returns that line."""
    assert main(args) == 2
    err = capsys.readouterr().err
    *progress, error = err.rstrip("\n").split("\n")
    assert error.startswith("curate: error: ") and all(line.startswith("\r") for line in progress), err
    return error


def test_a_torchscript_file_named_like_weights_runs_only_with_the_flag(run, tmp_path, capsys):
    target = tmp_path / "written-by-the-model"
    model = tmp_path / "weights.pth"
    torch.jit.script(Hostile(str(target))).save(str(model))
    embed = ["embed", str(run.path), "--model", str(model), "--as", "copy", "--image-size", "8"]
    err = refused(capsys, embed)
    assert "weights.pth is a TorchScript file, and TorchScript is code" in err and "--trust-torchscript" in err
    assert not target.exists() and "embed_copy" not in run.manifest()["stages"]

    assert main([*embed, "--trust-torchscript"]) == 0
    assert json.loads(capsys.readouterr().out) == {"described": 2} and target.exists()  # trusted: its code ran
    version = run.manifest()["stages"]["embed_copy"]["version"]
    target.unlink()

    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "a.png").write_bytes(image_bytes(fmt="PNG"))
    decontaminate = ["decontaminate", str(run.path), "--against", str(tmp_path / "eval")]
    assert "is a TorchScript file" in refused(capsys, decontaminate)  # the permission did not persist
    assert not target.exists()
    assert main([*decontaminate, "--trust-torchscript"]) == 0 and target.exists()

    assert "trust" not in json.dumps(run.manifest())  # a permission, not an option of any stage
    describe(run, str(model), "copy", image_size=8, trust_torchscript=True, progress=False)
    assert run.manifest()["stages"]["embed_copy"]["version"] == version and status(run)["decontam"] == "current"


# A CLIP model loads in the embed job's workers, after its progress bar started; a descriptor first in the driver.
@pytest.mark.parametrize("model", [["--model", "{file}", "--as", "copy"],
                                   ["--model", "curate-tiny", "--pretrained", "{file}"]])
def test_pickled_objects_are_refused_through_the_cli_in_one_line(run, tmp_path, capsys, model):
    file = tmp_path / "model.pt"
    torch.save({"weight": torch.zeros(2), "extra": Pickled()}, file)
    err = refused(capsys, ["embed", str(run.path), *(a.format(file=file) for a in model)])
    assert "model.pt holds pickled Python objects beyond tensors, which curate never unpickles" in err
    assert "torch.save(model.state_dict(), path)" in err and "weights_only" not in err

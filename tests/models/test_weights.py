"""Every model loader reads weights through curate.models.weights: a file holding pickled Python objects, a
TorchScript file or a damaged file is a one-line UsageError that never passes on torch's weights_only=False advice,
and nothing in the file runs."""

import pytest
import torch

from curate.copydetect.model import load_descriptor
from curate.distill.teacher import load_checkpoint
from curate.errors import UsageError
from curate.models import ModelSpec, load_model
from curate.models.mae_io import load_mae
from curate.models.weights import read_weights


class Planted:
    """An object whose unpickling creates the file `marker`: it shows whether a loader unpickled it."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return open, (self.marker, "w")


class Identity(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def pickled(folder):
    torch.save({"weight": torch.zeros(2), "extra": Planted(str(folder / "unpickled"))}, folder / "model.pth")
    return folder / "model.pth"


def torchscript(folder):
    torch.jit.script(Identity()).save(str(folder / "model.pth"))
    return folder / "model.pth"


def damaged(folder):
    (folder / "model.pth").write_bytes(b"not a checkpoint")
    return folder / "model.pth"


LOADERS = {
    "read_weights": lambda path: read_weights(path, "--weights"),
    "mae": load_mae,
    "teacher": lambda path: load_checkpoint(path, "convnet", 3, 4, 8, width=4, depth=1),
    "descriptor": lambda path: load_descriptor(str(path), "cpu"),
    "clip": lambda path: load_model(ModelSpec("curate-tiny", str(path)), "cpu"),
}


@pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")
@pytest.mark.filterwarnings("ignore:'torch.load' received a zip file:UserWarning")  # open_clip's torch.load, refusing
@pytest.mark.parametrize("loader", LOADERS)
@pytest.mark.parametrize("make, message", [
    (pickled, "holds pickled Python objects beyond tensors, which curate never unpickles; save the state dict alone "
              "(torch.save(model.state_dict(), path)) or a safetensors file"),
    (torchscript, "model.pth is a TorchScript file"),
    (damaged, "cannot read"),
])
def test_files_beyond_weights_are_refused_in_one_line(tmp_path, loader, make, message):
    with pytest.raises(UsageError) as error:
        LOADERS[loader](make(tmp_path))
    text = str(error.value)
    assert message in text and "\n" not in text
    assert "weights_only" not in text
    assert not (tmp_path / "unpickled").exists()


def test_a_safetensors_file_reads_as_weights(tmp_path):
    from safetensors.torch import save_file

    save_file({"weight": torch.arange(3.0)}, str(tmp_path / "w.safetensors"))
    assert torch.equal(read_weights(tmp_path / "w.safetensors", "--weights")["weight"], torch.arange(3.0))

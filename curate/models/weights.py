"""Reading model files without running their code: the one place curate reads weights and TorchScript.

Weights load from .safetensors files and from torch.save files read with torch.load(weights_only=True), which
rebuilds tensors and plain containers only. torch's refusals (a pickled class or function, a TorchScript archive,
a legacy or damaged file) become one-line UsageErrors that say what to give instead; torch's advice to retry
with weights_only=False, which would run the file's pickled code, is never passed on. A TorchScript file is code:
it runs only when the content check finds a TorchScript archive and the caller was given --trust-torchscript.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

from curate.errors import UsageError

INSTEAD = "save the state dict alone (torch.save(model.state_dict(), path)) or a safetensors file and give that"
# A weights-only refusal of a class, function or module (torch names it a GLOBAL) rather than of the format.
_PICKLED_OBJECT = re.compile(r"\bglobal\b|is blocked", re.IGNORECASE)


def first_line(exc: BaseException) -> str:
    """Returns the exception's type and the first line of its message (two when the first ends in ':', as torch's
    "Error(s) in loading state_dict ...:" does before saying what), at most 300 characters."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    detail = " ".join(lines[:2] if lines and lines[0].endswith(":") else lines[:1])
    return f"{type(exc).__name__}: {detail[:300]}" if detail else type(exc).__name__


def is_torchscript(path: str | Path) -> bool:
    """Returns whether the file is a TorchScript archive (a zip holding a code/ folder; torch.save zips hold none),
    decided by its content whatever its name."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any("/code/" in name for name in archive.namelist())
    except (OSError, zipfile.BadZipFile):  # missing, unreadable or no zip: not TorchScript (the reader says why)
        return False


def _torchscript_error(source: str) -> UsageError:
    return UsageError(f"{source} is a TorchScript file, which is code, not weights; curate does not run it here: "
                      f"{INSTEAD}")


def weights_refusal(exc: BaseException, source: str) -> UsageError | None:
    """Returns the one-line error for torch.load(weights_only=True) refusing `source` (a file, or a model that
    names one), without torch's weights_only=False advice; None when `exc` is no such refusal."""
    text = str(exc)
    if not isinstance(exc, pickle.UnpicklingError) and "weights_only" not in text:
        return None
    if "TorchScript" in text:
        return _torchscript_error(source)
    if isinstance(exc, pickle.UnpicklingError) and _PICKLED_OBJECT.search(text):
        return UsageError(f"{source} holds pickled Python objects beyond tensors, which curate never unpickles; "
                          f"{INSTEAD}")
    return UsageError(f"cannot read {source}: torch's weights-only reader refuses it (not a torch.save file of "
                      f"tensors, a legacy format, or damaged); {INSTEAD}")


def read_weights(path: str | Path, what: str) -> Any:
    """Returns what the weights file at `path` holds: a .safetensors file's tensors, else the object torch.save
    wrote, read with weights_only=True. Raises UsageError naming `what` (e.g. --mae) when it cannot, TorchScript
    files included."""
    import torch

    source = f"{what} {path}"
    if is_torchscript(path):
        raise _torchscript_error(source)
    try:
        if Path(path).suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch, zipfile and safetensors raise many types; each means "not weights we read"
        raise weights_refusal(exc, source) or UsageError(f"cannot read {source}: {first_line(exc)}") from None


def load_torchscript(path: str | Path, trust: bool) -> Any:
    """Returns the TorchScript module at `path`, on the CPU, when `trust` (--trust-torchscript) was given; raises
    UsageError saying what the file is and what to give instead otherwise, or when it does not load."""
    if not trust:
        raise UsageError(f"{path} is a TorchScript file, and TorchScript is code that runs when loaded; pass "
                         "--trust-torchscript only for a file from a source you trust, or give a state dict or "
                         "safetensors file instead")
    import torch

    try:
        return torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:  # torch raises many types for an archive it can't read
        raise UsageError(f"cannot load TorchScript file {path}: {first_line(exc)}") from None

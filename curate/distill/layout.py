"""Where a run's distilled sets live: RUN/distilled/<name>/, its file names, and the finished sets."""

from pathlib import Path

from curate.catalogs.views import DISTILLED, DISTILLED_NAME, FINISHED
from curate.catalogs.views import LABELS as LABELS  # the set's rows; the distilled view reads them
from curate.errors import UsageError
from curate.rundir import RunDir

OPTIONS = "options.json"  # the options the set is made with, written first
SOURCE = "source.json"  # the versions of the stages the selection read when the set started
RELABEL = "relabel.safetensors"  # CDA/SRe2L: FKD soft labels (stored crops and the teacher's logits on them)
IMAGES = "images.safetensors"  # the learned images unclipped, as floats (the PNGs are what exports hold)
RESULT = FINISHED  # written last: the set is finished


def set_folder(run: RunDir, name: str) -> Path:
    """Returns RUN/distilled/<name>; raises UsageError for a name that is not a plain folder name."""
    if not DISTILLED_NAME.match(name):
        raise UsageError(f"--name {name!r} must be letters, digits, '.', '_' or '-' (starting with a letter or digit)")
    return run.path / DISTILLED / name


def distilled_sets(run: RunDir) -> list[str]:
    """Returns the names of the run's finished distilled sets, sorted."""
    folder = run.path / DISTILLED
    return sorted(p.parent.name for p in folder.glob(f"*/{RESULT}")) if folder.is_dir() else []

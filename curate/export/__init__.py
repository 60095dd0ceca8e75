"""Export: a selection of a run's samples as webdataset tars, parquet, a DataComp uid list, an HF dataset; and
patch-drop webdatasets (kept patches + masks) with their MAE reconstruction."""

from curate.export.core import EXPORT_FORMATS, WRITERS, export_subset, patch_export_summary, reconstruct_export
from curate.export.patches import PatchDrop, RebuiltSample, iter_patch_export, patch_drop_options, read_patch_sample
from curate.io.sources import SourceChangedError

__all__ = [
    "EXPORT_FORMATS", "WRITERS", "PatchDrop", "RebuiltSample", "SourceChangedError", "export_subset",
    "iter_patch_export", "patch_drop_options", "patch_export_summary", "read_patch_sample", "reconstruct_export",
]

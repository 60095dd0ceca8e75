"""Export: a selection of a run's samples as webdataset tars, parquet, a DataComp uid list, an HF dataset."""

from curate.export.core import EXPORT_FORMATS, WRITERS, export_subset
from curate.io.sources import SourceChangedError

__all__ = ["EXPORT_FORMATS", "WRITERS", "SourceChangedError", "export_subset"]

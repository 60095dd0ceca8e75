"""curate: dataset curation and pruning for web-scale image-text data."""

__version__ = "0.1.0"

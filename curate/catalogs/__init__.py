"""The DuckDB catalog over a run's Parquet files: its views, a read-only connection, and saved queries."""

from curate.catalogs.connection import connect
from curate.catalogs.saved import saved_queries, saved_query
from curate.catalogs.views import build_catalog

__all__ = ["build_catalog", "connect", "saved_queries", "saved_query"]

"""The user's own columns an export carries: those ingest kept from the shards (`.cls`, json fields, Parquet and
Hugging Face columns) and those `curate annotate` joined, with the class names of Hugging Face ClassLabel
columns."""

from __future__ import annotations

import datetime
import decimal
from dataclasses import dataclass, field

import pyarrow as pa

from curate.catalogs import connect
from curate.graph import ANNOTATION, entries, status
from curate.io.columns import CLS
from curate.rundir import RunDir


@dataclass(frozen=True)
class CarriedColumns:
    """The samples columns to export besides curate's (`names`, in the catalog's order) and, per ClassLabel column,
    its class names in index order."""

    names: tuple[str, ...] = ()
    class_labels: dict[str, list[str]] = field(default_factory=dict)
    types: dict[str, pa.DataType] = field(default_factory=dict)

    def json_fields(self, row: dict) -> dict:
        """Returns the row's carried values for a WebDataset json (all but `cls`, which is a member of its own),
        nulls left out, dates and decimals as text."""
        return {name: _json_value(row[name]) for name in self.names if name != CLS and row[name] is not None}


def carried_columns(run: RunDir) -> CarriedColumns:
    """Returns the columns the run's samples carry from its inputs and its current annotate stages."""
    recorded, states = entries(run), status(run)
    ingest = recorded.get("ingest", {})
    wanted = list(ingest.get("own_columns", {}))
    wanted += [c for name, entry in recorded.items() if entry.get(ANNOTATION) and states.get(name) == "current"
               for c in entry.get("columns", ())]
    con = connect(run)
    try:
        schema = con.sql("SELECT * FROM samples LIMIT 0").to_arrow_table().schema
    finally:
        con.close()
    names = tuple(c for c in dict.fromkeys(wanted) if c in schema.names)
    labels = {c: list(n) for c, n in ingest.get("class_labels", {}).items() if c in names}
    return CarriedColumns(names, labels, {name: schema.field(name).type for name in names})


def _json_value(value: object) -> object:
    if isinstance(value, datetime.date | datetime.time | datetime.datetime | datetime.timedelta | decimal.Decimal):
        return str(value)
    return value

"""Selection methods, one module each. FILTERS maps a method's name to its class: a dataclass of its options
with `apply(run, runner) -> dict`, either a per-shard ScoreStage or a whole-pool SelectionMethod. A method is added
by its module, one line here and its test."""

from __future__ import annotations

import importlib

from curate.errors import UsageError

FILTERS = {
    "basic": "curate.filters.basic:BasicFilter",
    "dfn": "curate.filters.dfn:DFNFilter",
    "semdedup": "curate.filters.semdedup:SemDeDup",
    "dbp": "curate.filters.dbp:DBP",
    "dq": "curate.filters.dq:DQ",
    "random": "curate.filters.random_baseline:RandomBaseline",
    "neardup": "curate.filters.neardup:NearDup",
}


def filter_class(name: str) -> type:
    """Returns the class of the registered method `name`; raises UsageError naming the known ones."""
    if name not in FILTERS:
        raise UsageError(f"unknown method {name!r}; choose one of {', '.join(FILTERS)}")
    module, cls = FILTERS[name].split(":")
    return getattr(importlib.import_module(module), cls)

"""The saved query library: the .sql files in catalogs/queries/, shipped inside the package."""

from importlib import resources

from curate.errors import UsageError


def saved_queries() -> dict[str, str]:
    """Returns every saved query, name (file stem) -> SQL text."""
    folder = resources.files("curate.catalogs") / "queries"
    return {p.name[: -len(".sql")]: p.read_text() for p in folder.iterdir() if p.name.endswith(".sql")}


def saved_query(name: str) -> str:
    """Returns the SQL of the saved query `name`; raises UsageError listing the known names."""
    queries = saved_queries()
    if name not in queries:
        raise UsageError(f"no saved query {name!r}; saved queries: {', '.join(sorted(queries))}")
    return queries[name]

"""Selection methods, one module each. FILTERS maps a method's name to its module, which provides
`add_arguments(parser)` and `run(run_dir, args) -> dict` for the `curate filter` command."""

FILTERS = {
    "basic": "curate.filters.basic",
    "dfn": "curate.filters.dfn",
    "semdedup": "curate.filters.semdedup",
    "dbp": "curate.filters.dbp",
}

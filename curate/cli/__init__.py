"""The `curate` command line: one module per group of subcommands, registered in main.COMMANDS."""

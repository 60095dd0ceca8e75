"""Entry point of the `curate` command: parses arguments and turns user errors into one line and exit code 2."""

import argparse
import contextlib
import importlib
import signal
import sys
import threading
from collections.abc import Iterator

from curate.errors import UsageError
from curate.outputs import os_error_message

# subcommand -> module with add_arguments(parser) and run(args) -> int
COMMANDS = {
    "synth": "curate.cli.synth",
    "ingest": "curate.cli.ingest",
    "sql": "curate.cli.sql",
    "status": "curate.cli.status",
    "export": "curate.cli.export",
    "embed": "curate.cli.embed",
    "annotate": "curate.cli.annotate",
    "filter": "curate.cli.filter",
    "decontaminate": "curate.cli.decontaminate",
    "report": "curate.cli.report",
    "train-dfn": "curate.cli.train_dfn",
    "train-mae": "curate.cli.train_mae",
    "evaluate": "curate.cli.evaluate",
    "distill": "curate.cli.distill",
    "distill-eval": "curate.cli.distill_eval",
    "train-copy-detector": "curate.cli.train_copy_detector",
}


class Terminated(BaseException):
    """Raised in the main thread by SIGTERM while a command runs, so it unwinds as from Ctrl-C: a --workers pool
    stops its workers, a stage rebuilds the catalog and releases the run."""


class OneLineArgumentParser(argparse.ArgumentParser):
    """argparse that reports a bad argument in one line instead of a usage block."""

    def error(self, message: str):
        """Raises UsageError with the message and where to find help; never returns."""
        raise UsageError(f"{message} (see {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    """Returns the parser with every subcommand registered."""
    parser = OneLineArgumentParser(prog="curate", description="Curate web-scale image-text datasets.")
    subparsers = parser.add_subparsers(dest="command", required=True, parser_class=OneLineArgumentParser)
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        module.add_arguments(subparsers.add_parser(name, help=module.__doc__.splitlines()[0]))
        subparsers.choices[name].set_defaults(handler=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs one subcommand; returns the process exit code (2 for a user error, 143 after SIGTERM)."""
    with _sigterm_raises():
        return guarded(lambda: _run_command(argv))


def _terminate(signum, frame) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends the process at once
    raise Terminated


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """While the block runs, SIGTERM raises Terminated in it, when this is the main thread and nothing else handles
    SIGTERM (a host program's own handler is left alone); yields nothing."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        yield
        return
    signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _run_command(argv: list[str] | None) -> int:
    if _importing_main_in_a_worker():
        raise UsageError("this script ran curate again inside a --workers process, which imports the script it starts "
                         "from: guard its entry with `if __name__ == \"__main__\":`")
    args = build_parser().parse_args(argv)
    return args.handler(args) or 0


def guarded(command, *args) -> int:
    """Returns command(*args), or 2 after printing a UsageError as one line, 1 after an OS error (permissions, a full
    disk, a read-only file system), 130 when interrupted, 143 when terminated (SIGTERM)."""
    try:
        return command(*args)
    except UsageError as exc:
        print(f"curate: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"curate: error: {os_error_message(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("curate: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except Terminated:
        print("curate: terminated; rerun the same command to resume", file=sys.stderr)
        return 143


def _importing_main_in_a_worker() -> bool:
    """Returns whether this call comes from a spawned worker re-running the parent's main script at import."""
    frame = sys._getframe()
    while frame is not None:
        if frame.f_code.co_name == "_fixup_main_from_path" and "multiprocessing" in frame.f_code.co_filename:
            return True
        frame = frame.f_back
    return False


if __name__ == "__main__":
    sys.exit(main())

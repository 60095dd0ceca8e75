"""Curate commands as processes forked from one interpreter that imported curate's command line (and any modules
named) once: each command is a process of its own, running `python -m curate.cli.main ARGS` as a fresh one does
(its exit code, stdout and stderr, a signal ending it), without paying an interpreter's start-up and imports.

    python benchmarks/forks.py [MODULE ...]   # the server ForkServer starts: imports, then forks on request

benchmarks/reliability.py --fork runs its kill test through it, and the test suite its command-line checks (one
test still starts a fresh interpreter: tests/test_imports.py, on what the command line imports).
"""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
import traceback
from pathlib import Path


def serve(preload: list[str]) -> None:
    """The server's loop: imports `preload` (torch set to one thread first, before any parallel region, so that
    forking is safe) and every command's module, then for each request line on stdin ({"args": [...], "cwd",
    "stdout" and "stderr": paths or null}) forks a child that runs curate.cli.main as __main__ with those arguments
    (stdout and stderr to those files, else /dev/null) and exits with its exit code, and prints {"pid": N}; on the
    next line ("wait") it reaps the child and prints {"code": C} (C negative: ended by signal -C). Until then the
    child keeps its pid, even once ended, so that a signal sent to it can reach no other process."""
    import importlib

    if "torch" in preload:
        import torch

        torch.set_num_threads(1)
    for name in preload:
        importlib.import_module(name)
    from curate.cli.main import build_parser

    build_parser()  # imports every command's module
    # As in a fresh `python -m curate.cli.main`, the module is not imported when it runs as __main__ (runpy warns)
    del sys.modules["curate.cli.main"]
    print(json.dumps({"ready": os.getpid()}), flush=True)
    while line := sys.stdin.readline():
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _child(request)
        print(json.dumps({"pid": pid}), flush=True)
        sys.stdin.readline()  # "wait"
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"code": os.waitstatus_to_exitcode(status)}), flush=True)


def _child(request: dict) -> None:
    """Runs the requested command in this forked process and leaves with its exit code; never returns."""
    code = 1
    try:
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, 0)
        for fd, name in ((1, "stdout"), (2, "stderr")):
            path = request.get(name)
            os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644) if path else null, fd)
        if request.get("cwd"):
            os.chdir(request["cwd"])
        sys.argv = ["curate", *request["args"]]
        runpy.run_module("curate.cli.main", run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as exc:  # as the interpreter ends on it: an int is the code, None 0, anything else printed, 1
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:
            print(exc.code, file=sys.stderr)
    except BaseException:  # an uncaught exception: its traceback, exit code 1
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


class ForkServer:
    """A `benchmarks/forks.py` server process (`work`: a folder for the commands' captured output; `env`: the
    server's environment, which its commands inherit): forks curate commands one at a time. Use it as a context
    manager, or close() it."""

    def __init__(self, work: Path, preload: tuple[str, ...] = (), env: dict | None = None):
        work.mkdir(parents=True, exist_ok=True)
        self.work, self.count = work, 0
        self.process = subprocess.Popen([sys.executable, __file__, *preload], env=env, text=True,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.request(None)  # its "ready" line, once its imports are done

    def __enter__(self) -> ForkServer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def request(self, line: str | None) -> dict:
        """Sends a line (None: none) and returns the server's next one."""
        if line is not None:
            self.process.stdin.write(line + "\n")
            self.process.stdin.flush()
        answer = self.process.stdout.readline()
        if not answer:
            raise RuntimeError(f"the fork server ended (exit code {self.process.wait()})")
        return json.loads(answer)

    def start(self, args: list, cwd: Path | None = None, stdout: bool = False) -> Forked:
        """Forks `curate ARGS` (run in `cwd`; its stdout kept when `stdout`, else discarded, its stderr kept);
        returns it running."""
        self.count += 1
        out, err = (self.work / f"{self.count}.{name}" for name in ("out", "err"))
        request = dict(args=[str(a) for a in args], cwd=str(cwd) if cwd else None, stdout=str(out) if stdout else None,
                       stderr=str(err))
        return Forked(self, self.request(json.dumps(request))["pid"], out if stdout else None, err)

    def run(self, args: list, cwd: Path | None = None) -> subprocess.CompletedProcess:
        """Returns `curate ARGS` run to its end (in `cwd`), with its exit code and its stdout and stderr as text."""
        forked = self.start(args, cwd, stdout=True)
        out, err = forked.communicate()
        return subprocess.CompletedProcess(["curate", *map(str, args)], forked.returncode, out.decode(), err.decode())

    def close(self) -> None:
        """Ends the server (once the command it runs, if any, has ended)."""
        self.process.stdin.close()
        self.process.wait()


class Forked:
    """A command forked by a ForkServer: poll, send_signal, wait and communicate as subprocess.Popen's."""

    def __init__(self, server: ForkServer, pid: int, stdout: Path | None, stderr: Path):
        self.server, self.pid, self.stdout, self.stderr, self.returncode = server, pid, stdout, stderr, None

    def poll(self) -> int | None:
        """Returns the exit code once the command has ended (a zombie until reaped here), else None."""
        if self.returncode is None:
            try:
                state = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except FileNotFoundError:
                state = "X"
            if state in ("Z", "X"):
                self.wait()
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.returncode is None:  # not reaped yet: the pid is still the command's
            os.kill(self.pid, signum)

    def wait(self) -> int:
        if self.returncode is None:
            self.returncode = self.server.request("wait")["code"]
        return self.returncode

    def communicate(self) -> tuple[bytes | None, bytes]:
        """Waits for the end; returns (stdout if kept, else None; stderr) as bytes."""
        self.wait()
        return (self.stdout.read_bytes() if self.stdout else None), self.stderr.read_bytes()


if __name__ == "__main__":
    serve(sys.argv[1:])

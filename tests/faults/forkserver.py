"""A fork server: loads a console script once, then runs it in a forked child for every request.

Run as ``python forkserver.py NAME`` (``NAME``: a console script, such as ``glucoshare``). Starting
Glucoshare's command line costs about three seconds on a small machine, almost all of it importing
modules; a fault test that kills twenty imports would spend a minute doing nothing else. The
server pays that once: every child is forked after the imports, then sets its environment and
``sys.argv`` and calls the entry point, exactly as the installed script would from then on.

Requests come one JSON document per line on stdin, answers go one per line on stdout:

* ``{"op": "run", "argv": [...], "env": {...}, "stdout": PATH, "stderr": PATH}`` → ``{"pid": N}``;
  the child leads a session of its own (its process group id is its pid) and reads nothing.
* ``{"op": "poll", "pid": N}`` → ``{"returncode": N | null}`` (negative: killed by that signal).
* ``{"op": "wait", "pid": N}`` → ``{"returncode": N}``.

This file imports nothing from the tests: it runs in a process of its own.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import signal
import sys
import traceback
from collections.abc import Callable
from typing import Any


def _returncode(status: int) -> int:
    """The returncode of a wait status, as :mod:`subprocess` gives it."""
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def _child(entry: Callable[[], object], request: dict[str, Any]) -> None:
    """Become the program: own session, redirected files, the request's environment and argv."""
    code = 1
    try:
        os.setsid()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        null = os.open(os.devnull, os.O_RDONLY)
        out = os.open(request["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        err = os.open(request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        for fd, target in ((null, 0), (out, 1), (err, 2)):
            os.dup2(fd, target)
            os.close(fd)
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = list(request["argv"])
        try:
            entry()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # noqa: BLE001 - the child reports everything on its stderr, then exits
        traceback.print_exc()
        code = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):  # exiting anyway
                stream.flush()
        os._exit(code)


def main() -> None:
    """Serve requests until stdin closes."""
    name = sys.argv[1]
    (found,) = [e for e in importlib.metadata.entry_points(group="console_scripts") if e.name == name]
    entry = found.load()
    answer = sys.stdout

    def reply(document: dict[str, Any]) -> None:
        answer.write(json.dumps(document) + "\n")
        answer.flush()

    reply({"ready": True})
    for line in sys.stdin:
        request = json.loads(line)
        op = request["op"]
        if op == "run":
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                _child(entry, request)
            reply({"pid": pid})
        elif op == "poll":
            done, status = os.waitpid(request["pid"], os.WNOHANG)
            reply({"returncode": _returncode(status) if done else None})
        elif op == "wait":
            _, status = os.waitpid(request["pid"], 0)
            reply({"returncode": _returncode(status)})
        else:
            reply({"error": f"unknown op {op}"})


if __name__ == "__main__":
    main()

"""Kill a process with SIGKILL at chosen moments of its work, and check what it left behind.

:func:`kill_during` is the reusable part: it takes the command to start, the moments to kill it
at, and a callback that verifies the state after each kill. It starts the command through a
:class:`Launcher`:

* :class:`Exec` starts the installed program as any shell would (``subprocess``);
* :class:`ForkServer` imports a console script's entry point once and forks a child per run
  (see ``forkserver.py``): the child is the same program from the moment it would start working,
  without the three seconds of imports that would otherwise make a run of twenty kills last
  minutes.

Both kill the whole process group of the victim (it leads a session of its own), so a program that
starts helpers dies with them, as it would under the kernel's OOM killer or a power cut.

Killing a background worker the same way (a sketch)::

    @contextlib.contextmanager
    def job_running(worker: Running) -> Iterator[None]:
        enqueue_the_job()                # e.g. an upload whose processing is deferred
        wait_until_picked_up(worker)     # the moments count from here
        yield

    kill_during(["glucoshare", "worker"], spread_moments(seed, 20, job_seconds), verify,
                env=victim_env, scratch=tmp_path, launcher=forks, during=job_running)

``verify`` then checks that the job left nothing half done and is taken up again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Protocol

SEED_VARIABLE = "GLUCOSHARE_FAULT_SEED"
"""Set it to the seed a failed run printed to kill at the same moments again."""


class Running(Protocol):
    """A started victim process."""

    pid: int

    def poll(self) -> int | None:
        """The returncode once it ended (negative: killed by that signal), else ``None``."""
        ...

    def wait(self, timeout: float) -> int:
        """Wait for the end; the returncode."""
        ...

    def kill(self) -> None:
        """SIGKILL the process group."""
        ...


class Launcher(Protocol):
    """Starts a command with an environment, its output going to two files."""

    def start(self, command: Sequence[str], env: Mapping[str, str], stdout: Path, stderr: Path) -> Running:
        """Start ``command``; return at once."""
        ...


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


class _Popen:
    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.process = process
        self.pid = process.pid

    def poll(self) -> int | None:
        return self.process.poll()

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout)

    def kill(self) -> None:
        _kill_group(self.pid)


class Exec:
    """Start the command as a new process (``command[0]`` is looked up beside the test's Python)."""

    def start(self, command: Sequence[str], env: Mapping[str, str], stdout: Path, stderr: Path) -> Running:
        """Start ``command`` in a session of its own."""
        program = Path(sys.executable).with_name(command[0])
        argv = [str(program) if program.exists() else command[0], *command[1:]]
        with stdout.open("wb") as out, stderr.open("wb") as err:
            process = subprocess.Popen(
                argv, env=dict(env), stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True
            )
        return _Popen(process)


class _Forked:
    def __init__(self, server: ForkServer, pid: int) -> None:
        self.server = server
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self.server.ask({"op": "poll", "pid": self.pid})["returncode"]
        return self.returncode

    def wait(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while (code := self.poll()) is None:
            if time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(str(self.pid), timeout)
            time.sleep(0.01)
        return code

    def kill(self) -> None:
        _kill_group(self.pid)


class ForkServer:
    """Runs a console script (``command[0]``, e.g. ``glucoshare``) in children forked after its imports."""

    def __init__(self, script: str, env: Mapping[str, str]) -> None:
        self.script = script
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("forkserver.py")), script],
            env=dict(env),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        ready = self._read()
        if not ready.get("ready"):  # pragma: no cover - a broken helper
            msg = f"the fork server did not start: {ready}"
            raise RuntimeError(msg)

    def _read(self) -> dict[str, object]:
        stream = self.process.stdout
        assert stream is not None
        line = stream.readline()
        if not line:
            msg = "the fork server ended"
            raise RuntimeError(msg)
        answer: dict[str, object] = json.loads(line)
        return answer

    def ask(self, request: dict[str, object]) -> dict[str, int | None]:
        """Send one request; its answer."""
        stream: IO[str] | None = self.process.stdin
        assert stream is not None
        stream.write(json.dumps(request) + "\n")
        stream.flush()
        answer = self._read()
        if "error" in answer:  # pragma: no cover - a broken request
            raise RuntimeError(str(answer["error"]))
        return {k: v if v is None else int(str(v)) for k, v in answer.items()}

    def start(self, command: Sequence[str], env: Mapping[str, str], stdout: Path, stderr: Path) -> Running:
        """Fork a child that runs ``command`` (its first word must be this server's script)."""
        if command[0] != self.script:
            msg = f"this fork server runs {self.script}, not {command[0]}"
            raise ValueError(msg)
        pid = self.ask(
            {
                "op": "run",
                "argv": list(command),
                "env": dict(env),
                "stdout": str(stdout),
                "stderr": str(stderr),
            }
        )["pid"]
        assert pid is not None
        return _Forked(self, pid)

    def close(self) -> None:
        """Stop the server (its children have all been waited for)."""
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(10)
        if self.process.stdout is not None:
            self.process.stdout.close()


@contextlib.contextmanager
def fork_server(script: str, env: Mapping[str, str]) -> Iterator[ForkServer]:
    """A :class:`ForkServer` for the block."""
    server = ForkServer(script, env)
    try:
        yield server
    finally:
        server.close()


@dataclasses.dataclass(frozen=True)
class KillPoint:
    """One kill and how it went."""

    index: int
    moment: float
    """Seconds after the work began (the start, or the end of ``during``'s set-up)."""
    landed: bool
    """The process was still running when SIGKILL came (else it had ended on its own)."""
    returncode: int
    stdout: str
    stderr: str

    def describe(self) -> str:
        """One line for the test's log and failure messages."""
        how = "killed" if self.landed else f"had ended ({self.returncode})"
        return f"kill {self.index} at {self.moment:.3f} s: {how}"


During = Callable[[Running], contextlib.AbstractContextManager[object]]
"""Entered once the victim started (wait until it is ready, start the work); left after the kill."""


@contextlib.contextmanager
def _nothing(_running: Running) -> Iterator[None]:
    yield


def _output(path: Path) -> str:
    """What a victim wrote to ``path``: nothing when it was killed before it opened the file."""
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def kill_during(
    command: Sequence[str],
    moments: Sequence[float],
    verify: Callable[[KillPoint], None],
    *,
    env: Mapping[str, str],
    scratch: Path,
    launcher: Launcher | None = None,
    during: During | None = None,
    timeout: float = 60,
) -> list[KillPoint]:
    """Start ``command`` once per moment, SIGKILL it that many seconds into its work, then ``verify``.

    ``during`` (optional) is entered once the process started and left after the kill: it waits
    until the process is ready and sets off the work (a server: its request), and the moment counts
    from then. ``verify`` gets each :class:`KillPoint` right after the process is gone; it raises
    (an assertion) when the state it finds is wrong. The victim's output goes to files in
    ``scratch``. Returns every kill, in order.
    """
    start = launcher or Exec()
    begin = during or _nothing
    done: list[KillPoint] = []
    for index, moment in enumerate(moments):
        out, err = scratch / f"kill-{index}.out", scratch / f"kill-{index}.err"
        victim = start.start(command, env, out, err)
        try:
            with begin(victim):
                time.sleep(max(0.0, moment))
                if victim.poll() is None:  # never signal a pid that was reaped (it may be reused)
                    victim.kill()
                returncode = victim.wait(timeout)
        finally:
            if victim.poll() is None:
                victim.kill()
                victim.wait(timeout)
        point = KillPoint(
            index=index,
            moment=moment,
            landed=returncode == -signal.SIGKILL,
            returncode=returncode,
            stdout=_output(out),
            stderr=_output(err),
        )
        done.append(point)
        verify(point)
    return done


def fault_seed() -> int:
    """The seed of this run's kill moments: ``GLUCOSHARE_FAULT_SEED``, or a new one (printed by the tests)."""
    given = os.environ.get(SEED_VARIABLE)
    return int(given) if given else random.SystemRandom().randrange(2**32)


def spread_moments(seed: int, count: int, span: float) -> list[float]:
    """``count`` random moments in ``[0, span)`` seconds, one in each of ``count`` equal slices, shuffled.

    One per slice (jittered, not uniform) so that every part of the work (start, parse, store,
    commit, the end) gets kills however the dice fall; the order is shuffled so that what one kill
    leaves behind meets the next at a random stage.
    """
    rng = random.Random(seed)
    width = span / count
    moments = [(i + rng.random()) * width for i in range(count)]
    rng.shuffle(moments)
    return moments

"""The kill harness itself: it kills when asked, tells a kill from an ending, and spreads its moments."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from tests.faults.conftest import base_environment
from tests.faults.harness import Exec, KillPoint, Running, _Popen, kill_during, spread_moments


def test_kill_during_kills_a_running_process_and_tells_when_it_had_ended(tmp_path: Path) -> None:
    seen: list[KillPoint] = []
    env = base_environment()
    points = kill_during(["sleep", "30"], [0.05], seen.append, env=env, scratch=tmp_path, launcher=Exec())
    points += kill_during(["true"], [0.5], seen.append, env=env, scratch=tmp_path, launcher=Exec())
    assert seen == points
    assert [(p.landed, p.returncode) for p in points] == [(True, -signal.SIGKILL), (False, 0)]


class _OpensNothing:
    """Starts a victim that has not opened its output files yet when it dies.

    A child of the fork server opens them itself, after the fork: a kill a millisecond after the
    start finds no file.
    """

    def start(self, command: Sequence[str], env: Mapping[str, str], stdout: Path, stderr: Path) -> Running:
        del stdout, stderr  # never created
        process = subprocess.Popen(
            list(command),
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        return _Popen(process)


def test_a_victim_killed_before_it_opened_its_output_wrote_nothing(tmp_path: Path) -> None:
    (point,) = kill_during(
        ["sleep", "30"],
        [0.05],
        lambda _: None,
        env=base_environment(),
        scratch=tmp_path,
        launcher=_OpensNothing(),
    )
    assert (point.landed, point.stdout, point.stderr) == (True, "", "")


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped by its parent, does not)."""
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def test_kill_during_kills_the_whole_process_group(tmp_path: Path) -> None:
    script = f"sleep 30 & echo $! > {tmp_path / 'child'}; wait"
    kill_during(["sh", "-c", script], [0.3], lambda _: None, env=base_environment(), scratch=tmp_path)
    child = int((tmp_path / "child").read_text())
    deadline = time.monotonic() + 10
    while _alive(child):
        assert time.monotonic() < deadline, "the helper the victim started outlived it"
        time.sleep(0.01)


def test_spread_moments_puts_one_in_each_slice_and_repeats_with_the_seed() -> None:
    moments = spread_moments(1234, 20, 2.0)
    assert sorted(int(m / 0.1) for m in moments) == list(range(20))
    assert moments == spread_moments(1234, 20, 2.0)
    assert moments != spread_moments(1235, 20, 2.0)

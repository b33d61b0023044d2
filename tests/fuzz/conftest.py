"""The fuzz report: how many cases ran per layout, engine and outcome, printed and written to
``build/fuzz-report.json`` at the end of the session.

Each test process (each xdist worker) writes its running count to a file of its own after every
test; the session's main process adds the files up at the end. A worker that dies loses only the
cases of the test it was running.
"""

from __future__ import annotations

import collections
import json
import os
import resource
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings as hypothesis_settings

from tests.fuzz.tally import TALLY

BUILD = Path(__file__).resolve().parents[2] / "build"
REPORT = BUILD / "fuzz-report.json"
MEMORY_LIMIT = 12 << 30
"""Under ``make fuzz``, the address space of a test process: a case that asks for more fails there
(MemoryError, or the process ends) instead of making the machine's kernel kill whatever it picks."""
_COUNTS = "GLUCOSHARE_FUZZ_COUNTS"
"""The folder of the running counts (set by the main process, inherited by the xdist workers)."""
_STARTED = time.monotonic()
_REPORT_KEY = pytest.StashKey[dict[str, Any]]()


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def pytest_configure(config: pytest.Config) -> None:
    """Make the folder of running counts; bound the memory of the fuzzing processes
    (``HYPOTHESIS_PROFILE=fuzz`` only: browsers that other tests start reserve far more address space
    than they use)."""
    if not _is_worker(config):
        folder = BUILD / f"fuzz-counts-{os.getpid()}"
        shutil.rmtree(folder, ignore_errors=True)
        os.environ[_COUNTS] = str(folder)
    if os.environ.get("HYPOTHESIS_PROFILE") == "fuzz":
        _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard == resource.RLIM_INFINITY or hard > MEMORY_LIMIT:
            resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, hard))


def pytest_runtest_logfinish() -> None:
    """Write this process's running count (after every test under ``tests/fuzz``)."""
    _write_counts()


def _write_counts() -> None:
    if not TALLY or _COUNTS not in os.environ:
        return
    folder = Path(os.environ[_COUNTS])
    folder.mkdir(parents=True, exist_ok=True)
    rows = [[*key, count] for key, count in sorted(TALLY.items())]
    (folder / f"{os.getpid()}.json").write_text(json.dumps(rows))


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Write this process's count (the API fuzz elsewhere counts too); in the main process, add up
    the counts and write the report."""
    _write_counts()
    if _is_worker(session.config) or _COUNTS not in os.environ:
        return
    folder = Path(os.environ[_COUNTS])
    tally: collections.Counter[tuple[str, str, str]] = collections.Counter()
    for part in sorted(folder.glob("*.json")) if folder.exists() else []:
        for name, engine, outcome, count in json.loads(part.read_text()):
            tally[name, engine, outcome] += count
    shutil.rmtree(folder, ignore_errors=True)
    if not tally:
        return
    per_layout: dict[str, dict[str, Any]] = {}
    for (name, engine, outcome), count in sorted(tally.items()):
        entry = per_layout.setdefault(name, {"cases": 0, "by_engine": {}, "by_outcome": {}})
        entry["cases"] += count
        entry["by_engine"][engine] = entry["by_engine"].get(engine, 0) + count
        entry["by_outcome"][outcome] = entry["by_outcome"].get(outcome, 0) + count
    report = {
        "profile": os.environ.get("HYPOTHESIS_PROFILE", "fast"),
        "max_examples": hypothesis_settings.default.max_examples,
        "cases": sum(tally.values()),
        "seconds": round(time.monotonic() - _STARTED, 1),
        "layouts": per_layout,
    }
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(json.dumps(report, indent=2) + "\n")
    session.config.stash[_REPORT_KEY] = report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    """Print the number of cases per layout (and where the report went)."""
    report = config.stash.get(_REPORT_KEY, None)
    if report is None:
        return
    terminalreporter.section("fuzz cases")
    for name, entry in report["layouts"].items():
        engines = ", ".join(f"{k} {v}" for k, v in entry["by_engine"].items())
        outcomes = sorted(entry["by_outcome"].items(), key=lambda item: -item[1])
        shown = ", ".join(f"{k} {v}" for k, v in outcomes[:4]) + (", ..." if len(outcomes) > 4 else "")
        terminalreporter.write_line(f"{name:18} {entry['cases']:6} ({engines}): {shown}")
    terminalreporter.write_line(
        f"{report['cases']} cases in {report['seconds']} s (profile {report['profile']}); "
        f"report: {REPORT.relative_to(REPORT.parents[1])}"
    )

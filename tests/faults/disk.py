"""A disk that really fills up: a small tmpfs mounted for the test, and a file that takes its space.

Mounting needs root or ``CAP_SYS_ADMIN``. Without it the tests that need a full disk are skipped
with the reason, unless ``GLUCOSHARE_TEST_REQUIRE_TMPFS=1`` (continuous integration), which turns
the skip into a failure.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

REQUIRE_TMPFS = "GLUCOSHARE_TEST_REQUIRE_TMPFS"


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    program = shutil.which(argv[0]) or argv[0]
    return subprocess.run([program, *argv[1:]], capture_output=True, text=True, check=False)


@contextlib.contextmanager
def small_disk(folder: Path, megabytes: int) -> Iterator[Path]:
    """A tmpfs of ``megabytes`` MB mounted on ``folder`` (created) for the block."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        mounted = _run("mount", "-t", "tmpfs", "-o", f"size={megabytes}m,mode=0700", "tmpfs", str(folder))
        failure = mounted.stderr.strip() or f"exit code {mounted.returncode}"
    except OSError as exc:
        mounted, failure = None, str(exc)
    if mounted is None or mounted.returncode != 0:
        reason = f"cannot mount a small tmpfs to fill a disk ({failure}): needs root or CAP_SYS_ADMIN"
        if os.environ.get(REQUIRE_TMPFS) == "1":
            pytest.fail(f"{reason} ({REQUIRE_TMPFS}=1)")
        pytest.skip(reason)
    try:
        yield folder
    finally:
        if _run("umount", str(folder)).returncode != 0:
            _run("umount", "--lazy", str(folder))  # a process still holds a file: detach it anyway


def free_bytes(folder: Path) -> int:
    """The bytes still free on ``folder``'s file system."""
    stats = os.statvfs(folder)
    return stats.f_bavail * stats.f_frsize


def leave_free(folder: Path, wanted: int) -> Path:
    """Take all the space of ``folder``'s file system but ``wanted`` bytes, with one file; its path.

    Calling it again resizes that file, so the tests can step through several amounts of free space.
    """
    filler = folder / "filler"
    current = filler.stat().st_size if filler.exists() else 0
    size = max(0, current + free_bytes(folder) - wanted)
    with filler.open("r+b" if filler.exists() else "wb") as handle:
        handle.truncate(size)  # smaller: pages are given back
        if size:
            os.posix_fallocate(handle.fileno(), 0, size)  # real pages (a sparse file takes no space)
    return filler

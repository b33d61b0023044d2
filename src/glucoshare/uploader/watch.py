"""Watch a folder for device exports: hand each new or changed file on once it stops changing.

The folder is polled (every ``interval`` seconds): a file is ready when its size and modification
time are the same at two polls in a row (a download or copy has finished), and it is handed on
once for that size and time; changed later, it is handed on again (the uploader's data set names,
by content, tell whether the server has it already). Hidden files and folders, Office lock files
(``~$…``) and partial downloads (:data:`PARTIAL_SUFFIXES`) are ignored; so are symbolic links.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final

PARTIAL_SUFFIXES: Final = (".crdownload", ".part", ".partial", ".download", ".tmp")
"""Suffixes of files a browser or copy tool is still writing."""

Signature = tuple[int, int]
"""A file's size in bytes and modification time in nanoseconds."""


def is_candidate(relative: Path) -> bool:
    """True for a path (relative to the watched folder) that may be a finished export."""
    if any(part.startswith(".") for part in relative.parts):
        return False
    name = relative.name
    return not name.startswith("~$") and not name.lower().endswith(PARTIAL_SUFFIXES)


@dataclasses.dataclass(slots=True)
class FolderWatch:
    """The state of one watched folder between polls."""

    folder: Path
    seen: dict[Path, Signature] = dataclasses.field(default_factory=dict)
    """Each candidate file's signature at the last poll."""
    handled: dict[Path, Signature] = dataclasses.field(default_factory=dict)
    """The signature each file had when it was last handed on."""

    def _scan(self) -> Iterator[tuple[Path, Signature]]:
        for path in sorted(self.folder.rglob("*")):
            if not is_candidate(path.relative_to(self.folder)) or path.is_symlink():
                continue
            try:
                if not path.is_file():
                    continue
                stat = path.stat()
            except OSError:  # removed between the listing and the look
                continue
            yield path, (stat.st_size, stat.st_mtime_ns)

    def poll(self) -> list[Path]:
        """The files that are ready (module notes), in name order; each is returned until marked."""
        current = dict(self._scan())
        ready = [
            path
            for path, signature in current.items()
            if self.seen.get(path) == signature and self.handled.get(path) != signature
        ]
        self.seen = current
        return ready

    def mark(self, path: Path) -> None:
        """Note that ``path`` was handed on as it was at the last poll."""
        signature = self.seen.get(path)
        if signature is not None:
            self.handled[path] = signature


def pause(seconds: float) -> None:
    """Wait between two polls (Ctrl-C interrupts the wait)."""
    time.sleep(seconds)


def watch_folder(
    folder: Path,
    handle: Callable[[Path], bool],
    *,
    interval_s: float,
    max_rounds: int | None = None,
    sleep: Callable[[float], None] | None = None,
) -> int:
    """Poll ``folder`` and call ``handle`` with each ready file until Ctrl-C or ``max_rounds`` polls.

    ``handle`` returns ``True`` when the file is dealt with (it is not handed on again unless it
    changes) and ``False`` to have it, and the files after it, handed on at the next poll (the
    server was unreachable). ``sleep`` waits between polls (default :func:`pause`).
    Returns the number of polls made. Ctrl-C (``KeyboardInterrupt``) ends the watch cleanly,
    between two files or during the pause.
    """
    wait = pause if sleep is None else sleep
    state = FolderWatch(folder)
    rounds = 0
    try:
        while max_rounds is None or rounds < max_rounds:
            for path in state.poll():
                if not handle(path):
                    break  # the rest wait for the next poll too
                state.mark(path)
            rounds += 1
            if max_rounds is None or rounds < max_rounds:
                wait(interval_s)
    except KeyboardInterrupt:
        pass
    return rounds

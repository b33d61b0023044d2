"""Private files and folders: what Glucoshare writes holds health data, so only its owner may read it."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, TextIO

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


def private_directory(path: Path) -> Path:
    """Create ``path`` (and missing parents) readable only by its owner; return it.

    Folders that already exist keep their mode: an operator may have chosen it on purpose.
    """
    missing = []
    current = path
    while not current.exists():
        missing.append(current)
        current = current.parent
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):
            folder.mkdir(mode=PRIVATE_DIR_MODE)
    return path


def private_file(path: Path) -> Path:
    """Create ``path`` empty with mode 0600 if it does not exist; return it.

    So that, for example, SQLite opens an owner-only database file rather than creating one.
    """
    private_directory(path.parent)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, PRIVATE_FILE_MODE))
    return path


@contextlib.contextmanager
def _replacing(target: Path) -> Iterator[int]:
    """A descriptor of a new owner-only file beside ``target`` that replaces it when the block ends.

    On any error the new file is removed and ``target`` stays as it was. Missing folders are
    created private.
    """
    private_directory(target.parent)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".incoming-")
    try:
        yield fd
        Path(tmp).chmod(PRIVATE_FILE_MODE)
        Path(tmp).replace(target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def private_text_file(target: Path) -> Iterator[TextIO]:
    """Write ``target`` as UTF-8 text (newlines as written), all or nothing, owner-only (0600)."""
    with _replacing(target) as fd, os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
        yield handle


@contextlib.contextmanager
def private_binary_file(target: Path) -> Iterator[BinaryIO]:
    """Write ``target`` as bytes, all or nothing, owner-only (0600)."""
    with _replacing(target) as fd, os.fdopen(fd, "wb") as handle:
        yield handle

"""Read spreadsheet workbooks (Excel ``.xls`` and ``.xlsx``) as text, sheet after sheet.

Some exports are workbooks rather than CSV files: the old diasend export is an Excel 97 ``.xls``
with one sheet per kind of data (research/formats.md §6). The importers read text, recognise their
format from its first lines and point every record at a line; so a workbook is rendered once, the
same way every time, into tab-separated text (python-calamine reads the workbook):

.. code-block:: text

    #workbook	1
    #sheet	Name and glucose
    <cell>	<cell>	...
    #sheet	CGM
    ...

Cells become text as follows: empty → nothing; a date and time → ``YYYY-MM-DDTHH:MM:SS``; a date →
``YYYY-MM-DD``; a time → ``HH:MM:SS``; a whole number → its digits (``12``, not ``12.0``); another
number → Python's shortest round-tripping form; text → itself, with tabs and line breaks replaced by
spaces. Rows keep their trailing empty cells trimmed. The raw workbook is what is kept; rendering it
again gives the same lines, so a record's line number stays valid.

An ``.xlsx`` is a zip archive: it passes the archive checks (:mod:`glucoshare.ingest.archives`) before
it is opened, so a workbook cannot be a zip bomb either.
"""

from __future__ import annotations

import datetime as dt
import io
import math
import resource
import subprocess
import sys
import zipfile

import python_calamine

from glucoshare.ingest.archives import ArchiveLimits, expand_archive, is_archive
from glucoshare.ingest.errors import MalformedFileError

OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
"""The first bytes of an OLE2 compound file, the container of Excel 97–2003 ``.xls`` workbooks."""

WORKBOOK_MARK = "#workbook\t1"
SHEET_MARK = "#sheet\t"
"""The line that starts each sheet, followed by the sheet's name."""

_XLSX_PARTS = ("[Content_Types].xml", "xl/workbook.xml")


def is_workbook(data: bytes) -> bool:
    """True when ``data`` is an Excel workbook (``.xls`` or ``.xlsx``), judged from its content."""
    if data.startswith(OLE2_MAGIC):
        return True
    if not is_archive(data):
        return False
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            names = set(zf.namelist())
    except (zipfile.BadZipFile, ValueError, OSError, NotImplementedError, EOFError):
        return False
    return all(part in names for part in _XLSX_PARTS)


def _cell(value: object) -> str:  # noqa: PLR0911 - one return per kind of cell
    """One cell as text (module rules)."""
    if value is None or value == "":
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, dt.datetime):
        return value.replace(microsecond=0, tzinfo=None).isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, dt.time):
        return value.replace(microsecond=0).isoformat()
    if isinstance(value, dt.timedelta):
        seconds = round(value.total_seconds())
        return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer() and abs(value) < 1e15:  # noqa: PLR2004
            return str(int(value))
        return repr(value)
    text = str(value)
    return text.replace("\t", " ").replace("\r\n", " ").replace("\n", " ").replace("\r", " ")


READER_MEMORY_BYTES = 2 << 30
"""The address space the reader's process may take, besides 16 bytes for each byte of the workbook."""

READER_SECONDS = 120
"""How long the reader's process may take for one workbook."""

_PASSWORD_EXIT = 3
_UNREADABLE_EXIT = 4


def workbook_text(name: str, data: bytes, limits: ArchiveLimits) -> str:
    """The workbook as text, one ``#sheet`` block per sheet in workbook order (module layout).

    The reader (python-calamine, native code) runs in a process of its own, with bounded memory and
    time: it allocates every cell of a sheet's used range at once, so one cell at ``XFD1048576`` or
    a damaged ``.xls`` asks for hundreds of gigabytes, and the failed allocation aborts the process
    that asked; some damaged files make it panic. Only that process ends.

    Raises :class:`MalformedFileError` when the workbook cannot be read (damaged, password
    protected), and the archive errors when an ``.xlsx`` breaks the archive rules.
    """
    if is_archive(data):
        expand_archive(name, data, limits)  # the size, ratio and path checks; the members are not used
    memory = READER_MEMORY_BYTES + 16 * len(data)
    try:
        done = subprocess.run(  # noqa: S603 - this interpreter, this module, no shell
            [sys.executable, "-m", __name__, str(memory)],
            input=data,
            capture_output=True,
            timeout=READER_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        msg = f"{name}: the workbook cannot be read (it takes longer than {READER_SECONDS} s); it is damaged"
        raise MalformedFileError(msg) from None
    if done.returncode == 0:
        return done.stdout.decode("utf-8")
    if done.returncode == _PASSWORD_EXIT:
        msg = f"{name}: the workbook is password protected; export it again without a password"
        raise MalformedFileError(msg)
    said = done.stderr.decode("ascii", "replace").strip().rsplit("\n", 1)[-1]  # last line: the error's name
    why = said if done.returncode == _UNREADABLE_EXIT and said.isidentifier() else "the reader failed on it"
    msg = f"{name}: the workbook cannot be read ({why}); it is damaged or not Excel"
    raise MalformedFileError(msg)


def _render(data: bytes) -> str:
    """The text of a workbook (module layout); python-calamine's errors propagate."""
    book = python_calamine.CalamineWorkbook.from_filelike(io.BytesIO(data))
    lines = [WORKBOOK_MARK]
    for sheet_name in book.sheet_names:
        lines.append(SHEET_MARK + _cell(sheet_name))
        for row in book.get_sheet_by_name(sheet_name).to_python(skip_empty_area=False):
            cells = [_cell(v) for v in row]
            while cells and not cells[-1]:
                cells.pop()
            lines.append("\t".join(cells))
    return "\n".join(lines) + "\n"


def _main(memory: int) -> int:
    """The reader's process: the workbook on stdin, its text on stdout; the exit code says why not."""
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    try:
        text = _render(sys.stdin.buffer.read())
    except python_calamine.PasswordError:
        return _PASSWORD_EXIT
    except (python_calamine.CalamineError, ValueError, OSError, MemoryError) as exc:
        sys.stderr.write(type(exc).__name__)
        return _UNREADABLE_EXIT
    except BaseException as exc:
        if type(exc).__module__ != "pyo3_runtime":  # a panic of the reader: pyo3's PanicException
            raise
        sys.stderr.write("PanicException")
        return _UNREADABLE_EXIT
    sys.stdout.buffer.write(text.encode("utf-8"))
    return 0


if __name__ == "__main__":
    sys.exit(_main(int(sys.argv[1])))

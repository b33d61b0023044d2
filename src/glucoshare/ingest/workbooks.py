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


def workbook_text(name: str, data: bytes, limits: ArchiveLimits) -> str:
    """The workbook as text, one ``#sheet`` block per sheet in workbook order (module layout).

    Raises :class:`MalformedFileError` when the workbook cannot be read (damaged, password
    protected), and the archive errors when an ``.xlsx`` breaks the archive rules.
    """
    if is_archive(data):
        expand_archive(name, data, limits)  # the size, ratio and path checks; the members are not used
    try:
        book = python_calamine.CalamineWorkbook.from_filelike(io.BytesIO(data))
        lines = [WORKBOOK_MARK]
        for sheet_name in book.sheet_names:
            lines.append(SHEET_MARK + _cell(sheet_name))
            for row in book.get_sheet_by_name(sheet_name).to_python(skip_empty_area=False):
                cells = [_cell(v) for v in row]
                while cells and not cells[-1]:
                    cells.pop()
                lines.append("\t".join(cells))
    except python_calamine.PasswordError as exc:
        msg = f"{name}: the workbook is password protected; export it again without a password"
        raise MalformedFileError(msg) from exc
    except (python_calamine.CalamineError, ValueError, OSError) as exc:
        msg = f"{name}: the workbook cannot be read ({type(exc).__name__}); it is damaged or not Excel"
        raise MalformedFileError(msg) from exc
    return "\n".join(lines) + "\n"

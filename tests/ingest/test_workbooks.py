"""Workbooks (.xls, .xlsx) rendered as text for the importers, and hostile workbooks refused."""

from __future__ import annotations

import datetime as dt
import io
import zipfile

import pytest
import xlwt
from sqlalchemy import Engine

from glucoshare.accounts.models import Patient
from glucoshare.accounts.service import add_patient, validate_patient
from glucoshare.config import Settings
from glucoshare.db.session import session_scope
from glucoshare.ingest.archives import ArchiveLimits
from glucoshare.ingest.errors import ArchiveRefusedError, MalformedFileError, UnknownFormatError
from glucoshare.ingest.schemas import IncomingFile
from glucoshare.ingest.service import import_files
from glucoshare.ingest.workbooks import is_workbook, workbook_text
from tests.conftest import table_snapshot

LIMITS = ArchiveLimits(max_members=50, max_member_bytes=10_000_000, max_total_bytes=20_000_000)


def _xls() -> bytes:
    book = xlwt.Workbook()
    first = book.add_sheet("Name and glucose")
    first.write(0, 0, "Name")
    first.write(0, 1, "Tab\tand\nbreak")
    stamp = xlwt.easyxf(num_format_str="DD/MM/YYYY HH:MM")
    day = xlwt.easyxf(num_format_str="DD/MM/YYYY")
    first.write(2, 0, dt.datetime(2024, 1, 5, 8, 30), stamp)
    first.write(2, 1, 5.6)
    first.write(2, 2, 12.0)
    first.write(2, 3, dt.date(2024, 1, 6), day)
    first.write(2, 4, True)
    second = book.add_sheet("CGM")
    second.write(1, 0, "Time")
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def _xlsx(sheet_xml: str) -> bytes:
    parts = {
        "[Content_Types].xml": (
            '<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/'
            'content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.'
            'relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override '
            'PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.'
            'spreadsheetml.sheet.main+xml"/><Override PartName="/xl/worksheets/sheet1.xml" '
            'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/></Types>'
        ),
        "_rels/.rels": (
            '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/'
            'package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/'
            'officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>'
        ),
        "xl/workbook.xml": (
            '<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="http://schemas.openxmlformats.org/'
            'spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/'
            'relationships"><sheets><sheet name="Readings" sheetId="1" r:id="rId1"/></sheets></workbook>'
        ),
        "xl/_rels/workbook.xml.rels": (
            '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/'
            'package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/'
            'officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/></Relationships>'
        ),
        "xl/worksheets/sheet1.xml": sheet_xml,
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, text in parts.items():
            zf.writestr(name, text)
    return buffer.getvalue()


SHEET = (
    '<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/'
    '2006/main"><sheetData><row r="1"><c r="A1" t="inlineStr"><is><t>Time</t></is></c><c r="B1" '
    't="inlineStr"><is><t>mg/dL</t></is></c></row><row r="2"><c r="A2"><v>42</v></c><c r="B2"><v>120.5</v>'
    "</c></row></sheetData></worksheet>"
)


def test_an_xls_workbook_renders_sheet_by_sheet_with_the_rows_in_place() -> None:
    data = _xls()
    assert is_workbook(data)
    lines = workbook_text("export.xls", data, LIMITS).splitlines()
    assert lines == [
        "#workbook\t1",
        "#sheet\tName and glucose",
        "Name\tTab and break",
        "",
        "2024-01-05T08:30:00\t5.6\t12\t2024-01-06\tTRUE",
        "#sheet\tCGM",
        "",
        "Time",
    ]
    assert workbook_text("export.xls", data, LIMITS) == workbook_text("again.xls", data, LIMITS)


def test_an_xlsx_workbook_renders_and_is_not_taken_for_an_archive() -> None:
    data = _xlsx(SHEET)
    assert is_workbook(data)
    assert workbook_text("export.xlsx", data, LIMITS).splitlines() == [
        "#workbook\t1",
        "#sheet\tReadings",
        "Time\tmg/dL",
        "42\t120.5",
    ]
    assert not is_workbook(b"PK\x03\x04 not really a zip")
    assert not is_workbook(b"Index,Timestamp\n")


def test_an_xlsx_bomb_is_refused_before_it_is_opened() -> None:
    padding = " " * 30_000_000
    bomb = _xlsx(SHEET.replace("<sheetData>", f"<sheetData>{padding}"))
    with pytest.raises(ArchiveRefusedError, match="zip bomb"):
        workbook_text("export.xlsx", bomb, ArchiveLimits(50, 200_000_000, 400_000_000))


def test_damaged_workbooks_are_refused_clearly() -> None:
    data = _xls()
    with pytest.raises(MalformedFileError, match=r"export\.xls: the workbook cannot be read"):
        workbook_text("export.xls", data[:1500], LIMITS)


def test_a_workbook_that_makes_the_reader_panic_is_refused_clearly() -> None:
    # Found by the fuzzer (tests/fuzz): cut at a sector boundary, an .xls makes the workbook reader
    # (Rust) panic; pyo3's PanicException is a BaseException, not a CalamineError, and it escaped.
    book = xlwt.Workbook()
    sheet = book.add_sheet("CGM")
    for row in range(100):
        sheet.write(row, 0, f"row {row}")
        sheet.write(row, 1, row * 1.5)
    buffer = io.BytesIO()
    book.save(buffer)
    with pytest.raises(MalformedFileError, match=r"^export\.xls: the workbook cannot be read"):
        workbook_text("export.xls", buffer.getvalue()[:8192], LIMITS)


def test_a_workbook_that_makes_the_reader_exhaust_memory_is_refused_and_the_process_lives() -> None:
    # Found by the fuzzer (tests/fuzz): the reader (Rust) allocates every cell of a sheet's used range
    # at once. One cell at XFD1048576 (or a damaged .xls) asks for hundreds of gigabytes: the
    # allocation fails and aborts the whole process (a web worker), or the kernel kills it.
    sheet = SHEET.replace("</sheetData>", '<row r="1048576"><c r="XFD1048576"><v>1</v></c></row></sheetData>')
    with pytest.raises(MalformedFileError, match=r"^export\.xlsx: the workbook cannot be read"):
        workbook_text("export.xlsx", _xlsx(sheet), LIMITS)
    assert workbook_text("export.xlsx", _xlsx(SHEET), LIMITS).startswith("#workbook\t1\n#sheet\t")


def test_a_workbook_no_importer_reads_changes_nothing(engine: Engine, settings: Settings) -> None:
    with session_scope(engine) as session:
        patient_id = add_patient(session, validate_patient(email="w@example.org", name="W")).id
    before = table_snapshot(engine)
    with (
        pytest.raises(UnknownFormatError, match=r"budget\.xlsx: unrecognised format"),
        session_scope(engine) as session,
    ):
        patient = session.get(Patient, patient_id)
        assert patient is not None
        import_files(
            session,
            settings=settings,
            patient=patient,
            files=[IncomingFile("budget.xlsx", _xlsx(SHEET))],
            timezone=None,
            actor="test",
        )
    assert table_snapshot(engine) == before

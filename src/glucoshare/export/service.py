"""Write everything a patient has (or one period of it) as canonical CSV or JSON."""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, BinaryIO, Literal, TextIO

from sqlalchemy.orm import Session

from glucoshare import __version__
from glucoshare.accounts.models import Patient
from glucoshare.accounts.schemas import PatientOut
from glucoshare.devices.schemas import DeviceOut
from glucoshare.devices.service import list_devices
from glucoshare.errors import InputError
from glucoshare.export.rows import EXPORT_FIELDS, record_row
from glucoshare.export.safety import safe_cell
from glucoshare.files import private_binary_file, private_text_file
from glucoshare.records.service import iter_records, list_uploads, note_place, upload_public_ids
from glucoshare.records.vocabulary import RecordType
from glucoshare.vault.service import open_mapping

ExportFormat = Literal["csv", "json"]


class ExportTargetError(InputError):
    """The export cannot be written where asked."""

    code = "export_target"


def _csv_cell(value: object) -> str | int | float:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, dict | list):
        return safe_cell(json.dumps(value, ensure_ascii=False, sort_keys=True))
    return safe_cell(str(value))


def _write_csv(handle: IO[str], rows: Iterator[dict[str, Any]]) -> int:
    writer = csv.writer(handle, lineterminator="\r\n")
    writer.writerow(EXPORT_FIELDS)
    count = 0
    for row in rows:
        writer.writerow([_csv_cell(row[field]) for field in EXPORT_FIELDS])
        count += 1
    return count


def _write_json(handle: IO[str], header: dict[str, Any], rows: Iterator[dict[str, Any]]) -> int:
    body = json.dumps(header, ensure_ascii=False, indent=1)
    handle.write(body[:-2] + ',\n "records": [')
    count = 0
    for row in rows:
        handle.write(
            ("\n  " if count == 0 else ",\n  ") + json.dumps(row, ensure_ascii=False, sort_keys=True)
        )
        count += 1
    handle.write("\n ]\n}\n")
    return count


@contextlib.contextmanager
def _writable(out: Path) -> Iterator[Path]:
    """``out`` resolved; a folder, or a place the process may not write, is an :class:`ExportTargetError`."""
    target = out.resolve()
    if target.is_dir():
        msg = f"{out}: is a directory; give a file name"
        raise ExportTargetError(msg)
    try:
        yield target
    except OSError as exc:
        msg = f"{out}: cannot write there ({exc.strerror or type(exc).__name__})"
        raise ExportTargetError(msg) from exc


@contextlib.contextmanager
def export_target(out: Path) -> Iterator[TextIO]:
    """A text handle that writes ``out`` all or nothing, owner-only (0600), with clear errors."""
    with _writable(out) as target, private_text_file(target) as handle:
        yield handle


@contextlib.contextmanager
def export_binary_target(out: Path) -> Iterator[BinaryIO]:
    """:func:`export_target` for bytes (an archive, a PDF)."""
    with _writable(out) as target, private_binary_file(target) as handle:
        yield handle


def write_export(out: Path, data: bytes) -> None:
    """Write ``data`` to ``out`` all or nothing, owner-only (0600), with clear errors."""
    with export_binary_target(out) as handle:
        handle.write(data)


def export_patient(
    session: Session,
    *,
    patient: Patient,
    fmt: ExportFormat,
    out: Path,
    start_ms: int | None = None,
    end_ms: int | None = None,
) -> int:
    """Write the patient's records to ``out`` atomically; return how many were written."""
    uploads = upload_public_ids(session, patient.id)
    notes_at = note_place(patient.id)
    rows = (
        record_row(
            r,
            d,
            uploads.get(r.upload_seq),
            open_mapping(session, patient.id, r.payload, notes_at) if r.type == RecordType.NOTE else None,
        )
        for r, d in iter_records(session, patient.id, start_ms=start_ms, end_ms=end_ms)
    )
    with export_target(out) as handle:
        if fmt == "csv":
            count = _write_csv(handle, rows)
        else:
            header = {
                "format": "glucoshare-export",
                "version": 1,
                "generator": f"glucoshare {__version__}",
                "exported_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "patient": PatientOut.model_validate(patient).model_dump(mode="json"),
                "devices": [
                    DeviceOut.model_validate(d).model_dump(mode="json")
                    for d in list_devices(session, patient.id)
                ],
                "uploads": [
                    u.model_dump(mode="json", exclude={"rejected", "warnings"})
                    for u in list_uploads(session, patient.id)
                ],
            }
            count = _write_json(handle, header, rows)
    return count

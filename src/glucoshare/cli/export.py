"""``glucoshare export --patient E --format csv|json [--from D --to D] --out PATH``."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated

import typer

from glucoshare.accounts.service import get_patient
from glucoshare.audit.service import record_event
from glucoshare.audit.tags import AuditTag
from glucoshare.cli.runtime import (
    FromOption,
    JsonOption,
    PatientOption,
    ToOption,
    actor,
    handle_errors,
    print_json,
    stdout,
    unit_of_work,
)
from glucoshare.export.service import export_patient
from glucoshare.records.periods import local_dates_to_range, parse_local_date


class ExportFormatChoice(enum.StrEnum):
    """Formats of ``glucoshare export``."""

    CSV = "csv"
    JSON = "json"


@handle_errors
def export_command(
    patient: PatientOption,
    fmt: Annotated[ExportFormatChoice, typer.Option("--format", help="csv or json.")],
    out: Annotated[Path, typer.Option(help="File to write.")],
    from_: FromOption = None,
    to: ToOption = None,
    as_json: JsonOption = False,
) -> None:
    """Export a patient's records with their provenance."""
    start = parse_local_date(from_, "--from") if from_ else None
    end = parse_local_date(to, "--to") if to else None
    with unit_of_work() as session:
        person = get_patient(session, patient)
        start_ms, end_ms = local_dates_to_range(start, end, person.timezone)
        count = export_patient(
            session, patient=person, fmt=fmt.value, out=out, start_ms=start_ms, end_ms=end_ms
        )
        record_event(
            session,
            actor=actor(),
            action=AuditTag.RECORDS_EXPORT,
            patient_id=person.id,
            details={"format": fmt.value, "records": count, "from": from_, "to": to},
        )
    if as_json:
        print_json({"records": count, "format": fmt.value, "out": str(out)})
    else:
        stdout.print(f"wrote {count} records to {out}")

"""``glucoshare export --patient E --format csv|json|fhir [--from D --to D] --out PATH``.

``csv`` and ``json`` write the patient's records with their provenance (all of them, or those of
the local dates given). ``fhir`` writes one FHIR R4 transaction Bundle of the HL7 CGM
implementation guide (:mod:`glucoshare.export.fhir`) over a stats period: ``--from``/``--to`` as
``glucoshare stats`` reads them (default: the 14 local days ending with the day of the latest
reading); ``--summary-only`` leaves its sensor readings out. ``csv --per-type`` writes a zip
archive with one CSV per record type and a README (:mod:`glucoshare.export.per_type`). Every
export is audited.
"""

from __future__ import annotations

import datetime as dt
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
from glucoshare.errors import InputError
from glucoshare.export.fhir import export_fhir
from glucoshare.export.per_type import export_per_type
from glucoshare.export.service import ExportFormat, export_patient
from glucoshare.records.periods import local_dates_to_range, parse_local_date
from glucoshare.reports.render import render_pdf
from glucoshare.reports.service import build_report
from glucoshare.summaries.service import resolve_period


class ExportFormatChoice(enum.StrEnum):
    """Formats of ``glucoshare export``."""

    CSV = "csv"
    JSON = "json"
    FHIR = "fhir"


class SummaryOnlyError(InputError):
    """``--summary-only`` was given for a format without a summary."""

    code = "summary_only_not_fhir"


class PerTypeError(InputError):
    """``--per-type`` was given for a format other than CSV."""

    code = "per_type_not_csv"


@handle_errors
def export_command(
    patient: PatientOption,
    fmt: Annotated[
        ExportFormatChoice, typer.Option("--format", help="csv, json or fhir (HL7 CGM submission bundle).")
    ],
    out: Annotated[Path, typer.Option(help="File to write.")],
    from_: FromOption = None,
    to: ToOption = None,
    summary_only: Annotated[
        bool, typer.Option("--summary-only", help="fhir: leave the sensor readings out.")
    ] = False,
    per_type: Annotated[
        bool,
        typer.Option(
            "--per-type",
            help="csv: a zip archive (--out FILE.zip) with one CSV per record type and a README.",
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Export a patient's records with their provenance, or their CGM data as FHIR."""
    start = parse_local_date(from_, "--from") if from_ else None
    end = parse_local_date(to, "--to") if to else None
    if summary_only and fmt is not ExportFormatChoice.FHIR:
        msg = "--summary-only applies to --format fhir only"
        raise SummaryOnlyError(msg)
    if per_type and fmt is not ExportFormatChoice.CSV:
        msg = "--per-type applies to --format csv only"
        raise PerTypeError(msg)
    if per_type:
        _export_per_type(patient, out, start, end, from_, to, as_json=as_json)
        return
    if fmt is ExportFormatChoice.FHIR:
        _export_fhir(patient, out, start, end, summary_only=summary_only, as_json=as_json)
        return
    plain: ExportFormat = "csv" if fmt is ExportFormatChoice.CSV else "json"
    with unit_of_work() as session:
        person = get_patient(session, patient)
        start_ms, end_ms = local_dates_to_range(start, end, person.timezone)
        count = export_patient(session, patient=person, fmt=plain, out=out, start_ms=start_ms, end_ms=end_ms)
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


def _export_per_type(
    patient: str,
    out: Path,
    first: dt.date | None,
    last: dt.date | None,
    from_: str | None,
    to: str | None,
    *,
    as_json: bool,
) -> None:
    with unit_of_work() as session:
        person = get_patient(session, patient)
        start_ms, end_ms = local_dates_to_range(first, last, person.timezone)
        written = export_per_type(session, patient=person, out=out, start_ms=start_ms, end_ms=end_ms)
        record_event(
            session,
            actor=actor(),
            action=AuditTag.RECORDS_EXPORT,
            patient_id=person.id,
            details={
                "format": ExportFormatChoice.CSV.value,
                "per_type": True,
                "records": written.records,
                "from": from_,
                "to": to,
            },
        )
    if as_json:
        print_json(
            {
                "records": written.records,
                "format": ExportFormatChoice.CSV.value,
                "per_type": True,
                "out": str(out),
                "files": dict(written.files),
            }
        )
    else:
        stdout.print(
            f"wrote {written.records} records in {len(written.files)} CSV files to {out}",
            markup=False,
            soft_wrap=True,
        )


def _export_fhir(
    patient: str, out: Path, first: dt.date | None, last: dt.date | None, *, summary_only: bool, as_json: bool
) -> None:
    who = actor()
    with unit_of_work() as session:
        person = get_patient(session, patient)
        period = resolve_period(session, person, first=first, last=last)
        # The guide's DiagnosticReport carries the AGP report as PDF, when there is data to report.
        agp = build_report(session, person, "agp", period, actor=who, output="pdf")
        pdf = render_pdf(agp) if len(agp.sections) > 1 else None  # more than "CGM wear": figures
        bundle = export_fhir(
            session, patient=person, period=period, out=out, actor=who, pdf=pdf, readings=not summary_only
        )
        record_event(
            session,
            actor=who,
            action=AuditTag.RECORDS_EXPORT,
            patient_id=person.id,
            details={
                "format": ExportFormatChoice.FHIR.value,
                "records": bundle.readings,
                "entries": bundle.entries,
                "summary": bundle.summary,
                "from": period.first.isoformat(),
                "to": period.last.isoformat(),
            },
        )
    if as_json:
        print_json(
            {
                "records": bundle.readings,
                "format": ExportFormatChoice.FHIR.value,
                "out": str(out),
                "entries": bundle.entries,
                "devices": bundle.devices,
                "summary": bundle.summary,
                "from": period.first.isoformat(),
                "to": period.last.isoformat(),
            }
        )
        return
    summary = "with the CGM summary" if bundle.summary else "without a CGM summary (too few readings)"
    stdout.print(
        f"wrote a FHIR bundle of {bundle.entries} entries ({bundle.readings} sensor readings, "
        f"{summary}) for {period.first.isoformat()} to {period.last.isoformat()} to {out}",
        markup=False,
        soft_wrap=True,
    )

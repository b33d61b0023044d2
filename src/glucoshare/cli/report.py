"""``glucoshare report KIND --patient E [--days N | --from D --to D] --out FILE.pdf`` (CONTRACT.md).

KIND is agp, daily, overlay, patterns, progress or settings; ``--format html`` writes HTML instead.
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated

import typer

from glucoshare.accounts.service import get_patient
from glucoshare.cli.runtime import (
    DaysOption,
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
from glucoshare.export.service import write_export
from glucoshare.records.periods import parse_local_date
from glucoshare.reports.errors import InvalidReportError
from glucoshare.reports.render import render_html, render_pdf
from glucoshare.reports.service import ReportOptions, build_report
from glucoshare.reports.units import Unit
from glucoshare.summaries.service import resolve_period


class ReportChoice(enum.StrEnum):
    """The reports."""

    AGP = "agp"
    DAILY = "daily"
    OVERLAY = "overlay"
    PATTERNS = "patterns"
    PROGRESS = "progress"
    SETTINGS = "settings"


class OutputChoice(enum.StrEnum):
    """What ``glucoshare report`` writes."""

    PDF = "pdf"
    HTML = "html"


class UnitChoice(enum.StrEnum):
    """Glucose units of a report."""

    MGDL = "mg/dL"
    MMOLL = "mmol/L"


_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def parse_weekdays(text: str | None) -> frozenset[int] | None:
    """``mon,tue,...`` (names of at least three letters, or 0–6 with Monday = 0) as weekday numbers."""
    if text is None:
        return None
    chosen = set()
    for part in (p.strip().lower() for p in text.split(",")):
        if part.isdigit() and int(part) < len(_WEEKDAYS):
            chosen.add(int(part))
            continue
        found = [at for at, name in enumerate(_WEEKDAYS) if len(part) >= 3 and name.startswith(part)]  # noqa: PLR2004
        if not found:
            msg = f"--weekdays: {part!r} is not a weekday (use mon,tue,wed,thu,fri,sat,sun)"
            raise InvalidReportError(msg)
        chosen.add(found[0])
    return frozenset(chosen)


@handle_errors
def report_command(
    kind: Annotated[
        ReportChoice, typer.Argument(help="agp, daily, overlay, patterns, progress or settings.")
    ],
    patient: PatientOption,
    out: Annotated[Path, typer.Option(help="File to write (PDF, or HTML with --format html).")],
    days: DaysOption = None,
    from_: FromOption = None,
    to: ToOption = None,
    output: Annotated[
        OutputChoice, typer.Option("--format", help="pdf (default) or html.")
    ] = OutputChoice.PDF,
    units: Annotated[
        UnitChoice | None, typer.Option("--units", help="mg/dL or mmol/L (default: the patient's).")
    ] = None,
    weekdays: Annotated[
        str | None, typer.Option("--weekdays", help="overlay only: e.g. sat,sun (default: every day).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Write a patient's report as PDF or HTML: agp, daily, overlay (trends), patterns, progress, settings."""
    first = parse_local_date(from_, "--from") if from_ else None
    last = parse_local_date(to, "--to") if to else None
    unit: Unit | None = None if units is None else ("mmol/L" if units is UnitChoice.MMOLL else "mg/dL")
    options = ReportOptions(unit=unit, weekdays=parse_weekdays(weekdays))
    with unit_of_work() as session:
        person = get_patient(session, patient)
        period = resolve_period(session, person, days=days, first=first, last=last)
        report = build_report(
            session,
            person,
            kind.value,
            period,
            actor=actor(),
            options=options,
            output=output.value,
        )
        data = render_pdf(report) if output is OutputChoice.PDF else render_html(report).encode()
        write_export(out, data)
    document = {
        "report": kind.value,
        "patient": person.id,
        "from": period.first.isoformat(),
        "to": period.last.isoformat(),
        "format": output.value,
        "out": str(out),
        "bytes": len(data),
    }
    if as_json:
        print_json(document)
    else:
        stdout.print(
            f"wrote the {kind.value} report ({period.first} to {period.last}) to {out}", markup=False
        )

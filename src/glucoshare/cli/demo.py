"""``glucoshare demo [--patients N]``: simulated patients, their vendor exports, imported."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import typer
from rich.table import Table

from glucoshare.accounts.errors import PatientNotFoundError
from glucoshare.accounts.service import add_patient, get_patient, validate_patient
from glucoshare.audit.service import record_event
from glucoshare.audit.tags import AuditTag
from glucoshare.cli.runtime import actor, handle_errors, print_json, settings, stderr, stdout, unit_of_work
from glucoshare.ingest.schemas import IncomingFile
from glucoshare.ingest.service import import_file
from glucoshare.records.schemas import iso_utc
from glucoshare.records.summary import patient_overview
from glucoshare.simulator.demo import demo_patients


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


@handle_errors
def demo_command(
    patients: Annotated[int, typer.Option(min=1, max=200, help="How many demo patients.")] = 3,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """Create simulated demo patients, write their devices' vendor exports, import them, and show each
    patient's summary. Running it again changes nothing: every reading is recognised as a duplicate.
    """
    today = dt.datetime.now(dt.UTC).date()
    people = demo_patients(patients, end=today)
    export_dir = settings().data_dir / "demo"
    summaries = []
    with unit_of_work() as session:
        for person in people:
            profile = person.profile
            try:
                patient = get_patient(session, profile.email)
            except PatientNotFoundError:
                patient = add_patient(
                    session,
                    validate_patient(
                        email=profile.email,
                        name=profile.name,
                        birthdate=profile.birthdate,
                        timezone=profile.timezone,
                        display_units=profile.units,
                    ),
                )
                record_event(session, actor=actor(), action=AuditTag.PATIENT_CREATE, patient_id=patient.id)
            folder = export_dir / patient.id
            folder.mkdir(parents=True, exist_ok=True)
            uploads = []
            for export in person.exports:
                (folder / export.file_name).write_bytes(export.data)
                uploads.append(
                    import_file(
                        session,
                        settings=settings(),
                        patient=patient,
                        incoming=IncomingFile(export.file_name, export.data),
                        timezone=None,
                        actor=actor(),
                    )
                )
            overview = patient_overview(session, patient.id)
            summaries.append(
                {
                    "patient": {"id": patient.id, "email": patient.email, "name": patient.name},
                    "uploads": uploads,
                    "counts": overview.counts,
                    "first": iso_utc(overview.first_ms),
                    "last": iso_utc(overview.last_ms),
                    "cgm": {
                        "readings": overview.cgm.readings,
                        "mean_mgdl": overview.cgm.mean_mgdl,
                        "cv_pct": overview.cgm.cv_pct,
                        "gmi_pct": overview.cgm.gmi_pct,
                        "time_very_low_pct": overview.cgm.very_low_pct,
                        "time_low_pct": overview.cgm.low_pct,
                        "time_in_range_pct": overview.cgm.in_range_pct,
                        "time_high_pct": overview.cgm.high_pct,
                        "time_very_high_pct": overview.cgm.very_high_pct,
                    },
                }
            )
    if as_json:
        print_json({"patients": summaries})
        return
    stderr.print(f"demo exports written to {export_dir}", markup=False)
    table = Table("patient", "device", "records", "new", "CGM readings", "mean mg/dL", "GMI %", "CV %",
                  "<54 %", "54-69 %", "70-180 %", "181-250 %", ">250 %")
    for item in summaries:
        cgm = item["cgm"]
        first_upload = item["uploads"][0]
        device = f"{first_upload.device.manufacturer} {first_upload.device.model}" if first_upload.device else "-"
        table.add_row(
            item["patient"]["name"], device, str(sum(item["counts"].values())),
            str(sum(u.new for u in item["uploads"])), str(cgm["readings"]), _fmt(cgm["mean_mgdl"], 0),
            _fmt(cgm["gmi_pct"]), _fmt(cgm["cv_pct"]), _fmt(cgm["time_very_low_pct"]),
            _fmt(cgm["time_low_pct"]), _fmt(cgm["time_in_range_pct"]), _fmt(cgm["time_high_pct"]),
            _fmt(cgm["time_very_high_pct"]),
        )
    stdout.print(table)

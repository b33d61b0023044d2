"""``glucoshare uploads list|delete``."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from glucoshare.accounts.service import get_patient
from glucoshare.audit.service import record_event
from glucoshare.audit.tags import AuditTag
from glucoshare.cli.runtime import (
    JsonOption,
    PatientOption,
    actor,
    handle_errors,
    print_json,
    refresh_summaries,
    settings,
    stdout,
    unit_of_work,
)
from glucoshare.ingest.service import remove_upload
from glucoshare.records.service import list_uploads

app = typer.Typer(help="List and delete uploads.", no_args_is_help=True)


@app.command("list")
@handle_errors
def list_(
    patient: PatientOption,
    as_json: JsonOption = False,
) -> None:
    """List a patient's uploads, oldest first."""
    with unit_of_work() as session:
        person = get_patient(session, patient)
        uploads = list_uploads(session, person.id)
        record_event(
            session,
            actor=actor(),
            action=AuditTag.UPLOAD_LIST,
            patient_id=person.id,
            details={"count": len(uploads)},
        )
    if as_json:
        print_json({"uploads": uploads})
        return
    table = Table("id", "file", "format", "device", "new", "duplicates", "first", "last", "imported")
    for u in uploads:
        device = f"{u.device.manufacturer} {u.device.model}" if u.device else "-"
        table.add_row(
            u.id,
            u.file,
            u.format,
            device,
            str(u.new),
            str(u.duplicates),
            u.first or "-",
            u.last or "-",
            u.created_at.isoformat(timespec="seconds"),
        )
    stdout.print(table)


@app.command("delete")
@handle_errors
def delete(
    upload_id: Annotated[str, typer.Argument(help="Id of the upload to delete.")],
    as_json: JsonOption = False,
) -> None:
    """Delete one upload and exactly the records it stored."""
    with unit_of_work() as session:
        removal = remove_upload(session, settings=settings(), upload_id=upload_id, actor=actor())
    refresh_summaries([removal.patient_id])
    if as_json:
        print_json(
            {
                "deleted": removal.upload_id,
                "records_deleted": removal.records_deleted,
                "records_restored": removal.records_restored,
            }
        )
    else:
        restored = (
            f"; {removal.records_restored} records that other uploads also hold were kept"
            if removal.records_restored
            else ""
        )
        stdout.print(
            f"deleted upload {removal.upload_id} and its {removal.records_deleted} records{restored}"
        )

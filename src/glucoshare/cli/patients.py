"""``glucoshare patients add|list``."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from glucoshare.accounts.schemas import PatientOut
from glucoshare.accounts.service import add_patient, get_patient, list_patients, validate_patient
from glucoshare.accounts.users import add_user, validate_user
from glucoshare.audit.service import record_event
from glucoshare.audit.tags import AuditTag
from glucoshare.cli.runtime import (
    JsonOption,
    PatientOption,
    actor,
    handle_errors,
    print_json,
    stdout,
    unit_of_work,
)
from glucoshare.cli.users import read_password
from glucoshare.errors import InputError
from glucoshare.ingest.service import erase_patient

app = typer.Typer(help="Add, list and erase patients.", no_args_is_help=True)


@app.command("add")
@handle_errors
def add(
    email: Annotated[str, typer.Option(help="The patient's e-mail address (their identifier).")],
    name: Annotated[str, typer.Option(help="Full name.")],
    birthdate: Annotated[str | None, typer.Option(help="Birth date, YYYY-MM-DD.")] = None,
    timezone: Annotated[str, typer.Option(help="IANA time zone of the patient's devices.")] = "UTC",
    units: Annotated[str, typer.Option(help="Display units: mg/dL or mmol/L.")] = "mg/dL",
    password_stdin: Annotated[
        bool,
        typer.Option(
            "--password-stdin", help="Also create the patient's account, password from standard input."
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Add a patient (and, with --password-stdin, their own account to sign in with)."""
    data = validate_patient(
        email=email, name=name, birthdate=birthdate, timezone=timezone, display_units=units
    )
    password = read_password() if password_stdin else None
    with unit_of_work() as session:
        patient = add_patient(session, data)
        if password is not None:
            account = add_user(
                session, validate_user(email=data.email, name=data.name, role="patient"), password
            )
            patient.user_id = account.id
            record_event(
                session,
                actor=actor(),
                action=AuditTag.USER_CREATE,
                target=account.id,
                details={"role": "patient"},
            )
        record_event(
            session, actor=actor(), action=AuditTag.PATIENT_CREATE, patient_id=patient.id, target=patient.id
        )
        out = PatientOut.model_validate(patient)
    if as_json:
        print_json(out)
    else:
        stdout.print(f"added patient {out.email} ({out.id})")


@app.command("list")
@handle_errors
def list_(
    as_json: JsonOption = False,
) -> None:
    """List every patient."""
    with unit_of_work() as session:
        patients = [PatientOut.model_validate(p) for p in list_patients(session)]
        record_event(session, actor=actor(), action=AuditTag.PATIENT_LIST, details={"count": len(patients)})
    if as_json:
        print_json({"patients": patients})
        return
    table = Table("id", "e-mail", "name", "time zone", "units")
    for p in patients:
        table.add_row(p.id, p.email, p.name, p.timezone, p.display_units)
    stdout.print(table)


@app.command("delete")
@handle_errors
def delete(
    patient: PatientOption,
    yes: Annotated[bool, typer.Option("--yes", help="Confirm: this cannot be undone.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Erase a patient with their account, devices, uploads, records and raw files.

    The audit trail keeps its events (ids only, never data) and records the erasure.
    """
    if not yes:
        msg = "erasing a patient cannot be undone: add --yes to confirm (export their data first)"
        raise InputError(msg)
    with unit_of_work() as session:
        person = get_patient(session, patient)
        erased = erase_patient(session, patient=person, actor=actor())
    if as_json:
        print_json({"erased": erased.patient_id, "uploads": erased.uploads, "raw_files": erased.raw_files})
    else:
        stdout.print(f"erased patient {erased.patient_id}: {erased.uploads} uploads", markup=False)

"""``glucoshare token create --patient E --kind nightscout|upload|read --json`` (CONTRACT.md)."""

from __future__ import annotations

from typing import Annotated

import typer

from glucoshare.accounts.roles import ROLES
from glucoshare.accounts.service import get_patient
from glucoshare.accounts.sessions import TOKEN_KINDS, create_api_token
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

app = typer.Typer(help="API tokens for apps and uploaders.", no_args_is_help=True)


@app.command("create")
@handle_errors
def create(
    patient: PatientOption,
    kind: Annotated[str, typer.Option(help=f"What the token may do: {', '.join(TOKEN_KINDS)}.")],
    role: Annotated[
        list[str] | None,
        typer.Option(
            help=f"A Nightscout role instead of those of the kind (repeatable): {', '.join(ROLES)}.",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Create a token for a patient's apps; it (and a Nightscout API secret) is shown only now."""
    with unit_of_work() as session:
        person = get_patient(session, patient)
        created = create_api_token(session, person, kind=kind, created_by=actor(), roles=role)
        record_event(
            session,
            actor=actor(),
            action=AuditTag.TOKEN_CREATE,
            patient_id=person.id,
            target=created.id,
            details={"kind": kind, "roles": sorted(set(role or []))},
        )
    if as_json:
        print_json(
            {"id": created.id, "kind": created.kind, "token": created.token, "api_secret": created.api_secret}
        )
        return
    stdout.print(f"token ({created.kind}): {created.token}", markup=False)
    if created.api_secret is not None:
        stdout.print(f"Nightscout API secret: {created.api_secret}", markup=False)
    stdout.print("Store them now: they are not shown again.", markup=False)

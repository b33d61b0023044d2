"""``glucoshare clinics add|add-member|list`` (CONTRACT.md): clinic workspaces for operators."""

from __future__ import annotations

from typing import Annotated

import typer
from sqlalchemy import select

from glucoshare.accounts.users import get_user
from glucoshare.cli.runtime import JsonOption, actor, handle_errors, print_json, stdout, unit_of_work
from glucoshare.sharing.errors import ClinicNotFoundError
from glucoshare.sharing.models import Clinic
from glucoshare.sharing.schemas import ClinicCreate
from glucoshare.sharing.service import add_member, clinic_out, create_clinic

app = typer.Typer(help="Clinic workspaces: clinics, their members and share codes.", no_args_is_help=True)


@app.command("add")
@handle_errors
def add(
    name: Annotated[str, typer.Option(help="The clinic's name.")],
    as_json: JsonOption = False,
) -> None:
    """Create a clinic; prints its id and the share code its patients enter."""
    with unit_of_work() as session:
        clinic = create_clinic(session, ClinicCreate(name=name), founder=None, actor=actor())
        out = {"id": clinic.id, "share_code": clinic.share_code}
    if as_json:
        print_json(out)
    else:
        stdout.print(f"clinic {out['id']}: share code {out['share_code']}", markup=False)


@app.command("add-member")
@handle_errors
def add_member_command(
    clinic: Annotated[str, typer.Option("--clinic", help="The clinic's id.")],
    email: Annotated[str, typer.Option(help="The clinician's account e-mail address.")],
    role: Annotated[str, typer.Option(help="admin or member.")] = "member",
    as_json: JsonOption = False,
) -> None:
    """Make an existing clinician account a member (or admin) of a clinic."""
    with unit_of_work() as session:
        found = session.get(Clinic, clinic)
        if found is None:
            msg = "no clinic with this id"
            raise ClinicNotFoundError(msg)
        user = get_user(session, email)
        member = add_member(session, found, user, role, actor=actor())
        out = {"clinic": found.id, "user": user.id, "member": member.id, "role": member.role}
    if as_json:
        print_json(out)
    else:
        stdout.print(f"{email} is now {out['role']} of clinic {found.id}", markup=False)


@app.command("list")
@handle_errors
def list_(as_json: JsonOption = False) -> None:
    """Every clinic with its share code."""
    with unit_of_work() as session:
        clinics = [clinic_out(c) for c in session.scalars(select(Clinic).order_by(Clinic.name))]
    if as_json:
        print_json({"clinics": clinics})
        return
    for clinic in clinics:
        stdout.print(f"{clinic.id}  {clinic.share_code}  {clinic.name}", markup=False)

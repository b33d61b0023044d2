"""``glucoshare users add|totp-enable``: accounts for operators and tests (CONTRACT.md)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from glucoshare.accounts.schemas import ROLES
from glucoshare.accounts.users import add_user, enable_totp, get_user, user_out, validate_user
from glucoshare.audit.service import record_event
from glucoshare.audit.tags import AuditTag
from glucoshare.cli.runtime import JsonOption, actor, handle_errors, print_json, stdout, unit_of_work
from glucoshare.errors import InputError

app = typer.Typer(help="Add accounts and enrol their second factor.", no_args_is_help=True)


def read_password() -> str:
    """The password given on standard input (one line; never as an argument, which others can see)."""
    line = sys.stdin.readline()
    password = line.rstrip("\r\n")
    if not password:
        msg = "--password-stdin: no password on standard input"
        raise InputError(msg)
    return password


@app.command("add")
@handle_errors
def add(
    email: Annotated[str, typer.Option(help="The person's e-mail address (one account per address).")],
    name: Annotated[str, typer.Option(help="Full name.")],
    role: Annotated[str, typer.Option(help="patient, clinician or carepartner.")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Add an account."""
    if role not in ROLES:
        msg = f"--role must be one of {', '.join(ROLES)}"
        raise InputError(msg)
    data = validate_user(email=email, name=name, role=role)
    password = read_password() if password_stdin else None
    with unit_of_work() as session:
        user = add_user(session, data, password)
        record_event(
            session, actor=actor(), action=AuditTag.USER_CREATE, target=user.id, details={"role": role}
        )
        out = user_out(user)
    if as_json:
        print_json(out)
    else:
        stdout.print(f"added {out.role} {out.email} ({out.id})")


@app.command("totp-enable")
@handle_errors
def totp_enable(
    email: Annotated[str, typer.Option(help="The account's e-mail address or id.")],
    as_json: JsonOption = False,
) -> None:
    """Give an account a new second factor (TOTP) and recovery codes; prints them once."""
    with unit_of_work() as session:
        user = get_user(session, email)
        enrolment = enable_totp(session, user)
        record_event(session, actor=actor(), action=AuditTag.USER_SECOND_FACTOR, target=user.id)
    if as_json:
        print_json(enrolment)
    else:
        stdout.print(f"secret: {enrolment.secret}\nURI: {enrolment.uri}", markup=False)
        stdout.print(
            "recovery codes (each works once):\n  " + "\n  ".join(enrolment.recovery_codes), markup=False
        )

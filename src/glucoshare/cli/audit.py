"""``glucoshare audit verify`` and ``glucoshare audit access``."""

from __future__ import annotations

import typer

from glucoshare.accounts.service import get_patient
from glucoshare.audit.errors import AuditChainBrokenError
from glucoshare.audit.service import access_log, record_event, verify_chain
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

app = typer.Typer(help="Check the audit trail and read a patient's access log.", no_args_is_help=True)


@app.command("verify")
@handle_errors
def verify(
    as_json: JsonOption = False,
) -> None:
    """Exit 0 when the audit chain is intact, 2 when it was tampered with."""
    with unit_of_work() as session:
        report = verify_chain(session)
    if as_json:
        print_json(report)
    if not report.intact:
        msg = f"audit chain broken at event {report.first_bad_event}: {report.reason}"
        raise AuditChainBrokenError(msg)
    if not as_json:
        stdout.print(f"audit chain intact ({report.events} events)")


@app.command("access")
@handle_errors
def access(
    patient: PatientOption,
    as_json: JsonOption = False,
) -> None:
    """Who read or changed a patient's data, and when (newest first)."""
    with unit_of_work() as session:
        person = get_patient(session, patient)
        entries = access_log(session, person.id)
        record_event(session, actor=actor(), action=AuditTag.ACCESS_LOG_READ, patient_id=person.id)
    if as_json:
        print_json({"patient": person.email, "entries": entries})
        return
    for entry in entries:
        stdout.print(
            f"{entry.at.isoformat(timespec='seconds')}  {entry.actor:<24} {entry.action}", markup=False
        )

"""``glucoshare audit verify``."""

from __future__ import annotations

import typer

from glucoshare.audit.errors import AuditChainBrokenError
from glucoshare.audit.service import verify_chain
from glucoshare.cli.runtime import JsonOption, handle_errors, print_json, stdout, unit_of_work

app = typer.Typer(help="Check the audit trail.", no_args_is_help=True)


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

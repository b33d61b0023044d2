"""The ``glucoshare`` command line: thin Typer commands over the services (CONTRACT.md)."""

from __future__ import annotations

import typer

from glucoshare.cli import (
    audit,
    backup,
    clinics,
    db,
    demo,
    diary,
    export,
    jobs,
    keys,
    patients,
    report,
    stats,
    token,
    uploads,
    users,
)
from glucoshare.cli.imports import import_command
from glucoshare.cli.serve import serve_command
from glucoshare.cli.upload import upload_command

app = typer.Typer(
    name="glucoshare",
    help="Glucoshare: diabetes device data from any device, in one place.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(db.app, name="db")
app.add_typer(patients.app, name="patients")
app.add_typer(uploads.app, name="uploads")
app.add_typer(users.app, name="users")
app.add_typer(token.app, name="token")
app.add_typer(audit.app, name="audit")
app.add_typer(keys.app, name="keys")
app.add_typer(clinics.app, name="clinics")
app.add_typer(diary.app, name="diary")
app.add_typer(jobs.app, name="jobs")
app.command("import")(import_command)
app.command("upload")(upload_command)
app.command("serve")(serve_command)
app.command("worker")(jobs.worker_command)
app.command("export")(export.export_command)
app.command("report")(report.report_command)
app.command("demo")(demo.demo_command)
app.command("backup")(backup.backup_command)
app.command("restore")(backup.restore_command)
app.command("stats")(stats.stats_command)
app.command("compare")(stats.compare_command)
app.command("triage")(stats.triage_command)


def main() -> None:
    """Entry point of the ``glucoshare`` script."""
    app()

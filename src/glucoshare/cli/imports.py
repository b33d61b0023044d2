"""``glucoshare import PATH... --patient E``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from glucoshare.accounts.service import get_patient
from glucoshare.cli.runtime import (
    JsonOption,
    PatientOption,
    actor,
    handle_errors,
    print_json,
    refresh_summaries,
    settings,
    stderr,
    stdout,
    unit_of_work,
)
from glucoshare.errors import InputError
from glucoshare.ingest.errors import FileTooLargeError
from glucoshare.ingest.schemas import IncomingFile
from glucoshare.ingest.service import import_file
from glucoshare.records.schemas import UploadOut


def read_file(path: Path, limit: int) -> IncomingFile:
    """Read one file from disk, refusing unreadable paths and files over the size limit."""
    try:
        size = path.stat().st_size
        if not path.is_file():
            msg = f"{path}: not a file"
            raise InputError(msg)
        if size > limit:
            msg = (
                f"{path.name}: the file is {size / 1e6:.1f} MB, more than the limit of "
                f"{limit / 1e6:.0f} MB (GLUCOSHARE_MAX_UPLOAD_BYTES)"
            )
            raise FileTooLargeError(msg)
        return IncomingFile(name=path.name, data=path.read_bytes())
    except OSError as exc:
        msg = f"{path}: cannot read the file ({exc.strerror or type(exc).__name__})"
        raise InputError(msg) from exc


def _print_table(uploads: list[UploadOut]) -> None:
    table = Table(
        "file", "format", "device", "records", "new", "duplicates", "rejected rows", "first", "last"
    )
    for u in uploads:
        device = f"{u.device.manufacturer} {u.device.model}" if u.device else "-"
        table.add_row(
            u.file,
            u.format,
            device,
            str(sum(u.counts.values())),
            str(u.new),
            str(u.duplicates),
            str(u.rejected_count),
            u.first or "-",
            u.last or "-",
        )
    stdout.print(table)
    for u in uploads:
        for row in u.rejected[:20]:
            stderr.print(f"{u.file}: line {row.line}: {row.reason} (row not imported)", markup=False)
        for warning in u.warnings:
            stderr.print(f"{u.file}: {warning}", markup=False)


@handle_errors
def import_command(
    paths: Annotated[list[Path], typer.Argument(help="Export files to import.")],
    patient: PatientOption,
    timezone: Annotated[
        str | None, typer.Option(help="IANA time zone of the file's local times (default: the patient's).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Import device exports for a patient: all files are stored, or none."""
    limit = settings().max_upload_bytes
    files = [read_file(path, limit) for path in paths]
    uploads: list[UploadOut] = []
    with unit_of_work() as session:
        person = get_patient(session, patient)
        person_id = person.id
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed:,} records"),
            TimeElapsedColumn(),
            console=stderr,
            transient=True,
            disable=not stderr.is_terminal,
        ) as bar:
            for incoming in files:
                task = bar.add_task(incoming.name, total=None)

                def advance(count: int, task: TaskID = task) -> None:
                    bar.advance(task, count)

                uploads.append(
                    import_file(
                        session,
                        settings=settings(),
                        patient=person,
                        incoming=incoming,
                        timezone=timezone,
                        actor=actor(),
                        progress=advance,
                    )
                )
    refresh_summaries([person_id])
    if as_json:
        print_json({"uploads": uploads})
    else:
        _print_table(uploads)

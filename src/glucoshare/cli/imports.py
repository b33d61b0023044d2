"""``glucoshare import PATH... --patient E``."""

from __future__ import annotations

from collections.abc import Callable
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
from glucoshare.config import Settings
from glucoshare.errors import InputError
from glucoshare.ingest.errors import FileTooLargeError
from glucoshare.ingest.schemas import IncomingFile
from glucoshare.ingest.service import import_files
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


def read_folder(folder: Path, settings_now: Settings) -> list[IncomingFile]:
    """Every regular file under ``folder`` (recursively, in name order), within the archive limits.

    Hidden files and symbolic links are left out (a link could point anywhere on the machine); the
    folder may hold at most ``GLUCOSHARE_MAX_ARCHIVE_MEMBERS`` files of at most
    ``GLUCOSHARE_MAX_UNPACKED_BYTES`` together, like an archive.
    """
    found: list[IncomingFile] = []
    total = 0
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts) or path.is_symlink() or not path.is_file():
            continue
        if len(found) >= settings_now.max_archive_members:
            msg = (
                f"{folder}: the folder holds more than {settings_now.max_archive_members} files "
                "(GLUCOSHARE_MAX_ARCHIVE_MEMBERS)"
            )
            raise InputError(msg)
        incoming = read_file(path, settings_now.max_upload_bytes)
        total += len(incoming.data)
        if total > settings_now.max_unpacked_bytes:
            msg = (
                f"{folder}: the files in the folder add up to more than "
                f"{settings_now.max_unpacked_bytes / 1e6:.0f} MB (GLUCOSHARE_MAX_UNPACKED_BYTES)"
            )
            raise FileTooLargeError(msg)
        found.append(IncomingFile(name=f"{folder.name}/{relative.as_posix()}", data=incoming.data))
    if not found:
        msg = f"{folder}: the folder holds no files"
        raise InputError(msg)
    return found


@handle_errors
def import_command(
    paths: Annotated[
        list[Path], typer.Argument(help="Export files, zip archives or folders of export files to import.")
    ],
    patient: PatientOption,
    timezone: Annotated[
        str | None, typer.Option(help="IANA time zone of the file's local times (default: the patient's).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Import device exports for a patient: all files are stored, or none.

    A zip archive (a Glooko or Tandem Source export) or a folder is imported file by file; files in
    it that are not device exports are listed and left out.
    """
    now = settings()
    files: list[IncomingFile] = []
    containers: list[str | None] = []
    for path in paths:
        if path.is_dir():
            found = read_folder(path, now)
            files.extend(found)
            containers.extend([path.name] * len(found))
        else:
            files.append(read_file(path, now.max_upload_bytes))
            containers.append(None)
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

            def progress_of(name: str) -> Callable[[int], None]:
                task = bar.add_task(name, total=None)

                def advance(count: int, task: TaskID = task) -> None:
                    bar.advance(task, count)

                return advance

            uploads = import_files(
                session,
                settings=now,
                patient=person,
                files=files,
                containers=containers,
                timezone=timezone,
                actor=actor(),
                progress=progress_of,
            )
    refresh_summaries([person_id])
    if as_json:
        print_json({"uploads": uploads})
    else:
        _print_table(uploads)

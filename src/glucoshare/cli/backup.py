"""``glucoshare backup --out FILE`` and ``glucoshare restore FILE``: the whole installation in one file.

A backup is read in one consistent snapshot while the server keeps writing, encrypted as a whole
under a key derived from the master key (every member but a clear marker and header), and written
atomically (owner-only, 0600). A restore checks the whole file first, then restores into an empty
database in one transaction and verifies the result; on any refusal the database and the data
folder stay exactly as they were. The master key file is never in a backup, and a backup opens only
with it: keep it apart, and keep both.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn
from sqlalchemy.exc import OperationalError

from glucoshare.audit.service import record_event
from glucoshare.audit.tags import AuditTag
from glucoshare.backup.errors import BackupDestinationError
from glucoshare.backup.schemas import BackupOut, ProgressCallback, RestoreOut
from glucoshare.backup.service import (
    check_backup,
    check_destination,
    check_target,
    require_key_ring,
    restore_backup,
    write_backup,
)
from glucoshare.backup.snapshot import snapshot_session
from glucoshare.cli.runtime import (
    JsonOption,
    actor,
    engine,
    handle_errors,
    print_json,
    settings,
    stderr,
    stdout,
    unit_of_work,
)
from glucoshare.db.migrate import upgrade
from glucoshare.db.session import create_db_engine, session_scope
from glucoshare.errors import InputError
from glucoshare.files import private_binary_file


@contextlib.contextmanager
def _progress() -> Iterator[ProgressCallback]:
    """A progress bar on stderr (only on a terminal), one line per phase."""
    bar = Progress(
        TextColumn("{task.description:<10}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=stderr,
        transient=True,
        disable=not stderr.is_terminal,
    )
    tasks: dict[str, TaskID] = {}

    def advance(phase: str, done: int, total: int) -> None:
        if phase not in tasks:
            tasks[phase] = bar.add_task(phase, total=total)
        bar.update(tasks[phase], completed=done, total=total)

    with bar:
        yield advance


def _megabytes(size: int) -> str:
    return f"{size / 1_000_000:,.1f} MB"


@handle_errors
def backup_command(
    out: Annotated[Path, typer.Option("--out", help="The backup file to write (replaced atomically).")],
    as_json: JsonOption = False,
) -> None:
    """Write an encrypted backup of the whole database, kept raw files included, to one file (0600).

    Consistent while the server keeps writing. Encrypted under the current master key: the
    master key file is not in the backup, and the backup opens only with it. Keep a copy of
    GLUCOSHARE_SECRET_KEY_FILE apart from the backups; a restore needs both.
    """
    config = settings()
    check_destination(out, config)
    started = time.perf_counter()
    db = engine()
    try:
        with private_binary_file(out) as sink, _progress() as progress:
            with snapshot_session(db) as snapshot:
                manifest = write_backup(snapshot, sink, progress=progress)
            sink.flush()
            os.fsync(sink.fileno())
            size = sink.tell()
            with unit_of_work() as session:
                record_event(
                    session,
                    actor=actor(),
                    action=AuditTag.BACKUP_CREATE,
                    target=manifest.backup_id,
                    details={
                        "tables": len(manifest.tables),
                        "rows": sum(manifest.counts.values()),
                        "engine": manifest.source_engine,
                        "revision": manifest.revision,
                    },
                )
    except OSError as exc:
        msg = (
            f"{out}: the backup cannot be written ({exc.strerror or type(exc).__name__}); nothing was written"
        )
        raise BackupDestinationError(msg) from exc
    result = BackupOut(
        path=str(out.resolve()),
        bytes=size,
        tables=len(manifest.tables),
        counts=manifest.counts,
        seconds=round(time.perf_counter() - started, 3),
        backup_id=manifest.backup_id,
        revision=manifest.revision,
        source_engine=manifest.source_engine,
        audit_head=manifest.audit.head,
        master_key_id=manifest.master_key_id,
    )
    if not manifest.audit.intact:
        stderr.print(
            f"warning: the audit chain in this backup is broken at event {manifest.audit.first_bad_event}",
            markup=False,
        )
    if as_json:
        print_json(result)
        return
    stdout.print(
        f"backup written to {result.path}: {result.tables} tables, {sum(result.counts.values()):,} rows, "
        f"{_megabytes(result.bytes)} in {result.seconds:.1f} s "
        f"(schema {result.revision}, audit head {result.audit_head}); encrypted under master key "
        f"{result.master_key_id}: keep its key file apart from the backup",
        markup=False,
        soft_wrap=True,
    )


@handle_errors
def restore_command(
    file: Annotated[Path, typer.Argument(help="A backup written by `glucoshare backup`.")],
    as_json: JsonOption = False,
) -> None:
    """Restore a backup into the configured database, which must be empty (or not exist yet).

    Needs the master key file the backup was made with (GLUCOSHARE_SECRET_KEY_FILE): it opens the
    backup's encryption. The whole file is decrypted and checked before anything is written; the
    restore is one transaction and is verified (every table's rows, the audit chain, every data
    key) before it commits.
    """
    config = settings()
    started = time.perf_counter()
    ring = require_key_ring(config.effective_secret_key_file)
    with _progress() as progress:
        checked = check_backup(file, ring, progress=progress)
        manifest = checked.manifest
        db = create_db_engine(config.effective_database_url, keyring=ring)
        try:
            try:
                with db.connect():
                    pass
            except OperationalError as exc:
                msg = (
                    f"the database cannot be reached ({type(exc.orig).__name__}): check "
                    "GLUCOSHARE_DATABASE_URL and create the database first; nothing was changed"
                )
                raise InputError(msg) from exc
            with session_scope(db) as session:
                check_target(session)  # before the schema is touched
            upgrade(db)  # an empty database: no file of an earlier version to move in
            with session_scope(db) as session:
                restored = restore_backup(session, file, checked, progress=progress)
                record_event(
                    session,
                    actor=actor(),
                    action=AuditTag.BACKUP_RESTORE,
                    target=manifest.backup_id,
                    details={
                        "tables": len(manifest.tables),
                        "rows": sum(manifest.counts.values()),
                        "source_engine": manifest.source_engine,
                        "revision": manifest.revision,
                    },
                )
            target_engine = db.dialect.name
        finally:
            db.dispose()
    result = RestoreOut(
        path=str(file.resolve()),
        tables=len(manifest.tables),
        counts=manifest.counts,
        seconds=round(time.perf_counter() - started, 3),
        backup_id=manifest.backup_id,
        revision=manifest.revision,
        source_engine=manifest.source_engine,
        target_engine=target_engine,
        audit_events=restored.audit_events + 1,
        audit_intact=manifest.audit.intact,
    )
    if not manifest.audit.intact:
        stderr.print(
            f"warning: the backup's audit chain was already broken at event {manifest.audit.first_bad_event}",
            markup=False,
        )
    if as_json:
        print_json(result)
        return
    stdout.print(
        f"restored {result.path} ({result.source_engine}, {manifest.created_at:%Y-%m-%d %H:%M} UTC) into "
        f"{result.target_engine}: {result.tables} tables, {sum(result.counts.values()):,} rows, "
        f"in {result.seconds:.1f} s; every count matches, "
        f"audit chain {'intact' if result.audit_intact else 'as broken as in the backup'} "
        f"({result.audit_events} events)",
        markup=False,
        soft_wrap=True,
    )

"""Write a backup from one consistent snapshot; check a backup; restore it into an empty database.

Services flush but never commit. :func:`write_backup` reads through a session that sees one
snapshot (:func:`glucoshare.backup.snapshot.snapshot_session`); :func:`restore_backup` writes in
the caller's transaction, so a restore that fails at any point stores nothing. The format is in
:mod:`glucoshare.backup.format`; the operator's procedure in docs/reliability.md.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from alembic.config import Config
from alembic.script import ScriptDirectory
from cryptography.exceptions import InvalidTag
from pydantic import ValidationError
from sqlalchemy import Table, func, inspect, literal, select, text
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.orm import Session

from glucoshare import __version__
from glucoshare.audit.models import AuditEvent
from glucoshare.audit.service import verify_chain
from glucoshare.backup.errors import (
    BackupDamagedError,
    BackupDestinationError,
    BackupKeyError,
    BackupVersionError,
    NotABackupError,
    RestoreRefusedError,
    RestoreTargetError,
    RestoreVerificationError,
)
from glucoshare.backup.format import (
    DATA_FILE,
    FORMAT,
    MANIFEST_MEMBER,
    MARKER_MEMBER,
    MARKER_TEXT,
    SEAL_MEMBER,
    VERSION,
    all_plain,
    copy_decoders,
    decoders,
    encode_rows,
    encoders,
    file_member,
    key_fingerprint,
    manifest_seal,
    seal_matches,
    selected_columns,
    table_member,
)
from glucoshare.backup.schemas import (
    AuditState,
    FileEntry,
    KeyFingerprint,
    KeyFingerprints,
    Manifest,
    ProgressCallback,
    RestoredOut,
    TableEntry,
)
from glucoshare.config import Settings
from glucoshare.db.base import new_id, utcnow
from glucoshare.db.migrate import SCRIPT_LOCATION
from glucoshare.db.models import Base
from glucoshare.db.session import after_rollback
from glucoshare.errors import InternalError, UnreadableFileError
from glucoshare.files import private_binary_file
from glucoshare.records.models import Upload
from glucoshare.sharing.models import PendingUpload
from glucoshare.vault.errors import MasterKeyError, SealBrokenError
from glucoshare.vault.keyfile import KeyRing, read_key_file
from glucoshare.vault.models import DataKey
from glucoshare.vault.service import keyring_of

CHUNK_ROWS = 5000
"""Rows read, written and inserted at a time: memory stays bounded whatever the database's size."""
COPY_BYTES = 1 << 20
MAX_MANIFEST_BYTES = 256 << 20
"""Largest manifest read (about a million data files); ZipFile reads no more than a member's stated size."""
COMPRESS_LEVEL = 1
"""zlib level of the table streams: the fastest (a third of level 6's time for a fifth more bytes),
since the snapshot stays open while they are written; data files are ciphertext, stored as they are."""

_ARCHIVE_FAULTS = (
    zipfile.BadZipFile,
    zlib.error,
    EOFError,
    OSError,
    ValueError,
    KeyError,
    NotImplementedError,
)
"""What reading a damaged zip archive may raise (a bad CRC, a cut-off stream, a broken header)."""


def code_revision() -> str:
    """The newest schema revision this Glucoshare knows (the Alembic head)."""
    head = _scripts().get_current_head()
    if head is None:  # pragma: no cover - the package ships its migrations
        msg = "no schema migrations found"
        raise InternalError(msg)
    return head


def _scripts() -> ScriptDirectory:
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    return ScriptDirectory.from_config(config)


def _known_revisions() -> set[str]:
    return {script.revision for script in _scripts().walk_revisions()}


class _Counter:
    """Counts work done in one phase and tells the progress callback."""

    def __init__(self, progress: ProgressCallback | None, phase: str, total: int) -> None:
        self.progress = progress
        self.phase = phase
        self.total = total
        self.done = 0
        self.advance(0)

    def advance(self, amount: int) -> None:
        self.done += amount
        if self.progress is not None:
            self.progress(self.phase, self.done, self.total)


# --- backup -------------------------------------------------------------------------------------


def check_destination(out: Path, settings: Settings) -> None:
    """Refuse to write a backup over the database file, its journals or the master key file."""
    if out.is_dir():
        msg = f"{out} is a folder: give the backup file's name"
        raise BackupDestinationError(msg)
    target = out.resolve()
    protected = [settings.effective_secret_key_file.resolve()]
    url = make_url(settings.effective_database_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        database = Path(url.database).resolve()  # without the URL's query (``?timeout=``)
        protected += [database, Path(f"{database}-wal"), Path(f"{database}-shm")]
    if target in protected:
        msg = f"{out} is the database or the master key file; write the backup elsewhere"
        raise BackupDestinationError(msg)


def _data_files(session: Session) -> list[str]:
    """The data-directory files the snapshot's rows refer to (the paths ingest and sharing use)."""
    uploads = session.execute(
        select(Upload.patient_id, Upload.sha256).where(Upload.state == "file").distinct()
    )
    held = session.execute(
        select(PendingUpload.clinic_id, PendingUpload.id).where(PendingUpload.assigned_at.is_(None))
    )
    paths = {f"uploads/{owner}/{sha256}" for owner, sha256 in uploads}
    paths |= {f"pending/{clinic}/{pending}" for clinic, pending in held}
    return sorted(path for path in paths if DATA_FILE.fullmatch(path))


def _write_table(session: Session, archive: zipfile.ZipFile, table: Table, counter: _Counter) -> TableEntry:
    """Stream one table into the archive, in primary-key order, a chunk of rows at a time."""
    member = table_member(table.name)
    encode, plain = encoders(table), all_plain(table)
    query = select(*selected_columns(table)).order_by(*table.primary_key.columns)
    digest = hashlib.sha256()
    rows = 0
    with archive.open(member, "w", force_zip64=True) as out:
        result = session.execute(query, execution_options={"yield_per": CHUNK_ROWS})
        for chunk in result.partitions():
            data = encode_rows(chunk, encode, plain=plain)
            digest.update(data)
            out.write(data)
            rows += len(chunk)
            counter.advance(len(chunk))
    return TableEntry(
        name=table.name,
        member=member,
        columns=[c.name for c in table.columns],
        rows=rows,
        sha256=digest.hexdigest(),
    )


def _write_file(archive: zipfile.ZipFile, data_dir: Path, path: str) -> FileEntry | None:
    """Copy one data file into the archive as it is (sealed ciphertext); ``None`` when it is gone."""
    digest = hashlib.sha256()
    size = 0
    try:
        with (data_dir / path).open("rb") as source:
            info = zipfile.ZipInfo(file_member(path))
            info.compress_type = zipfile.ZIP_STORED
            with archive.open(info, "w", force_zip64=True) as out:
                while block := source.read(COPY_BYTES):
                    digest.update(block)
                    size += len(block)
                    out.write(block)
    except FileNotFoundError:
        return None
    except OSError as exc:
        msg = f"a data file cannot be read ({type(exc).__name__}); nothing was written"
        raise InternalError(msg) from exc
    return FileEntry(path=path, bytes=size, sha256=digest.hexdigest())


def _audit_state(session: Session) -> AuditState:
    report = verify_chain(session)
    last = session.execute(
        select(AuditEvent.id, AuditEvent.hash).order_by(AuditEvent.id.desc()).limit(1)
    ).first()
    return AuditState(
        events=report.events,
        last_id=None if last is None else last.id,
        head=None if last is None else last.hash,
        intact=report.intact,
        first_bad_event=report.first_bad_event,
    )


def _key_fingerprints(session: Session, ring: KeyRing) -> KeyFingerprints:
    held = {master.id: master.key for master in ring.keys}
    used = sorted(set(session.scalars(select(DataKey.master_key_id).distinct())))
    return KeyFingerprints(
        lookup=key_fingerprint(ring.lookup_key),
        master=[
            KeyFingerprint(id=key_id, fingerprint=key_fingerprint(held[key_id]) if key_id in held else None)
            for key_id in used
        ],
    )


def write_backup(
    session: Session, sink: IO[bytes], *, settings: Settings, progress: ProgressCallback | None = None
) -> Manifest:
    """Write a backup of the whole database and its data files to ``sink`` (a seekable binary file).

    ``session`` must see one consistent snapshot for the whole call (the backup command opens it
    with :func:`glucoshare.backup.snapshot.snapshot_session`): every table is read in that
    snapshot, in foreign-key order, :data:`CHUNK_ROWS` rows at a time. Returns the manifest
    written into the file. No row, name or value is logged.
    """
    created_at = utcnow()
    # The first statement fixes the snapshot: everything below sees the database as of now.
    revision = session.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
    tables = Base.metadata.sorted_tables
    expected = {t.name: session.execute(select(func.count()).select_from(t)).scalar_one() for t in tables}
    paths = _data_files(session)
    counter = _Counter(progress, "backup", sum(expected.values()) + len(paths))
    with zipfile.ZipFile(
        sink, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=COMPRESS_LEVEL
    ) as archive:
        archive.writestr(MARKER_MEMBER, MARKER_TEXT, compress_type=zipfile.ZIP_STORED)
        entries = []
        for table in tables:
            entry = _write_table(session, archive, table, counter)
            if entry.rows != expected[table.name]:
                msg = f"table {table.name} changed while it was read: the snapshot is not consistent"
                raise InternalError(msg)
            entries.append(entry)
        files: list[FileEntry] = []
        for path in paths:
            written = _write_file(archive, settings.data_dir, path)
            if written is not None:
                files.append(written)
            counter.advance(1)
        ring = keyring_of(session)
        manifest = Manifest(
            format=FORMAT,
            version=VERSION,
            backup_id=new_id(),
            created_at=created_at,
            glucoshare_version=__version__,
            revision=revision,
            source_engine=session.get_bind().dialect.name,
            tables=entries,
            files=files,
            missing_files=len(paths) - len(files),
            keys=_key_fingerprints(session, ring),
            audit=_audit_state(session),
        )
        document = manifest.model_dump_json(indent=2)
        archive.writestr(MANIFEST_MEMBER, document)
        archive.writestr(SEAL_MEMBER, manifest_seal(ring, document) + "\n")
    return manifest


# --- checking a backup --------------------------------------------------------------------------


def require_key_ring(key_file: Path) -> KeyRing:
    """The key ring of an existing key file; a restore never makes a new one (nothing would open)."""
    if not key_file.exists():
        msg = (
            f"no master key file at {key_file}: put the key file kept with the backup there, "
            "or set GLUCOSHARE_SECRET_KEY_FILE to it"
        )
        raise BackupKeyError(msg)
    try:
        return read_key_file(key_file)
    except MasterKeyError as exc:
        raise BackupKeyError(exc.message) from exc


def _first_member_name(path: Path) -> bytes:
    """The name in the archive's first local header (``b""`` when there is none)."""
    with contextlib.suppress(OSError), path.open("rb") as handle:
        head = handle.read(30 + len(MARKER_MEMBER))
        if head[:4] == b"PK\x03\x04" and len(head) >= 30:  # noqa: PLR2004 - the local header's size
            length = int.from_bytes(head[26:28], "little")
            return head[30 : 30 + length]
    return b""


@contextlib.contextmanager
def _open_archive(path: Path) -> Iterator[zipfile.ZipFile]:
    """The backup at ``path`` as a zip archive; a clear refusal when it is none or a broken one."""
    if not path.is_file():
        msg = f"{path}: no such file"
        raise UnreadableFileError(msg)
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        if _first_member_name(path) == MARKER_MEMBER.encode():
            msg = f"{path}: the backup is truncated or damaged (its zip directory is unreadable)"
            raise BackupDamagedError(msg) from exc
        msg = f"{path}: not a Glucoshare backup"
        raise NotABackupError(msg) from exc
    except OSError as exc:
        msg = f"{path}: the file cannot be read ({exc.strerror or type(exc).__name__})"
        raise UnreadableFileError(msg) from exc
    with archive:
        yield archive


def _read_small(archive: zipfile.ZipFile, member: str, path: Path) -> str:
    """A small member read whole (marker, manifest, seal); at most :data:`MAX_MANIFEST_BYTES`."""
    try:
        if archive.getinfo(member).file_size > MAX_MANIFEST_BYTES:
            msg = f"{path}: the backup's {member} is implausibly large"
            raise BackupDamagedError(msg)
        return archive.read(member).decode("utf-8")
    except KeyError as exc:
        msg = f"{path}: the backup has no {member} (truncated or damaged)"
        raise BackupDamagedError(msg) from exc
    except (*_ARCHIVE_FAULTS, UnicodeDecodeError) as exc:
        msg = f"{path}: the backup's {member} is damaged ({type(exc).__name__})"
        raise BackupDamagedError(msg) from exc


def _check_keys(manifest: Manifest, ring: KeyRing) -> None:
    held = {master.id: key_fingerprint(master.key) for master in ring.keys}
    needed = [k for k in manifest.keys.master if k.fingerprint is not None]
    wrong = key_fingerprint(ring.lookup_key) != manifest.keys.lookup or any(
        held.get(k.id) != k.fingerprint for k in needed
    )
    if wrong:
        names = ", ".join(k.id for k in needed) or "its lookup key"
        msg = (
            f"the configured master key file is not the one this backup was made with (it needs {names}); "
            "set GLUCOSHARE_SECRET_KEY_FILE to the key file kept with the backup"
        )
        raise BackupKeyError(msg)


def _check_revision(manifest: Manifest) -> None:
    head = code_revision()
    if manifest.revision == head:
        return
    made = f"schema revision {manifest.revision} (Glucoshare {manifest.glucoshare_version})"
    if manifest.revision in _known_revisions():
        msg = (
            f"the backup was made at {made}, older than this Glucoshare's {head}: restore it with "
            f"Glucoshare {manifest.glucoshare_version}, then upgrade (`glucoshare db upgrade`)"
        )
    else:
        msg = (
            f"the backup was made at {made}, newer than this Glucoshare's {head}: restore it with "
            f"Glucoshare {manifest.glucoshare_version} or later"
        )
    raise BackupVersionError(msg)


def _check_contents(archive: zipfile.ZipFile, manifest: Manifest, path: Path) -> None:
    """The manifest lists exactly the schema's tables and columns, and the archive exactly its members."""
    by_name = {entry.name: entry for entry in manifest.tables}
    for table in Base.metadata.sorted_tables:
        entry = by_name.get(table.name)
        if entry is None or entry.columns != [c.name for c in table.columns]:
            msg = f"{path}: table {table.name} of the backup does not fit this schema"
            raise BackupVersionError(msg)
    if len(by_name) != len(manifest.tables) or set(by_name) != {t.name for t in Base.metadata.sorted_tables}:
        msg = f"{path}: the backup's tables do not fit this schema"
        raise BackupVersionError(msg)
    expected = [MARKER_MEMBER, MANIFEST_MEMBER, SEAL_MEMBER]
    for entry in manifest.tables:
        if entry.member != table_member(entry.name):
            msg = f"{path}: the backup's manifest names an unexpected member"
            raise BackupDamagedError(msg)
        expected.append(entry.member)
    for item in manifest.files:
        if not DATA_FILE.fullmatch(item.path):
            msg = f"{path}: the backup's manifest names a file outside the data folders"
            raise BackupDamagedError(msg)
        expected.append(file_member(item.path))
    names = archive.namelist()
    if sorted(names) != sorted(expected) or len(set(expected)) != len(expected):
        msg = f"{path}: the backup's members do not match its manifest (damaged)"
        raise BackupDamagedError(msg)


def _verify_member(
    archive: zipfile.ZipFile, member: str, what: str, sha256: str, *, lines: int | None, size: int | None
) -> int:
    """Read one member to its end: its SHA-256, and its line count or size, must be the manifest's."""
    digest = hashlib.sha256()
    count = 0
    try:
        with archive.open(member) as stream:
            while block := stream.read(COPY_BYTES):
                digest.update(block)
                count += block.count(b"\n") if lines is not None else len(block)
    except _ARCHIVE_FAULTS as exc:
        msg = f"the backup is damaged: {what} cannot be read ({type(exc).__name__})"
        raise BackupDamagedError(msg) from exc
    if digest.hexdigest() != sha256 or count != (lines if lines is not None else size):
        msg = f"the backup is damaged: {what} does not match its SHA-256 in the manifest"
        raise BackupDamagedError(msg)
    return count


def _check_free(data_dir: Path, item: FileEntry) -> None:
    """A data file may be restored where there is none, or the very same one."""
    target = data_dir / item.path
    if not target.exists():
        return
    digest = hashlib.sha256()
    with target.open("rb") as handle:
        while block := handle.read(COPY_BYTES):
            digest.update(block)
    if digest.hexdigest() != item.sha256:
        msg = f"the data folder already holds another {item.path}: restore into an empty data folder"
        raise RestoreTargetError(msg)


def check_backup(
    path: Path, ring: KeyRing, *, data_dir: Path, progress: ProgressCallback | None = None
) -> Manifest:
    """Check a backup completely before anything is restored; return its manifest.

    In this order: the file is a Glucoshare backup of a format this version reads; its manifest
    parses; ``ring`` is the key file the backup was made with (fingerprints); the manifest's seal
    (HMAC under that key file) matches, so the manifest is as written; the backup's schema revision
    is this Glucoshare's; its tables and columns are this schema's; every table stream and data file
    has the manifest's SHA-256 and row count or size; and no other file would be overwritten in
    ``data_dir``. Raises a :class:`~glucoshare.errors.InputError` naming what is wrong.
    """
    with _open_archive(path) as archive:
        if MARKER_MEMBER not in archive.namelist():
            msg = f"{path}: not a Glucoshare backup"
            raise NotABackupError(msg)
        marker = _read_small(archive, MARKER_MEMBER, path)
        first = marker.split("\n", 1)[0].split(" ")
        if len(first) != 2 or first[0] != FORMAT or not first[1].isdigit():  # noqa: PLR2004 - "name version"
            msg = f"{path}: not a Glucoshare backup"
            raise NotABackupError(msg)
        if int(first[1]) != VERSION:
            msg = f"{path}: backup format {first[1]} is not format {VERSION}, which this Glucoshare reads"
            raise BackupVersionError(msg)
        document = _read_small(archive, MANIFEST_MEMBER, path)
        seal = _read_small(archive, SEAL_MEMBER, path)
        try:
            manifest = Manifest.model_validate_json(document)
        except ValidationError as exc:
            msg = f"{path}: the backup's manifest is damaged"
            raise BackupDamagedError(msg) from exc
        _check_keys(manifest, ring)
        if not seal_matches(ring, document, seal):
            msg = f"{path}: the backup's manifest was changed after the backup was written"
            raise BackupDamagedError(msg)
        _check_revision(manifest)
        _check_contents(archive, manifest, path)
        counter = _Counter(progress, "checking", sum(t.rows for t in manifest.tables) + len(manifest.files))
        for entry in manifest.tables:
            rows = _verify_member(
                archive, entry.member, f"table {entry.name}", entry.sha256, lines=entry.rows, size=None
            )
            counter.advance(rows)
        for item in manifest.files:
            _verify_member(
                archive, file_member(item.path), f"file {item.path}", item.sha256, lines=None, size=item.bytes
            )
            _check_free(data_dir, item)
            counter.advance(1)
    return manifest


# --- restore ------------------------------------------------------------------------------------


def check_target(session: Session) -> None:
    """Refuse a database that holds any row, or whose schema is newer than this Glucoshare's.

    Works on a database of any state: not created yet, created but not migrated, migrated and
    empty. Reads only.
    """
    connection = session.connection()
    present = set(inspect(connection).get_table_names())
    if "alembic_version" in present:
        revision = session.execute(text("SELECT version_num FROM alembic_version")).scalar()
        if revision is not None and revision not in _known_revisions():
            msg = f"the database is at schema revision {revision}, which this Glucoshare does not know"
            raise RestoreTargetError(msg)
    for table in Base.metadata.sorted_tables:
        if table.name in present and session.execute(select(literal(1)).select_from(table).limit(1)).first():
            msg = (
                f"the database is not empty (table {table.name} holds rows): "
                "restore into a new, empty database"
            )
            raise RestoreTargetError(msg)


def _lines(archive: zipfile.ZipFile, entry: TableEntry) -> Iterator[list[Any]]:
    """The rows of a table stream, checked again against the manifest as they are read."""
    digest = hashlib.sha256()
    count = 0
    try:
        with archive.open(entry.member) as stream:
            for line in stream:
                digest.update(line)
                count += 1
                yield json.loads(line)
    except (*_ARCHIVE_FAULTS, UnicodeDecodeError) as exc:
        msg = f"the backup is damaged: table {entry.name} cannot be read ({type(exc).__name__})"
        raise BackupDamagedError(msg) from exc
    if digest.hexdigest() != entry.sha256 or count != entry.rows:
        msg = f"the backup changed while it was restored: table {entry.name} does not match its SHA-256"
        raise BackupDamagedError(msg)


def _shape(table: Table, values: object, width: int) -> list[Any]:
    if not isinstance(values, list) or len(values) != width:
        msg = f"the backup is damaged: a row of table {table.name} has the wrong shape"
        raise BackupDamagedError(msg)
    return values


def _load_table(
    session: Session, archive: zipfile.ZipFile, table: Table, entry: TableEntry, counter: _Counter
) -> None:
    """Insert one table's rows on the session's connection, in its transaction.

    The rows go through the driver (SQLite: ``executemany`` of :data:`CHUNK_ROWS` rows at a time;
    PostgreSQL: one ``COPY``) rather than one SQLAlchemy statement per chunk: three to ten times
    faster, and the values are the same, since each passes through its column type's own bind
    processing (the form the application stores) or, for ``COPY``, the server's text input.
    """
    connection = session.connection()
    dialect = connection.dialect
    dbapi: Any = connection.connection.dbapi_connection
    cursor = dbapi.cursor()
    try:
        if dialect.name == "postgresql":
            _copy_rows(cursor, archive, table, entry, counter)
        else:
            _insert_rows(cursor, dialect, archive, table, entry, counter)
    except dialect.loaded_dbapi.Error as exc:
        cause = type(exc).__name__
        msg = f"the database refused the rows of table {table.name} ({cause}); nothing was restored"
        raise RestoreRefusedError(msg) from exc
    finally:
        cursor.close()


def _insert_rows(  # noqa: PLR0917 - the parts of one insert
    cursor: Any,  # noqa: ANN401 - the driver's cursor
    dialect: Dialect,
    archive: zipfile.ZipFile,
    table: Table,
    entry: TableEntry,
    counter: _Counter,
) -> None:
    """SQLite: ``executemany`` in chunks, each value decoded and then bound as SQLAlchemy binds it."""
    steps = []
    for column, decode in zip(table.columns, decoders(table), strict=True):
        bind = column.type.dialect_impl(dialect).bind_processor(dialect)
        steps.append(decode if bind is None else _then(decode, bind))
    quote = dialect.identifier_preparer.quote
    names = ", ".join(quote(column.name) for column in table.columns)
    marks = ", ".join("?" for _ in table.columns)
    sql = f"INSERT INTO {quote(table.name)} ({names}) VALUES ({marks})"  # noqa: S608 - names from the schema
    chunk: list[list[Any]] = []
    for values in _lines(archive, entry):
        row = _shape(table, values, len(steps))
        chunk.append([f(v) for f, v in zip(steps, row, strict=True)])
        if len(chunk) >= CHUNK_ROWS:
            cursor.executemany(sql, chunk)
            counter.advance(len(chunk))
            chunk = []
    if chunk:
        cursor.executemany(sql, chunk)
        counter.advance(len(chunk))


def _then(first: Callable[[Any], Any], second: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda value: second(first(value))


def _copy_rows(
    cursor: Any,  # noqa: ANN401 - psycopg's cursor
    archive: zipfile.ZipFile,
    table: Table,
    entry: TableEntry,
    counter: _Counter,
) -> None:
    """PostgreSQL: one ``COPY ... FROM STDIN``; the server parses timestamps and JSON from their text."""
    decode = copy_decoders(table)
    columns = ", ".join(f'"{column.name}"' for column in table.columns)
    with cursor.copy(f'COPY "{table.name}" ({columns}) FROM STDIN') as copy:
        pending = 0
        for values in _lines(archive, entry):
            row = _shape(table, values, len(decode))
            copy.write_row([f(v) for f, v in zip(decode, row, strict=True)])
            pending += 1
            if pending == CHUNK_ROWS:
                counter.advance(pending)
                pending = 0
        counter.advance(pending)


def _reset_sequences(session: Session) -> None:
    """PostgreSQL: every serial column's next value follows the restored maximum (SQLite does it itself)."""
    if session.get_bind().dialect.name != "postgresql":
        return
    for table in Base.metadata.sorted_tables:
        column = table.autoincrement_column
        if column is None:
            continue
        session.execute(
            text(
                f"SELECT setval(pg_get_serial_sequence(:table, :column), "  # noqa: S608 - names from the schema
                f'COALESCE(MAX("{column.name}"), 0) + 1, false) FROM "{table.name}"'
            ),
            {"table": table.name, "column": column.name},
        )


def _restore_file(session: Session, archive: zipfile.ZipFile, data_dir: Path, item: FileEntry) -> bool:
    """Put one data file in place (removed again if the transaction rolls back); ``False``: already there."""
    target = data_dir / item.path
    if target.exists():  # the very same file (check_backup compared it)
        return False
    digest = hashlib.sha256()
    try:
        with archive.open(file_member(item.path)) as source, private_binary_file(target) as out:
            while block := source.read(COPY_BYTES):
                digest.update(block)
                out.write(block)
            if digest.hexdigest() != item.sha256:
                msg = f"the backup changed while it was restored: file {item.path} does not match its SHA-256"
                raise BackupDamagedError(msg)
    except _ARCHIVE_FAULTS as exc:
        msg = f"the backup is damaged: file {item.path} cannot be read ({type(exc).__name__})"
        raise BackupDamagedError(msg) from exc

    def forget() -> None:
        target.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            target.parent.rmdir()  # only when no other file shares the folder

    after_rollback(session, forget)
    return True


def _verify(session: Session, manifest: Manifest) -> int:
    """The restored database holds exactly the manifest's rows, its audit chain and readable data keys.

    Returns the number of audit events verified.
    """
    for table in Base.metadata.sorted_tables:
        rows = session.execute(select(func.count()).select_from(table)).scalar_one()
        expected = manifest.counts[table.name]
        if rows != expected:
            msg = f"table {table.name} holds {rows} rows after the restore, the backup {expected}"
            raise RestoreVerificationError(msg)
    state = _audit_state(session)
    if state != manifest.audit:
        msg = "the restored audit chain is not the backup's (nothing was restored)"
        raise RestoreVerificationError(msg)
    ring = keyring_of(session)
    try:
        for subject_id, master_key_id, wrapped in session.execute(
            select(DataKey.subject_id, DataKey.master_key_id, DataKey.wrapped)
        ):
            ring.unwrap(master_key_id, wrapped, subject_id)
    except (InvalidTag, SealBrokenError, MasterKeyError) as exc:
        msg = "a restored data key does not open with the configured master key (nothing was restored)"
        raise RestoreVerificationError(msg) from exc
    return state.events


def restore_backup(
    session: Session,
    path: Path,
    manifest: Manifest,
    *,
    settings: Settings,
    progress: ProgressCallback | None = None,
) -> RestoredOut:
    """Restore a checked backup (:func:`check_backup`) into the session's empty database and data folder.

    In the caller's transaction: refuses a database that is not empty, inserts every table in
    foreign-key order a chunk at a time (each stream checked against its SHA-256 again), moves
    PostgreSQL's sequences past the restored keys, puts the data files in place (removed again on
    rollback), then verifies every table's row count, the audit chain (the manifest's events, head
    and verdict) and that every data key opens.
    """
    check_target(session)
    by_name = {entry.name: entry for entry in manifest.tables}
    counter = _Counter(progress, "restoring", sum(t.rows for t in manifest.tables) + len(manifest.files))
    written = 0
    with _open_archive(path) as archive:
        for table in Base.metadata.sorted_tables:
            _load_table(session, archive, table, by_name[table.name], counter)
        _reset_sequences(session)
        for item in manifest.files:
            written += _restore_file(session, archive, settings.data_dir, item)
            counter.advance(1)
    session.flush()
    return RestoredOut(files=written, audit_events=_verify(session, manifest))

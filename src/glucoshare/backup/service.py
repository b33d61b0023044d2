"""Write a backup from one consistent snapshot; check a backup; restore it into an empty database.

Services flush but never commit. :func:`write_backup` reads through a session that sees one
snapshot (:func:`glucoshare.backup.snapshot.snapshot_session`); :func:`restore_backup` writes in
the caller's transaction, so a restore that fails at any point stores nothing. The format is in
:mod:`glucoshare.backup.format`, its encryption in :mod:`glucoshare.backup.header`,
:mod:`glucoshare.backup.members` and :mod:`glucoshare.backup.stream`; the operator's procedure in
docs/reliability.md.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import itertools
import json
import re
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
    CHUNK_BYTES,
    FORMAT,
    HEADER_MEMBER,
    MANIFEST_MEMBER,
    MARKER_MEMBER,
    MARKER_TEXT,
    PART_MEMBER,
    V1_MANIFEST_MEMBER,
    VERSION,
    all_plain,
    copy_decoders,
    decoders,
    encode_rows,
    encoders,
    key_fingerprint,
    part_member,
    selected_columns,
)
from glucoshare.backup.header import member_cipher, new_header, writer_cipher
from glucoshare.backup.members import MemberCipher
from glucoshare.backup.schemas import (
    AuditState,
    KeyFingerprint,
    KeyFingerprints,
    Manifest,
    ProgressCallback,
    RestoredOut,
    TableEntry,
)
from glucoshare.config import Settings
from glucoshare.db.base import is_bulky, new_id, utcnow
from glucoshare.db.migrate import SCRIPT_LOCATION
from glucoshare.db.models import Base
from glucoshare.errors import InternalError, UnreadableFileError
from glucoshare.vault.errors import MasterKeyError, SealBrokenError
from glucoshare.vault.keyfile import KeyRing, read_key_file
from glucoshare.vault.models import DataKey
from glucoshare.vault.service import keyring_of

CHUNK_ROWS = 5000
"""Rows read, written and inserted at a time: memory stays bounded whatever the database's size."""
BULKY_CHUNK_ROWS = 8
"""Rows at a time of a table with a bulky column (kept file pieces of 1 MiB, PDFs, queued uploads)."""


def rows_per_chunk(table: Table) -> int:
    """How many rows of ``table`` are read, written and inserted at a time (bounded bytes, too)."""
    return BULKY_CHUNK_ROWS if is_bulky(table) else CHUNK_ROWS


COPY_BYTES = 1 << 20
MAX_MANIFEST_BYTES = 256 << 20
"""Largest manifest read (far more than the schema's tables need)."""
MAX_CLEAR_BYTES = 1 << 20
"""Largest clear member read (marker, header); ZipFile reads no more than a member's stated size."""
OLDER_FORMAT_VERSION = re.compile(r"[0-9][0-9A-Za-z.+-]{0,31}")
"""A Glucoshare version as a format-1 manifest names it (anything else is not repeated in a message)."""

_ARCHIVE_FAULTS = (
    zipfile.BadZipFile,
    zlib.error,
    EOFError,
    OSError,
    ValueError,
    KeyError,
    NotImplementedError,
)
"""What reading a clear member of a damaged zip archive may raise (a bad CRC, a cut-off stream)."""


@dataclasses.dataclass(frozen=True, slots=True)
class CheckedBackup:
    """A backup that :func:`check_backup` read whole: its manifest, and how its members open."""

    manifest: Manifest
    cipher: MemberCipher


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


def _write_table(  # noqa: PLR0917 - the parts of one table's member
    session: Session,
    archive: zipfile.ZipFile,
    cipher: MemberCipher,
    member: str,
    table: Table,
    counter: _Counter,
) -> TableEntry:
    """Stream one table into its encrypted member, in primary-key order, a chunk of rows at a time."""
    encode, plain = encoders(table), all_plain(table)
    query = select(*selected_columns(table)).order_by(*table.primary_key.columns)
    digest = hashlib.sha256()
    rows = 0
    with cipher.create(archive, member) as out:
        result = session.execute(query, execution_options={"yield_per": rows_per_chunk(table)})
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
    session: Session,
    sink: IO[bytes],
    *,
    progress: ProgressCallback | None = None,
    chunk_bytes: int = CHUNK_BYTES,
) -> Manifest:
    """Write an encrypted backup of the whole database to ``sink`` (seekable, binary).

    ``session`` must see one consistent snapshot for the whole call (the backup command opens it
    with :func:`glucoshare.backup.snapshot.snapshot_session`): every table is read in that
    snapshot, in foreign-key order, :func:`rows_per_chunk` rows at a time, and streamed into its
    member. Every member after the clear marker and header is encrypted under a backup key
    derived from the key ring's primary master key (:mod:`glucoshare.backup.header`), in chunks of
    ``chunk_bytes`` plaintext bytes (1 MiB; tests use smaller ones). Returns the manifest written
    into the file. No row, name or value is logged.
    """
    created_at = utcnow()
    # The first statement fixes the snapshot: everything below sees the database as of now.
    revision = session.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
    tables = Base.metadata.sorted_tables
    expected = {t.name: session.execute(select(func.count()).select_from(t)).scalar_one() for t in tables}
    ring = keyring_of(session)
    header = new_header(ring, _key_fingerprints(session, ring), chunk_bytes=chunk_bytes)
    cipher = writer_cipher(header, ring)
    names = (part_member(number) for number in itertools.count(1))
    counter = _Counter(progress, "backup", sum(expected.values()))
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr(MARKER_MEMBER, MARKER_TEXT)
        archive.writestr(HEADER_MEMBER, header)
        entries = []
        for table in tables:
            entry = _write_table(session, archive, cipher, next(names), table, counter)
            if entry.rows != expected[table.name]:
                msg = f"table {table.name} changed while it was read: the snapshot is not consistent"
                raise InternalError(msg)
            entries.append(entry)
        manifest = Manifest(
            format=FORMAT,
            version=VERSION,
            backup_id=new_id(),
            created_at=created_at,
            glucoshare_version=__version__,
            revision=revision,
            source_engine=session.get_bind().dialect.name,
            tables=entries,
            master_key_id=ring.primary.id,
            audit=_audit_state(session),
        )
        with cipher.create(archive, MANIFEST_MEMBER) as out:
            out.write(manifest.model_dump_json(indent=2).encode("utf-8"))
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


def _read_clear(archive: zipfile.ZipFile, member: str, path: Path, limit: int = MAX_CLEAR_BYTES) -> bytes:
    """A small clear member read whole (the marker, the header); at most ``limit`` bytes."""
    try:
        if archive.getinfo(member).file_size > limit:
            msg = f"{path}: the backup's {member} is implausibly large"
            raise BackupDamagedError(msg)
        return archive.read(member)
    except KeyError as exc:
        msg = f"{path}: the backup has no {member} (truncated or damaged)"
        raise BackupDamagedError(msg) from exc
    except _ARCHIVE_FAULTS as exc:
        msg = f"{path}: the backup's {member} is damaged ({type(exc).__name__})"
        raise BackupDamagedError(msg) from exc


def _check_marker(archive: zipfile.ZipFile, path: Path) -> None:
    """The archive is a Glucoshare backup of the format this version reads (format 2)."""
    if MARKER_MEMBER not in archive.namelist():
        msg = f"{path}: not a Glucoshare backup"
        raise NotABackupError(msg)
    try:
        marker = _read_clear(archive, MARKER_MEMBER, path).decode("utf-8")
    except UnicodeDecodeError as exc:
        msg = f"{path}: not a Glucoshare backup"
        raise NotABackupError(msg) from exc
    first = marker.split("\n", 1)[0].split(" ")
    if len(first) != 2 or first[0] != FORMAT or not first[1].isdigit():  # noqa: PLR2004 - "name version"
        msg = f"{path}: not a Glucoshare backup"
        raise NotABackupError(msg)
    version = int(first[1])
    if version < VERSION:
        made = _older_version(archive, path)
        msg = (
            f"{path}: this backup is in format {version}, made by an older Glucoshare{made} before "
            f"backups were encrypted; this Glucoshare restores format {VERSION} only: restore it with "
            "the Glucoshare version that made it, then upgrade and make a new backup"
        )
        raise BackupVersionError(msg)
    if version > VERSION:
        msg = (
            f"{path}: this backup is in format {version}, made by a newer Glucoshare; this Glucoshare "
            f"reads format {VERSION}: restore it with the version that made it or a later one"
        )
        raise BackupVersionError(msg)


def _older_version(archive: zipfile.ZipFile, path: Path) -> str:
    """`` (X.Y.Z)``: the Glucoshare version a format-1 backup's clear manifest names, if it names one."""
    try:
        manifest = json.loads(_read_clear(archive, V1_MANIFEST_MEMBER, path, MAX_MANIFEST_BYTES))
        version = manifest["glucoshare_version"]
    except (BackupDamagedError, ValueError, KeyError, TypeError):
        return ""
    return f" ({version})" if isinstance(version, str) and OLDER_FORMAT_VERSION.fullmatch(version) else ""


def _read_manifest(archive: zipfile.ZipFile, cipher: MemberCipher, path: Path) -> Manifest:
    """The backup's manifest, decrypted (its authentication is the backup's: a change is refused)."""
    with cipher.open(archive, MANIFEST_MEMBER) as stream:
        document = stream.read(MAX_MANIFEST_BYTES + 1)
    if len(document) > MAX_MANIFEST_BYTES:
        msg = f"{path}: the backup's manifest is implausibly large"
        raise BackupDamagedError(msg)
    try:
        manifest = Manifest.model_validate_json(document)
    except ValidationError as exc:
        msg = f"{path}: the backup's manifest is damaged"
        raise BackupDamagedError(msg) from exc
    if manifest.version != VERSION:
        msg = f"{path}: the backup's manifest is damaged (format {manifest.version})"
        raise BackupDamagedError(msg)
    return manifest


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
    expected = [MARKER_MEMBER, HEADER_MEMBER, MANIFEST_MEMBER]
    for part in manifest.tables:
        if not PART_MEMBER.fullmatch(part.member):
            msg = f"{path}: the backup's manifest names an unexpected member"
            raise BackupDamagedError(msg)
        expected.append(part.member)
    names = archive.namelist()
    if sorted(names) != sorted(expected) or len(set(expected)) != len(expected):
        msg = f"{path}: the backup's members do not match its manifest (damaged)"
        raise BackupDamagedError(msg)


def _verify_member(
    archive: zipfile.ZipFile,
    cipher: MemberCipher,
    member: str,
    what: str,
    sha256: str,
    *,
    lines: int | None,
    size: int | None,
) -> int:
    """Read a member to its authenticated end: its SHA-256, and line count or size, must be the manifest's."""
    digest = hashlib.sha256()
    count = 0
    with cipher.open(archive, member, what=what) as stream:
        while block := stream.read(COPY_BYTES):
            digest.update(block)
            count += block.count(b"\n") if lines is not None else len(block)
    if digest.hexdigest() != sha256 or count != (lines if lines is not None else size):
        msg = f"the backup is damaged: {what} does not match its SHA-256 in the manifest"
        raise BackupDamagedError(msg)
    return count


def check_backup(path: Path, ring: KeyRing, *, progress: ProgressCallback | None = None) -> CheckedBackup:
    """Check a backup completely before anything is restored; return its manifest and how it opens.

    In this order: the file is a Glucoshare backup of the format this version reads (format 2;
    format 1 is refused with the version to restore it with); ``ring`` is the key file the backup
    was made with (the header's fingerprints: the master key the backup is encrypted under, found
    by id, retired keys included; the lookup key; the keys that wrap its data keys); the manifest
    opens (decrypted and authenticated under the backup key, which binds the header too); the
    backup's schema revision is this Glucoshare's; its tables and columns are this schema's; the
    archive holds exactly the manifest's members; every member decrypts and authenticates to its
    last chunk and has the manifest's SHA-256 and row count. Raises a
    :class:`~glucoshare.errors.InputError` naming what is wrong (a damaged or altered member:
    which one, and which chunk).
    """
    with _open_archive(path) as archive:
        _check_marker(archive, path)
        cipher = member_cipher(_read_clear(archive, HEADER_MEMBER, path), ring, path)
        manifest = _read_manifest(archive, cipher, path)
        _check_revision(manifest)
        _check_contents(archive, manifest, path)
        counter = _Counter(progress, "checking", sum(t.rows for t in manifest.tables))
        for entry in manifest.tables:
            rows = _verify_member(
                archive,
                cipher,
                entry.member,
                f"table {entry.name}",
                entry.sha256,
                lines=entry.rows,
                size=None,
            )
            counter.advance(rows)
    return CheckedBackup(manifest=manifest, cipher=cipher)


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


def _lines(archive: zipfile.ZipFile, cipher: MemberCipher, entry: TableEntry) -> Iterator[list[Any]]:
    """The rows of a table's member, decrypted and checked again against the manifest as they are read."""
    digest = hashlib.sha256()
    count = 0
    with cipher.open(archive, entry.member, what=f"table {entry.name}") as stream:
        for line in stream:
            digest.update(line)
            count += 1
            try:
                values = json.loads(line)
            except ValueError as exc:  # UnicodeDecodeError too
                msg = f"the backup is damaged: table {entry.name} cannot be read ({type(exc).__name__})"
                raise BackupDamagedError(msg) from exc
            yield values
    if digest.hexdigest() != entry.sha256 or count != entry.rows:
        msg = f"the backup changed while it was restored: table {entry.name} does not match its SHA-256"
        raise BackupDamagedError(msg)


def _shape(table: Table, values: object, width: int) -> list[Any]:
    if not isinstance(values, list) or len(values) != width:
        msg = f"the backup is damaged: a row of table {table.name} has the wrong shape"
        raise BackupDamagedError(msg)
    return values


def _load_table(  # noqa: PLR0917 - the parts of one table's restore
    session: Session,
    archive: zipfile.ZipFile,
    cipher: MemberCipher,
    table: Table,
    entry: TableEntry,
    counter: _Counter,
) -> None:
    """Insert one table's rows on the session's connection, in its transaction.

    The rows go through the driver (SQLite: ``executemany`` of :func:`rows_per_chunk` rows at a time;
    PostgreSQL: one ``COPY``) rather than one SQLAlchemy statement per chunk: three to ten times
    faster, and the values are the same, since each passes through its column type's own bind
    processing (the form the application stores) or, for ``COPY``, the server's text input.
    """
    connection = session.connection()
    dialect = connection.dialect
    dbapi: Any = connection.connection.dbapi_connection
    cursor = dbapi.cursor()
    rows = _lines(archive, cipher, entry)
    try:
        if dialect.name == "postgresql":
            _copy_rows(cursor, rows, table, counter)
        else:
            _insert_rows(cursor, dialect, rows, table, counter)
    except dialect.loaded_dbapi.Error as exc:
        cause = type(exc).__name__
        msg = f"the database refused the rows of table {table.name} ({cause}); nothing was restored"
        raise RestoreRefusedError(msg) from exc
    finally:
        cursor.close()


def _insert_rows(
    cursor: Any,  # noqa: ANN401 - the driver's cursor
    dialect: Dialect,
    rows: Iterator[list[Any]],
    table: Table,
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
    size = rows_per_chunk(table)
    for values in rows:
        row = _shape(table, values, len(steps))
        chunk.append([f(v) for f, v in zip(steps, row, strict=True)])
        if len(chunk) >= size:
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
    rows: Iterator[list[Any]],
    table: Table,
    counter: _Counter,
) -> None:
    """PostgreSQL: one ``COPY ... FROM STDIN``; the server parses timestamps and JSON from their text."""
    decode = copy_decoders(table)
    columns = ", ".join(f'"{column.name}"' for column in table.columns)
    with cursor.copy(f'COPY "{table.name}" ({columns}) FROM STDIN') as copy:
        pending = 0
        for values in rows:
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
    backup: CheckedBackup,
    *,
    progress: ProgressCallback | None = None,
) -> RestoredOut:
    """Restore a checked backup (:func:`check_backup`) into the session's empty database.

    In the caller's transaction: refuses a database that is not empty, inserts every table in
    foreign-key order a chunk at a time (each member decrypted and authenticated chunk by chunk
    again, and checked against its SHA-256), moves PostgreSQL's sequences past the restored keys,
    then verifies every table's row
    count, the audit chain (the manifest's events, head and verdict) and that every data key opens.
    Raises on any failure, with nothing flushed that the caller's rollback would not undo.
    """
    manifest, cipher = backup.manifest, backup.cipher
    check_target(session)
    by_name = {entry.name: entry for entry in manifest.tables}
    counter = _Counter(progress, "restoring", sum(t.rows for t in manifest.tables))
    with _open_archive(path) as archive:
        for table in Base.metadata.sorted_tables:
            _load_table(session, archive, cipher, table, by_name[table.name], counter)
        _reset_sequences(session)
    session.flush()
    return RestoredOut(audit_events=_verify(session, manifest))

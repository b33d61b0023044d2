"""Encryption at rest: data keys, sealed identifying columns, keyed e-mail lookup, sealed raw files.

Existing names, birth dates, e-mail addresses, second-factor secrets and file names are sealed
with a new data key per patient and per user; the raw files of existing uploads are sealed into
``uploads/<patient id>/<sha256>``. This needs the master key, which :func:`glucoshare.db.migrate.upgrade`
hands over with the engine; the plaintext raw files are removed only after the migration commits.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-22
"""

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import sqlalchemy as sa
from alembic import context, op

from glucoshare.db.base import UTCDateTime, utcnow
from glucoshare.vault.cipher import new_key, seal
from glucoshare.vault.keyfile import KeyRing

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SEALED = {
    "patients": {"email": "email_sealed", "name": "name_sealed", "birthdate": "birthdate_sealed"},
    "users": {"email": "email_sealed", "name": "name_sealed", "totp_secret": "totp_secret_sealed"},
}


def _ring() -> KeyRing:
    ring: KeyRing | None = context.config.attributes.get("keyring")
    if ring is None:
        msg = (
            "this upgrade seals stored identifying data and needs the master key (GLUCOSHARE_SECRET_KEY_FILE)"
        )
        raise RuntimeError(msg)
    return ring


def _populated() -> bool:
    conn = op.get_bind()
    return any(
        conn.execute(sa.text(f"SELECT 1 FROM {table} LIMIT 1")).first() is not None  # noqa: S608 - constants
        for table in ("patients", "users", "uploads")
    )


def _refuse_colliding_emails(ring: KeyRing) -> None:
    """Refuse, before anything changed, e-mail addresses that would share one lookup hash.

    The old unique constraint told them apart; folded (``ß``/``ss``, composed and decomposed
    accents) they are one, and the new constraint would fail half-way.
    """
    conn = op.get_bind()
    for table in _SEALED:
        seen: dict[str, str] = {}
        for row_id, email in conn.execute(sa.text(f"SELECT id, email FROM {table}")):  # noqa: S608
            lookup = ring.lookup(email)
            if lookup in seen:
                msg = (
                    f"cannot upgrade: {table} {seen[lookup]} and {row_id} have e-mail addresses that are "
                    "the same once case and Unicode form are folded; change or merge one of them first"
                )
                raise RuntimeError(msg)
            seen[lookup] = row_id


@contextlib.contextmanager
def _sqlite_atomic_without_foreign_keys() -> Iterator[None]:
    """On SQLite, run this revision in one real transaction with foreign keys off.

    Batch mode re-creates ``patients``, ``users`` and ``uploads`` (copy, ``DROP``, rename); with
    foreign keys on, the ``DROP`` deletes every row referring to them (``ON DELETE CASCADE``: devices,
    uploads, records, tokens, sessions, summaries) or unlinks it (``SET NULL``). The pragma only
    changes outside a transaction, and pysqlite runs DDL outside one (a failure half-way would leave a
    schema no revision describes), so this opens its own; the connection is detached from the pool so
    that it is closed afterwards rather than reused with foreign keys off.
    """
    conn = op.get_bind()
    if conn.dialect.name != "sqlite":
        yield
        return
    fairy = conn.connection
    dbapi = fairy.dbapi_connection
    assert dbapi is not None  # noqa: S101 - a live connection
    if dbapi.in_transaction:  # Alembic commits each revision on SQLite: nothing is open here
        msg = "cannot upgrade: the SQLite connection is inside a transaction, so foreign keys stay on"
        raise RuntimeError(msg)
    fairy.detach()
    dbapi.execute("PRAGMA foreign_keys=OFF")
    dbapi.execute("BEGIN")  # committed (or rolled back) with the revision's version stamp
    yield
    broken = dbapi.execute("PRAGMA foreign_key_check").fetchall()
    if broken:
        msg = f"cannot upgrade: {len(broken)} rows would refer to rows that do not exist ({broken[0]})"
        raise RuntimeError(msg)


def upgrade() -> None:
    """Apply this revision."""
    if _populated():
        # Before any change: the master key is needed, and every address must keep a lookup of its own.
        _refuse_colliding_emails(_ring())
    with _sqlite_atomic_without_foreign_keys():
        _upgrade()


def _upgrade() -> None:
    op.create_table(
        "data_keys",
        sa.Column("subject_id", sa.String(length=32), nullable=False),
        sa.Column("master_key_id", sa.String(length=32), nullable=False),
        sa.Column("wrapped", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("rewrapped_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("subject_id", name=op.f("pk_data_keys")),
    )
    with op.batch_alter_table("data_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_data_keys_master_key_id"), ["master_key_id"], unique=False)
    for table, columns in _SEALED.items():
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("email_lookup", sa.String(length=64), nullable=True))
            for sealed in columns.values():
                batch_op.add_column(sa.Column(sealed, sa.LargeBinary(), nullable=True))
    with op.batch_alter_table("uploads", schema=None) as batch_op:
        batch_op.add_column(sa.Column("file_name_sealed", sa.LargeBinary(), nullable=True))

    _seal_existing_rows()

    for table, columns in _SEALED.items():
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_constraint(f"uq_{table}_email", type_="unique")
            for plain in columns:
                batch_op.drop_column(plain)
            batch_op.alter_column("email_lookup", existing_type=sa.String(length=64), nullable=False)
            batch_op.alter_column("email_sealed", existing_type=sa.LargeBinary(), nullable=False)
            batch_op.alter_column("name_sealed", existing_type=sa.LargeBinary(), nullable=False)
            batch_op.create_unique_constraint(batch_op.f(f"uq_{table}_email_lookup"), ["email_lookup"])
    with op.batch_alter_table("uploads", schema=None) as batch_op:
        batch_op.drop_column("file_name")
        batch_op.alter_column("file_name_sealed", existing_type=sa.LargeBinary(), nullable=False)


def _seal_existing_rows() -> None:
    conn = op.get_bind()
    patients = conn.execute(sa.text("SELECT id, email, name, birthdate FROM patients")).all()
    users = conn.execute(sa.text("SELECT id, email, name, totp_secret FROM users")).all()
    uploads = conn.execute(sa.text("SELECT id, patient_id, file_name, sha256 FROM uploads")).all()
    if not (patients or users or uploads):
        return
    ring = _ring()
    keys: dict[str, bytes] = {}

    def key_of(subject: str) -> bytes:
        if subject not in keys:
            keys[subject] = new_key()
            master_id, wrapped = ring.wrap(keys[subject], subject)
            conn.execute(
                sa.text(
                    "INSERT INTO data_keys (subject_id, master_key_id, wrapped, created_at) "
                    "VALUES (:s, :m, :w, :t)"
                ).bindparams(sa.bindparam("t", type_=UTCDateTime())),
                {"s": subject, "m": master_id, "w": wrapped, "t": utcnow()},
            )
        return keys[subject]

    def sealed(table: str, column: str, row_id: str, subject: str, value: object) -> bytes | None:
        if value is None:
            return None
        text = value.isoformat() if hasattr(value, "isoformat") else str(value)
        return seal(key_of(subject), text.encode(), f"{table}.{column}:{row_id}")

    for table, rows in (("patients", patients), ("users", users)):
        for row in rows:
            row_id = row[0]
            values = {
                sealed_column: sealed(table, sealed_column, row_id, row_id, value)
                for (sealed_column, value) in zip(_SEALED[table].values(), row[1:], strict=True)
            }
            conn.execute(
                sa.text(
                    f"UPDATE {table} SET email_lookup = :lookup, "  # noqa: S608 - table names are constants
                    + ", ".join(f"{c} = :{c}" for c in values)
                    + " WHERE id = :id"
                ).bindparams(*(sa.bindparam(c, type_=sa.LargeBinary()) for c in values)),
                {"lookup": ring.lookup(row[1]), "id": row_id, **values},
            )
    raw_dir: Path | None = context.config.attributes.get("raw_files_dir")
    legacy: list[Path] = context.config.attributes.setdefault("legacy_raw_files", [])
    for upload_id, patient_id, file_name, sha256 in uploads:
        conn.execute(
            sa.text("UPDATE uploads SET file_name_sealed = :f WHERE id = :id").bindparams(
                sa.bindparam("f", type_=sa.LargeBinary())
            ),
            {"f": sealed("uploads", "file_name_sealed", upload_id, patient_id, file_name), "id": upload_id},
        )
        if raw_dir is None:
            continue
        old = raw_dir / sha256[:2] / sha256
        new = raw_dir / patient_id / sha256
        if old.exists():
            # Sealed again even when ``new`` exists: an earlier attempt that rolled back sealed it
            # with a data key that is gone (the plaintext is removed only after this commits).
            new.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            sealed_bytes = seal(key_of(patient_id), old.read_bytes(), f"raw:{patient_id}:{sha256}")
            incoming = new.with_name(f".incoming-{sha256}")
            incoming.write_bytes(sealed_bytes)
            incoming.chmod(0o600)
            incoming.replace(new)
            legacy.append(old)


def downgrade() -> None:
    """Revert this revision (only on a database without accounts or uploads: sealed data stays sealed)."""
    conn = op.get_bind()
    for table in ("patients", "users", "uploads"):
        if conn.execute(sa.text(f"SELECT 1 FROM {table} LIMIT 1")).first() is not None:  # noqa: S608
            msg = f"cannot downgrade: {table} holds sealed data; restore a backup taken before the upgrade"
            raise RuntimeError(msg)
    with op.batch_alter_table("uploads", schema=None) as batch_op:
        batch_op.add_column(sa.Column("file_name", sa.String(length=255), nullable=False))
        batch_op.drop_column("file_name_sealed")
    for table, columns in _SEALED.items():
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_constraint(batch_op.f(f"uq_{table}_email_lookup"), type_="unique")
            batch_op.drop_column("email_lookup")
            for sealed in columns.values():
                batch_op.drop_column(sealed)
            batch_op.add_column(sa.Column("email", sa.String(length=254), nullable=False))
            batch_op.add_column(sa.Column("name", sa.String(length=200), nullable=False))
            third = "birthdate" if table == "patients" else "totp_secret"
            third_type = sa.Date() if table == "patients" else sa.String(length=64)
            batch_op.add_column(sa.Column(third, third_type, nullable=True))
            batch_op.create_unique_constraint(f"uq_{table}_email", ["email"])
    with op.batch_alter_table("data_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_data_keys_master_key_id"))
    op.drop_table("data_keys")

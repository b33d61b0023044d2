"""Migration 0009 on a populated database: plaintext rows and raw files are sealed, nothing is lost.

Each test gets a database of its own that it may migrate up from 0008: a fresh SQLite file, or a
scratch PostgreSQL database (made like ``postgres_database`` in ``tests/conftest.py``, its schema
reset between tests).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, inspect, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session

from glucoshare.accounts.errors import PatientExistsError
from glucoshare.accounts.models import Patient, User
from glucoshare.accounts.service import add_patient, get_patient, validate_patient
from glucoshare.accounts.users import get_user
from glucoshare.config import Settings
from glucoshare.db.base import UTCDateTime
from glucoshare.db.migrate import alembic_config, upgrade
from glucoshare.db.session import create_db_engine, session_scope
from glucoshare.ingest.service import read_raw
from glucoshare.records.models import Record, Upload
from glucoshare.sharing.models import PendingUpload
from glucoshare.sharing.schemas import ClinicCreate
from glucoshare.sharing.service import create_clinic
from glucoshare.vault.cipher import seal
from glucoshare.vault.keyfile import KeyRing, load_or_create
from glucoshare.vault.models import DataKey, SealedFile
from glucoshare.vault.service import data_key, open_file
from tests.conftest import scratch_postgres_database
from tests.kept import kept_places, raw_place, sealed_bytes
from tests.vault.helpers import database_values, leaks

NOW = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
RAW = b"Index,Timestamp\n1,,FirstName,,Adaline\n2,,LastName,,Legacyperson\n3,2025-05-01T00:03:01,EGV,112\n"
SHA = hashlib.sha256(RAW).hexdigest()
MISSING_SHA = hashlib.sha256(b"a file that was never kept").hexdigest()
TOTP = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXQ"

ADA: dict[str, Any] = {
    "id": "a" * 32,
    "email": "adaline.legacyperson@example.org",
    "name": "Adaline Legacyperson",
    "birthdate": dt.date(1915, 12, 10),
}
BORIS: dict[str, Any] = {
    "id": "b" * 32,
    "email": "boris.oldrecord@example.org",
    "name": "Boris Oldrecord",
    "birthdate": None,
}
ADA_USER: dict[str, Any] = {
    "id": "c" * 32,
    "email": ADA["email"],
    "name": "Adaline L.",
    "role": "patient",
    "totp": TOTP,
}
CLINICIAN: dict[str, Any] = {
    "id": "d" * 32,
    "email": "dr.vintage@clinic.example",
    "name": "Dr Vintage",
    "role": "clinician",
}
UPLOADS = [  # (upload id, patient, file name, sha256): Boris uploaded the same file, and one whose raw file is gone
    ("e" * 32, ADA["id"], "Clarity_Export_Legacyperson_Adaline.csv", SHA),
    ("f" * 32, BORIS["id"], "Clarity_Export_Oldrecord_Boris.csv", SHA),
    ("0" * 32, BORIS["id"], "Clarity_Export_Oldrecord_Boris_lost.csv", MISSING_SHA),
]
CANARIES = {
    "patient name": b"Legacyperson",
    "patient e-mail": b"adaline.legacy",
    "birth date": b"1915-12-10",
    "other patient": b"Oldrecord",
    "clinician": b"Vintage",
    "totp secret": TOTP.encode(),
    "user name": b"Adaline L.",
}

JSON = sa.JSON().with_variant(JSONB(), "postgresql")
patients = sa.table(
    "patients",
    *(sa.column(c) for c in ("id", "email", "name", "timezone", "display_units", "user_id")),
    sa.column("birthdate", sa.Date()),
    sa.column("created_at", UTCDateTime()),
)
users = sa.table(
    "users",
    *(sa.column(c) for c in ("id", "email", "name", "role", "totp_secret")),
    sa.column("created_at", UTCDateTime()),
)
devices = sa.table(
    "devices",
    *(sa.column(c) for c in ("seq", "id", "patient_id", "manufacturer", "model", "device_key")),
    sa.column("created_at", UTCDateTime()),
)
uploads = sa.table(
    "uploads",
    *(sa.column(c) for c in ("id", "patient_id", "device_seq", "file_name", "sha256", "size_bytes")),
    *(sa.column(c) for c in ("format", "encoding", "timezone", "uploaded_by")),
    *(sa.column(c) for c in ("new_count", "duplicate_count", "rejected_count")),
    sa.column("created_at", UTCDateTime()),
    sa.column("counts", JSON),
    sa.column("rejected", JSON),
)
records = sa.table(
    "records",
    *(sa.column(c) for c in ("device_seq", "upload_seq", "type", "subtype", "time_ms", "utc_offset_min")),
    *(sa.column(c) for c in ("value", "source_line", "dedup_key")),
)


def _head() -> str:
    engine = create_engine("sqlite://")
    head = ScriptDirectory.from_config(alembic_config(engine)).get_current_head()
    engine.dispose()
    assert head is not None
    return head


def _version(engine: Engine) -> str:
    with engine.connect() as conn:
        return str(conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one())


def _columns(engine: Engine, table: str) -> set[str]:
    with engine.connect() as conn:
        return {c["name"] for c in inspect(conn).get_columns(table)}


@pytest.fixture(scope="module")
def scratch_postgres() -> Iterator[str]:
    """A PostgreSQL database of this module's own (dropped at the end)."""
    with scratch_postgres_database("glucoshare_vault") as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def scratch_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database (no schema at all) the test may migrate as it likes."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'scratch.db'}"
    url: str = request.getfixturevalue("scratch_postgres")
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    return url


@pytest.fixture
def scratch_settings(tmp_path: Path, scratch_url: str) -> Settings:
    return Settings(database_url=scratch_url, data_dir=tmp_path / "data")


@pytest.fixture
def ring(scratch_settings: Settings) -> KeyRing:
    return load_or_create(scratch_settings.effective_secret_key_file)


@pytest.fixture
def keyed_engine(scratch_url: str, ring: KeyRing) -> Iterator[Engine]:
    engine = create_db_engine(scratch_url, keyring=ring)
    yield engine
    engine.dispose()


@pytest.fixture
def keyless_engine(scratch_url: str) -> Iterator[Engine]:
    engine = create_db_engine(scratch_url)
    yield engine
    engine.dispose()


def _legacy_file(raw_dir: Path) -> Path:
    return raw_dir / SHA[:2] / SHA


def _populate_0008(
    engine: Engine, raw_dir: Path, *, extra_patients: list[dict[str, Any]] | None = None
) -> None:
    """Rows and files the way revision 0008 kept them: in plain form, files by content hash."""
    upgrade(engine, "0008")
    with engine.begin() as conn:
        conn.execute(
            users.insert(),
            [
                {
                    **{k: v for k, v in ADA_USER.items() if k != "totp"},
                    "totp_secret": TOTP,
                    "created_at": NOW,
                },
                {**CLINICIAN, "totp_secret": None, "created_at": NOW},
            ],
        )
        conn.execute(
            patients.insert().values(created_at=NOW),
            [
                {**ADA, "timezone": "Europe/Berlin", "display_units": "mg/dL", "user_id": ADA_USER["id"]},
                {**BORIS, "timezone": "UTC", "display_units": "mmol/L", "user_id": None},
                *(extra_patients or []),
            ],
        )
        conn.execute(
            devices.insert(),
            [
                {
                    "seq": 1,
                    "id": "1" * 32,
                    "patient_id": ADA["id"],
                    "manufacturer": "Dexcom",
                    "model": "G6",
                    "device_key": "dexcom:g6:legacy",
                    "created_at": NOW,
                }
            ],
        )
        for upload_id, patient_id, file_name, sha256 in UPLOADS:
            conn.execute(
                uploads.insert(),
                {
                    "id": upload_id,
                    "patient_id": patient_id,
                    "device_seq": 1 if patient_id == ADA["id"] else None,
                    "file_name": file_name,
                    "sha256": sha256,
                    "size_bytes": len(RAW),
                    "format": "dexcom_clarity",
                    "encoding": "utf-8",
                    "timezone": "UTC",
                    "uploaded_by": "cli:legacy",
                    "new_count": 1,
                    "duplicate_count": 0,
                    "rejected_count": 0,
                    "created_at": NOW,
                    "counts": {"cbg": 1},
                    "rejected": [],
                },
            )
        upload_seq = conn.execute(
            text("SELECT seq FROM uploads WHERE id = :i"), {"i": UPLOADS[0][0]}
        ).scalar_one()
        conn.execute(
            records.insert(),
            {
                "device_seq": 1,
                "upload_seq": upload_seq,
                "type": "cbg",
                "subtype": "",
                "time_ms": 1_746_057_781_000,
                "utc_offset_min": 0,
                "value": 112.0,
                "source_line": 3,
                "dedup_key": "",
            },
        )
    legacy = _legacy_file(raw_dir)
    legacy.parent.mkdir(parents=True)
    legacy.write_bytes(RAW)


def _counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            table: int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())
            for table in ("patients", "users", "devices", "uploads", "records")
        }


def test_upgrading_a_populated_database_seals_every_row_and_raw_file(
    keyed_engine: Engine, scratch_settings: Settings, scratch_url: str
) -> None:
    raw_dir = scratch_settings.data_dir / "uploads"
    _populate_0008(keyed_engine, raw_dir)
    before = _counts(keyed_engine)
    upgrade(keyed_engine, data_dir=raw_dir.parent)
    assert _version(keyed_engine) == _head()
    assert _counts(keyed_engine) == before  # nothing lost on the way (devices, uploads, records)
    assert {"email", "name", "birthdate"}.isdisjoint(_columns(keyed_engine, "patients"))
    assert {"email", "name", "totp_secret"}.isdisjoint(_columns(keyed_engine, "users"))
    assert "file_name" not in _columns(keyed_engine, "uploads")
    assert leaks(database_values(keyed_engine), CANARIES) == []

    with Session(keyed_engine) as session:
        ada = get_patient(session, ADA["email"].upper())
        assert (ada.id, ada.name, ada.birthdate, ada.timezone) == (
            ADA["id"],
            ADA["name"],
            ADA["birthdate"],
            "Europe/Berlin",
        )
        assert ada.user_id == ADA_USER["id"]  # the link to the account survived re-creating users
        boris = get_patient(session, " Boris.OldRecord@example.org ")
        assert (boris.name, boris.birthdate, boris.display_units) == (BORIS["name"], None, "mmol/L")
        user = get_user(session, ADA_USER["email"])
        assert (user.id, user.name, user.totp_secret, user.has_second_factor) == (
            ADA_USER["id"],
            ADA_USER["name"],
            TOTP,
            True,
        )
        clinician = get_user(session, "DR.VINTAGE@clinic.example")
        assert (clinician.name, clinician.totp_secret, clinician.has_second_factor) == (
            CLINICIAN["name"],
            None,
            False,
        )
        assert set(session.scalars(sa.select(DataKey.subject_id))) == {
            ADA["id"],
            BORIS["id"],
            ADA_USER["id"],
            CLINICIAN["id"],
        }
        by_id = {u.id: u for u in session.scalars(sa.select(Upload))}
        for upload_id, patient_id, file_name, sha256 in UPLOADS:
            upload = by_id[upload_id]
            assert (upload.patient_id, upload.file_name) == (patient_id, file_name)
            if sha256 == SHA:
                assert read_raw(session, upload) == RAW
                sealed = sealed_bytes(session, raw_place(patient_id, sha256))  # moved in by 0020
                assert sealed is not None
                assert b"Legacyperson" not in sealed
            else:
                assert read_raw(session, upload) is None
        assert session.scalar(sa.select(sa.func.count()).select_from(Record)) == 1
        # The addresses are taken as before: the lookup folds them the way new ones are folded.
        with pytest.raises(PatientExistsError):
            add_patient(session, validate_patient(email="ADALINE.legacyperson@example.org", name="X"))
        session.rollback()

    assert not raw_dir.exists()  # sealed by 0009, moved into the database by 0020, then removed

    # Another process with the key file reads the same.
    fresh = create_db_engine(scratch_url, keyring=load_or_create(scratch_settings.effective_secret_key_file))
    try:
        with session_scope(fresh) as session:
            assert get_patient(session, ADA["email"]).name == ADA["name"]
            user_again = session.get(User, ADA_USER["id"])
        assert user_again is not None
        assert user_again.totp_secret == TOTP
    finally:
        fresh.dispose()


def test_upgrading_an_empty_database_needs_no_master_key(keyless_engine: Engine) -> None:
    upgrade(keyless_engine)
    assert _version(keyless_engine) == _head()
    assert "email_lookup" in _columns(keyless_engine, "patients")


def test_without_a_master_key_a_populated_database_is_refused_and_left_at_0008(
    keyless_engine: Engine, scratch_settings: Settings, scratch_url: str, ring: KeyRing
) -> None:
    raw_dir = scratch_settings.data_dir / "uploads"
    _populate_0008(keyless_engine, raw_dir)
    before = _counts(keyless_engine)
    with pytest.raises(RuntimeError, match=r"needs the master key \(GLUCOSHARE_SECRET_KEY_FILE\)"):
        upgrade(keyless_engine, data_dir=raw_dir.parent)
    assert _version(keyless_engine) == "0008"
    assert {"email", "name", "birthdate"} <= _columns(keyless_engine, "patients")
    assert "email_lookup" not in _columns(keyless_engine, "patients")
    with keyless_engine.connect() as conn:
        assert "data_keys" not in inspect(conn).get_table_names()
    assert _counts(keyless_engine) == before
    assert _legacy_file(raw_dir).read_bytes() == RAW
    # With the key it then goes through.
    keyed = create_db_engine(scratch_url, keyring=ring)
    try:
        upgrade(keyed, data_dir=raw_dir.parent)
        assert _version(keyed) == _head()
        assert _counts(keyed) == before
        with Session(keyed) as session:
            assert get_patient(session, ADA["email"]).name == ADA["name"]
    finally:
        keyed.dispose()


def test_addresses_that_fold_to_one_are_refused_before_anything_changes(
    keyed_engine: Engine, scratch_settings: Settings
) -> None:
    """``strasse`` and ``straße`` were two accounts under the old case-sensitive constraint."""
    raw_dir = scratch_settings.data_dir / "uploads"
    twins = [
        {"id": f"{n}" * 32, "email": email, "name": f"Twin {n}", "birthdate": None}
        | {"timezone": "UTC", "display_units": "mg/dL", "user_id": None}
        for n, email in ((7, "anna@strasse.example"), (8, "anna@straße.example"))
    ]
    _populate_0008(keyed_engine, raw_dir, extra_patients=twins)
    with pytest.raises(RuntimeError, match=f"{'7' * 32} and {'8' * 32}"):
        upgrade(keyed_engine, data_dir=raw_dir.parent)
    assert _version(keyed_engine) == "0008"
    assert "email" in _columns(keyed_engine, "patients")
    assert _legacy_file(raw_dir).read_bytes() == RAW
    assert not (raw_dir / ADA["id"]).exists()
    with keyed_engine.begin() as conn:
        conn.execute(
            text("UPDATE patients SET email = 'anna.b@strasse.example' WHERE id = :i"), {"i": "8" * 32}
        )
    upgrade(keyed_engine, data_dir=raw_dir.parent)
    with Session(keyed_engine) as session:
        assert get_patient(session, "Anna@Strasse.example").name == "Twin 7"
        assert get_patient(session, "anna.b@strasse.example").name == "Twin 8"


def test_a_failed_upgrade_can_be_run_again_and_loses_no_raw_file(
    keyed_engine: Engine, scratch_settings: Settings
) -> None:
    """A failure after the first raw file was sealed: the retry must not keep that file, sealed
    with a data key that the rollback took away, and then delete the plaintext."""
    raw_dir = scratch_settings.data_dir / "uploads"
    _populate_0008(keyed_engine, raw_dir)
    before = _counts(keyed_engine)
    raw_dir.joinpath(BORIS["id"]).write_bytes(b"")  # a stray file where Boris's folder must go
    with pytest.raises(OSError):  # FileExistsError or NotADirectoryError
        upgrade(keyed_engine, data_dir=raw_dir.parent)
    assert _version(keyed_engine) == "0008"
    assert {"email", "name", "birthdate"} <= _columns(keyed_engine, "patients")
    with keyed_engine.connect() as conn:
        assert "data_keys" not in inspect(conn).get_table_names()
    assert _counts(keyed_engine) == before
    assert (raw_dir / ADA["id"] / SHA).exists()  # Ada's file was sealed before the failure
    assert _legacy_file(raw_dir).read_bytes() == RAW
    raw_dir.joinpath(BORIS["id"]).unlink()
    upgrade(keyed_engine, data_dir=raw_dir.parent)
    assert _counts(keyed_engine) == before
    with Session(keyed_engine) as session:
        for upload in session.scalars(sa.select(Upload).where(Upload.sha256 == SHA)):
            assert read_raw(session, upload) == RAW, upload.patient_id
    assert not _legacy_file(raw_dir).exists()


def test_foreign_keys_are_enforced_again_after_the_upgrade(
    keyed_engine: Engine, scratch_settings: Settings
) -> None:
    _populate_0008(keyed_engine, scratch_settings.data_dir / "uploads")
    upgrade(keyed_engine, data_dir=scratch_settings.data_dir)
    with pytest.raises(sa.exc.IntegrityError), keyed_engine.begin() as conn:
        conn.execute(text("UPDATE uploads SET patient_id = 'nobody' WHERE id = :i"), {"i": UPLOADS[0][0]})
    if keyed_engine.dialect.name == "sqlite":
        with keyed_engine.connect() as conn:
            assert conn.execute(text("PRAGMA foreign_keys")).scalar_one() == 1
    with Session(keyed_engine) as session:
        patient = session.get(Patient, ADA["id"])
        assert patient is not None
        assert patient.name == ADA["name"]


def test_upgrading_from_the_first_revisions_keeps_every_row(
    keyed_engine: Engine, scratch_settings: Settings
) -> None:
    """Batch migrations re-create tables on SQLite; with foreign keys on that used to cascade-delete."""
    upgrade(keyed_engine, "0002")
    with keyed_engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO patients (id, email, name, timezone, display_units, created_at, target_scheme) "
                "VALUES ('p1', 'early@example.org', 'Early Bird', 'UTC', 'mg/dL', :t, 'standard')"
            ),
            {"t": "2025-01-01 00:00:00"},
        )
        conn.execute(
            text(
                "INSERT INTO devices (id, patient_id, manufacturer, model, serial, device_key, created_at) "
                "VALUES ('d1', 'p1', 'Dexcom', 'G6', 'SN1', 'k1', :t)"
            ),
            {"t": "2025-01-01 00:00:00"},
        )
    upgrade(keyed_engine, data_dir=scratch_settings.data_dir)
    with keyed_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM devices")).scalar() == 1
        assert conn.execute(text("SELECT patient_id FROM devices")).scalar() == "p1"
    with session_scope(keyed_engine) as session:
        assert get_patient(session, "EARLY@example.org").name == "Early Bird"


def test_0020_moves_kept_files_into_the_database_and_then_removes_them(
    keyed_engine: Engine, scratch_settings: Settings
) -> None:
    """Raw uploads and held clinic uploads, sealed in the data folder, become rows as they are."""
    upgrade(keyed_engine, "0019")
    data_dir = scratch_settings.data_dir
    held = b"a held clinic upload\n"
    with session_scope(keyed_engine) as session:
        patient = add_patient(session, validate_patient(email="kept@example.org", name="Kept Files"))
        clinic = create_clinic(session, ClinicCreate(name="Old Folder Clinic"), founder=None, actor="test")
        pending = PendingUpload(
            clinic_id=clinic.id,
            sha256=hashlib.sha256(held).hexdigest(),
            size_bytes=len(held),
            format="dexcom_clarity",
            timezone="UTC",
            uploaded_by="test",
        )
        pending.file_name = "held.csv"
        session.add(pending)
        gone = PendingUpload(
            clinic_id=clinic.id, sha256="0" * 64, size_bytes=1, format="dexcom_clarity", timezone="UTC"
        )
        gone.file_name, gone.uploaded_by = "lost.csv", "test"
        session.add(gone)
        for sha256, file_name in ((SHA, "kept.csv"), (MISSING_SHA, "lost.csv")):
            upload = Upload(
                patient_id=patient.id,
                sha256=sha256,
                size_bytes=len(RAW),
                format="dexcom_clarity",
                encoding="utf-8",
                timezone="UTC",
                uploaded_by="test",
            )
            upload.file_name = file_name
            session.add(upload)
        session.flush()
        ids = (patient.id, clinic.id, pending.id, gone.id)
        files = {
            data_dir / "uploads" / patient.id / SHA: seal(
                data_key(session, patient.id), RAW, f"raw:{patient.id}:{SHA}"
            ),
            data_dir / "pending" / clinic.id / pending.id: seal(
                data_key(session, clinic.id), held, f"pending:{clinic.id}:{pending.id}"
            ),
        }
    for path, sealed in files.items():
        path.parent.mkdir(parents=True)
        path.write_bytes(sealed)
    (data_dir / "unrelated.txt").write_text("left alone")
    patient_id, clinic_id, pending_id, gone_id = ids

    upgrade(keyed_engine, data_dir=data_dir)

    assert _version(keyed_engine) == _head()
    with session_scope(keyed_engine) as session:
        assert kept_places(session) == {f"raw:{patient_id}:{SHA}", f"pending:{clinic_id}:{pending_id}"}
        for upload in session.scalars(sa.select(Upload).where(Upload.patient_id == patient_id)):
            assert read_raw(session, upload) == (RAW if upload.sha256 == SHA else None)
        assert open_file(session, clinic_id, f"pending:{clinic_id}:{pending_id}") == held
        assert open_file(session, clinic_id, f"pending:{clinic_id}:{gone_id}") is None
        sizes = {
            place: size for place, size in session.execute(sa.select(SealedFile.place, SealedFile.size_bytes))
        }
        assert sizes == {f"raw:{patient_id}:{SHA}": len(RAW), f"pending:{clinic_id}:{pending_id}": len(held)}
    assert sorted(p.relative_to(data_dir).as_posix() for p in data_dir.rglob("*")) == [
        "master.key",
        "unrelated.txt",
    ]

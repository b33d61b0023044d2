"""Sealed columns on both databases: nothing identifying is stored in plain form, values are bound
to their row and column, lookups by e-mail work, and erasing a patient destroys their keys."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from glucoshare.accounts.errors import PatientNotFoundError
from glucoshare.accounts.models import Patient, User
from glucoshare.accounts.service import get_patient, list_patients, patient_emails
from glucoshare.accounts.users import get_user
from glucoshare.config import Settings
from glucoshare.db.checkpoint import CHECKPOINTER
from glucoshare.db.session import create_db_engine, session_scope
from glucoshare.ingest.service import erase_patient, read_raw
from glucoshare.records.models import Upload
from glucoshare.simulator.timeline import Timeline
from glucoshare.vault.errors import SealBrokenError, WrongMasterKeyError
from glucoshare.vault.keyfile import load_or_create
from glucoshare.vault.models import DataKey
from tests.kept import kept_places, raw_place, sealed_bytes
from tests.vault.helpers import (
    FILE_NAME,
    PATIENT_BIRTHDATE,
    PATIENT_EMAIL,
    PATIENT_NAME,
    USER_EMAIL,
    USER_NAME,
    Stored,
    add_other_patient,
    as_bytes,
    clarity,
    database_values,
    leaks,
    populate,
    reload,
    small_timeline,
)


@pytest.fixture(scope="module")
def timeline() -> Timeline:
    return small_timeline()


@pytest.fixture
def stored(engine: Engine, settings: Settings, timeline: Timeline) -> Stored:
    """The canary patient, their account and their upload, committed."""
    with session_scope(engine) as session:
        return populate(session, settings, timeline)


def test_the_export_itself_carries_the_canaries(timeline: Timeline) -> None:
    """Guards the other tests: the file imported really names the patient."""
    data = clarity(timeline).data
    assert b"Quillon" in data
    assert b"Vexhammer" in data


def test_no_identifying_value_is_stored_in_plain_form(engine: Engine, stored: Stored) -> None:
    with engine.connect() as conn:
        for table in ("patients", "users", "uploads", "data_keys"):
            rows = conn.execute(text(f"SELECT * FROM {table}")).all()
            assert rows, table
            assert leaks((as_bytes(v) for row in rows for v in row), stored.canaries()) == [], table
    assert leaks(database_values(engine), stored.canaries()) == []


def test_the_sealed_columns_hold_sealed_values(engine: Engine, stored: Stored) -> None:
    with engine.connect() as conn:
        patient = conn.execute(
            text("SELECT email_lookup, email_sealed, name_sealed, birthdate_sealed FROM patients")
        ).one()
        user = conn.execute(text("SELECT email_lookup, totp_secret_sealed FROM users")).one()
        upload = conn.execute(text("SELECT file_name_sealed FROM uploads")).one()
        keys = {row.subject_id: row.master_key_id for row in conn.execute(text("SELECT * FROM data_keys"))}
    for sealed in (*patient[1:], user[1], upload[0]):
        assert as_bytes(sealed)[:1] == b"\x01"
        assert len(as_bytes(sealed)) > 29
    assert len(patient.email_lookup) == len(user.email_lookup) == 64
    assert patient.email_lookup != user.email_lookup
    assert set(keys) == {stored.patient_id, stored.user_id}  # one data key per subject
    assert len(set(keys.values())) == 1


@pytest.fixture
def sqlite_only(database_url: str) -> None:
    if not database_url.startswith("sqlite"):
        pytest.skip("the database files are PostgreSQL's to manage")


def test_the_sqlite_file_and_its_wal_hold_no_identifying_value(
    sqlite_only: None, engine: Engine, stored: Stored, database_url: str
) -> None:
    with engine.connect() as conn:
        conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
    assert CHECKPOINTER.drain(30)  # the process's checkpoint thread touches no file while they are read
    database = Path(make_url(database_url).database or "")
    files = sorted(database.parent.glob(database.name + "*"))
    assert database in files
    for path in files:
        assert leaks([path.read_bytes()], stored.canaries()) == [], path.name
    engine.dispose()  # closing the last connection folds the WAL into the file again
    assert CHECKPOINTER.drain(30)
    for path in sorted(database.parent.glob(database.name + "*")):
        assert leaks([path.read_bytes()], stored.canaries()) == [], path.name


def test_the_orm_reads_the_plain_values(engine: Engine, stored: Stored, settings: Settings) -> None:
    with Session(engine) as session:
        patient, user = reload(session, stored)
        assert (patient.email, patient.name, patient.birthdate) == (
            PATIENT_EMAIL,
            PATIENT_NAME,
            PATIENT_BIRTHDATE,
        )
        assert (user.email, user.name, user.totp_secret) == (USER_EMAIL, USER_NAME, stored.totp_secret)
        assert user.has_second_factor
        upload = session.scalars(select(Upload)).one()
        assert upload.file_name == FILE_NAME
        raw = read_raw(session, upload)
        assert raw is not None
        assert b"Vexhammer" in raw
        sealed_file = sealed_bytes(session, raw_place(stored.patient_id, stored.sha256))
        assert sealed_file is not None
        assert b"Vexhammer" not in sealed_file
        assert patient_emails(session, [stored.patient_id]) == {stored.patient_id: PATIENT_EMAIL}
        assert [p.email for p in list_patients(session)] == [PATIENT_EMAIL]


def test_a_patient_is_found_by_email_in_any_case(engine: Engine, stored: Stored) -> None:
    with Session(engine) as session:
        for ref in (
            PATIENT_EMAIL,
            PATIENT_EMAIL.upper(),
            f"  {PATIENT_EMAIL.title()}\t",
            "ZEBULON.Vexhammer-Canary@EXAMPLE.ORG",
        ):
            assert get_patient(session, ref).id == stored.patient_id, ref
        assert get_patient(session, stored.patient_id).name == PATIENT_NAME
        assert get_user(session, USER_EMAIL.upper()).id == stored.user_id
        for unknown in ("nobody@example.org", PATIENT_EMAIL + ".com", USER_EMAIL):
            with pytest.raises(PatientNotFoundError):
                get_patient(session, unknown)


def test_a_sealed_value_copied_into_another_row_does_not_open(session: Session) -> None:
    alice = add_other_patient(session, "alice@example.org", "Alice Example")
    bob = add_other_patient(session, "bob@example.org", "Bob Example")
    alice_id, bob_id = alice.id, bob.id
    session.execute(
        text(
            "UPDATE patients SET name_sealed = (SELECT name_sealed FROM patients WHERE id = :a) WHERE id = :b"
        ),
        {"a": alice_id, "b": bob_id},
    )
    session.expunge_all()  # forget the plain values read so far
    bob_again = session.get(Patient, bob_id)
    assert bob_again is not None
    with pytest.raises(SealBrokenError, match=r"patients\.name_sealed"):
        _ = bob_again.name
    assert bob_again.email == "bob@example.org"  # the other columns are untouched
    alice_again = session.get(Patient, alice_id)
    assert alice_again is not None
    assert alice_again.name == "Alice Example"


def test_a_sealed_value_moved_to_another_column_of_its_row_does_not_open(session: Session) -> None:
    """Same row, same data key: only the column bound into the seal tells them apart."""
    carol_id = add_other_patient(session, "carol@example.org", "Carol Example").id
    session.execute(text("UPDATE patients SET name_sealed = email_sealed WHERE id = :c"), {"c": carol_id})
    session.expunge_all()
    carol = session.get(Patient, carol_id)
    assert carol is not None
    with pytest.raises(SealBrokenError):
        _ = carol.name
    assert carol.email == "carol@example.org"


def test_a_tampered_sealed_value_does_not_open(session: Session) -> None:
    dave_id = add_other_patient(session, "dave@example.org", "Dave Example").id
    sealed = session.scalars(select(Patient.name_sealed).where(Patient.id == dave_id)).one()
    damaged = bytearray(sealed)
    damaged[-1] ^= 0x01
    session.execute(update(Patient).where(Patient.id == dave_id).values(name_sealed=bytes(damaged)))
    session.expunge_all()
    dave = session.get(Patient, dave_id)
    assert dave is not None
    with pytest.raises(SealBrokenError):
        _ = dave.name


def test_objects_stay_readable_after_their_session_scope_closed(engine: Engine, stored: Stored) -> None:
    with session_scope(engine) as session:
        patient = get_patient(session, PATIENT_EMAIL)  # loaded, no sealed value read yet
        user = session.get(User, stored.user_id)
        upload = session.scalars(select(Upload)).one()
    assert user is not None
    assert (patient.name, patient.email, patient.birthdate) == (
        PATIENT_NAME,
        PATIENT_EMAIL,
        PATIENT_BIRTHDATE,
    )
    assert (user.name, user.email, user.totp_secret) == (USER_NAME, USER_EMAIL, stored.totp_secret)
    assert upload.file_name == FILE_NAME


def test_values_set_before_the_object_joined_a_session_are_sealed(engine: Engine) -> None:
    patient = Patient(email="erin@example.org", name="Erin Example", timezone="UTC", display_units="mg/dL")
    assert patient.name == "Erin Example"  # readable before it is stored
    with session_scope(engine) as session:
        session.add(patient)
    with engine.connect() as conn:
        sealed = conn.execute(text("SELECT name_sealed, email_lookup FROM patients")).one()
    assert b"Erin" not in as_bytes(sealed[0])
    with Session(engine) as session:
        again = get_patient(session, "ERIN@example.org")
        assert again.name == "Erin Example"
        assert again.birthdate is None
        assert again.birthdate_sealed is None


def test_a_changed_value_is_sealed_again(engine: Engine, stored: Stored) -> None:
    with session_scope(engine) as session:
        patient = get_patient(session, PATIENT_EMAIL)
        patient.name = "Renamed Person"
        patient.email = "renamed@example.org"
        patient.birthdate = None
    with Session(engine) as session:
        again = get_patient(session, "Renamed@example.org")
        assert (again.name, again.birthdate) == ("Renamed Person", None)
        assert again.birthdate_sealed is None
        with pytest.raises(PatientNotFoundError):
            get_patient(session, PATIENT_EMAIL)


def test_another_master_key_cannot_read_the_database(
    engine: Engine, stored: Stored, database_url: str, tmp_path: Path
) -> None:
    stranger = create_db_engine(database_url, keyring=load_or_create(tmp_path / "another.key"))
    try:
        with Session(stranger) as session:
            patient = session.get(Patient, stored.patient_id)
            assert patient is not None
            with pytest.raises(WrongMasterKeyError):
                _ = patient.name
            # The lookup key differs too: the address does not find the patient.
            with pytest.raises(PatientNotFoundError):
                get_patient(session, PATIENT_EMAIL)
    finally:
        stranger.dispose()


def _data_key_subjects(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.execute(text("SELECT subject_id FROM data_keys")).scalars())


def test_erasing_a_patient_destroys_their_and_their_accounts_data_keys_and_raw_files(
    engine: Engine, stored: Stored, settings: Settings
) -> None:
    with session_scope(engine) as session:
        other = add_other_patient(session, "frank@example.org", "Frank Example")
        other_id = other.id
    assert kept_places(engine, stored.patient_id) == {raw_place(stored.patient_id, stored.sha256)}
    assert _data_key_subjects(engine) == {stored.patient_id, stored.user_id, other_id}
    with session_scope(engine) as session:
        patient = get_patient(session, PATIENT_EMAIL)
        erasure = erase_patient(session, patient=patient, actor="test")
    assert (erasure.uploads, erasure.raw_files) == (1, 1)
    assert _data_key_subjects(engine) == {other_id}
    assert kept_places(engine) == set()
    with Session(engine) as session:
        assert session.get(Patient, stored.patient_id) is None
        assert session.get(User, stored.user_id) is None
        assert session.get(DataKey, stored.patient_id) is None
        assert get_patient(session, "frank@example.org").name == "Frank Example"


def test_erasing_a_patient_whose_uploads_the_transaction_loaded(
    engine: Engine, stored: Stored, settings: Settings
) -> None:
    """Objects of the erased patient still in the session must not stop the commit."""
    with session_scope(engine) as session:
        patient = get_patient(session, PATIENT_EMAIL)
        uploads = session.scalars(select(Upload)).all()  # loaded, file names not read
        assert len(uploads) == 1
        erase_patient(session, patient=patient, actor="test")
    assert _data_key_subjects(engine) == set()
    assert kept_places(engine) == set()

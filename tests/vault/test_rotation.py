"""Master-key rotation: every data key re-wrapped, old keys retired, interruptions lose nothing."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from glucoshare.accounts.service import get_patient
from glucoshare.accounts.users import get_user
from glucoshare.audit.models import AuditEvent
from glucoshare.audit.service import verify_chain
from glucoshare.cli import app
from glucoshare.config import Settings
from glucoshare.db.session import create_db_engine, session_scope
from glucoshare.ingest.service import read_raw
from glucoshare.records.models import Upload
from glucoshare.simulator.timeline import Timeline
from glucoshare.vault.errors import WrongMasterKeyError
from glucoshare.vault.keyfile import KeyRing, load_or_create
from glucoshare.vault.service import bound_keyring, retire_master_keys, rotate_master_key
from tests.vault.helpers import (
    FILE_NAME,
    PATIENT_BIRTHDATE,
    PATIENT_EMAIL,
    PATIENT_NAME,
    USER_EMAIL,
    USER_NAME,
    Stored,
    add_other_patient,
    populate,
    small_timeline,
)

runner = CliRunner()


class SimulatedCrashError(Exception):
    """Stands for a crash between re-wrapping and committing."""


@pytest.fixture(scope="module")
def timeline() -> Timeline:
    return small_timeline(seed=9)


@pytest.fixture
def stored(engine: Engine, settings: Settings, timeline: Timeline) -> Stored:
    with session_scope(engine) as session:
        stored = populate(session, settings, timeline)
        add_other_patient(session, "grace@example.org", "Grace Example")
    return stored


@pytest.fixture
def key_file(settings: Settings, keyring: KeyRing) -> Path:
    """The installation's key file (the ``engine`` fixture holds its ring)."""
    return settings.effective_secret_key_file


def _wrapping_keys(engine: Engine) -> dict[str, str]:
    with engine.connect() as conn:
        return {r.subject_id: r.master_key_id for r in conn.execute(text("SELECT * FROM data_keys"))}


def _key_ids(path: Path) -> list[str]:
    return [k["id"] for k in json.loads(path.read_text(encoding="utf-8"))["keys"]]


EngineFactory = Callable[[], Engine]


@pytest.fixture
def fresh_engine(database_url: str, key_file: Path) -> Iterator[EngineFactory]:
    """Another process starting now: the key ring read from the file, a new engine."""
    engines: list[Engine] = []

    def make() -> Engine:
        engine = create_db_engine(database_url, keyring=load_or_create(key_file))
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.dispose()


def _assert_everything_opens(engine: Engine, stored: Stored, settings: Settings) -> None:
    with Session(engine) as session:
        patient = get_patient(session, PATIENT_EMAIL.upper())
        assert (patient.name, patient.birthdate) == (PATIENT_NAME, PATIENT_BIRTHDATE)
        user = get_user(session, USER_EMAIL)
        assert (user.name, user.totp_secret) == (USER_NAME, stored.totp_secret)
        assert get_patient(session, "grace@example.org").name == "Grace Example"
        upload = session.scalars(select(Upload)).one()
        assert upload.file_name == FILE_NAME
        raw = read_raw(session, upload)
        assert raw is not None
        assert b"Vexhammer" in raw


def test_rotation_rewraps_every_data_key_and_retires_the_old_key(
    engine: Engine,
    stored: Stored,
    settings: Settings,
    key_file: Path,
    keyring: KeyRing,
    fresh_engine: EngineFactory,
) -> None:
    old_id = keyring.primary.id
    assert set(_wrapping_keys(engine).values()) == {old_id}
    subjects = set(_wrapping_keys(engine))
    assert len(subjects) == 3  # the patient, their account, the other patient
    with session_scope(engine) as session:
        rotation = rotate_master_key(session, key_file)
    assert rotation.rewrapped == 3
    assert rotation.master_key != old_id
    assert _key_ids(key_file) == [rotation.master_key, old_id]
    assert key_file.stat().st_mode & 0o777 == 0o600
    with session_scope(engine) as session:
        retired = retire_master_keys(session, key_file)
    assert retired == [old_id]
    assert _key_ids(key_file) == [rotation.master_key]
    assert key_file.stat().st_mode & 0o777 == 0o600
    wrapping = _wrapping_keys(engine)
    assert set(wrapping) == subjects
    assert set(wrapping.values()) == {rotation.master_key}
    ring = load_or_create(key_file)
    assert ring.lookup_key == keyring.lookup_key  # e-mail lookups keep working without a rehash
    bound = bound_keyring(engine)
    assert bound is not None
    assert [k.id for k in bound.keys] == [rotation.master_key]
    _assert_everything_opens(engine, stored, settings)  # the engine that rotated
    _assert_everything_opens(fresh_engine(), stored, settings)  # a process started afterwards
    # The old key alone no longer opens anything.
    stale = create_db_engine(engine.url.render_as_string(hide_password=False), keyring=keyring)
    try:
        with Session(stale) as session, pytest.raises(WrongMasterKeyError):
            _ = get_patient(session, PATIENT_EMAIL).name
    finally:
        stale.dispose()
    # Nothing to retire a second time.
    with session_scope(engine) as session:
        assert retire_master_keys(session, key_file) == []
    assert _key_ids(key_file) == [rotation.master_key]


def test_new_data_keys_after_a_rotation_are_wrapped_by_the_new_key(
    engine: Engine, stored: Stored, key_file: Path, fresh_engine: EngineFactory
) -> None:
    with session_scope(engine) as session:
        rotation = rotate_master_key(session, key_file)
    with session_scope(engine) as session:
        henry_id = add_other_patient(session, "henry@example.org", "Henry Example").id
    assert _wrapping_keys(engine)[henry_id] == rotation.master_key
    with session_scope(engine) as session:
        retire_master_keys(session, key_file)
    with Session(fresh_engine()) as session:
        assert get_patient(session, "henry@example.org").name == "Henry Example"


def test_an_interrupted_rotation_loses_nothing_and_can_be_run_again(
    engine: Engine,
    stored: Stored,
    settings: Settings,
    key_file: Path,
    keyring: KeyRing,
    fresh_engine: EngineFactory,
) -> None:
    old_id = keyring.primary.id
    with pytest.raises(SimulatedCrashError), session_scope(engine) as session:
        first = rotate_master_key(session, key_file)
        raise SimulatedCrashError
    # The new key is in the file, in front; the data keys are still wrapped by the old one.
    assert _key_ids(key_file) == [first.master_key, old_id]
    assert set(_wrapping_keys(engine).values()) == {old_id}
    _assert_everything_opens(engine, stored, settings)
    _assert_everything_opens(fresh_engine(), stored, settings)
    # Retiring now would strand every data key: it refuses to remove anything.
    with session_scope(engine) as session:
        assert retire_master_keys(session, key_file) == []
    assert _key_ids(key_file) == [first.master_key, old_id]
    # Running it again completes.
    with session_scope(engine) as session:
        second = rotate_master_key(session, key_file)
    assert second.rewrapped == 3
    assert _key_ids(key_file) == [second.master_key, first.master_key, old_id]
    with session_scope(engine) as session:
        assert sorted(retire_master_keys(session, key_file)) == sorted([first.master_key, old_id])
    assert _key_ids(key_file) == [second.master_key]
    assert set(_wrapping_keys(engine).values()) == {second.master_key}
    _assert_everything_opens(fresh_engine(), stored, settings)


def test_a_rotation_interrupted_before_retiring_is_finished_by_retiring(
    engine: Engine,
    stored: Stored,
    settings: Settings,
    key_file: Path,
    keyring: KeyRing,
    fresh_engine: EngineFactory,
) -> None:
    """Committed re-wrap, crash before the old key left the file: both keys stay until retired."""
    with session_scope(engine) as session:
        rotation = rotate_master_key(session, key_file)
    assert _key_ids(key_file) == [rotation.master_key, keyring.primary.id]
    _assert_everything_opens(fresh_engine(), stored, settings)
    with session_scope(fresh_engine()) as session:
        assert retire_master_keys(session, key_file) == [keyring.primary.id]
    _assert_everything_opens(fresh_engine(), stored, settings)


def test_cli_keys_rotate_prints_the_rotation_and_audits_it(
    cli_env: Settings, engine: Engine, stored: Stored, keyring: KeyRing, fresh_engine: EngineFactory
) -> None:
    old_id = keyring.primary.id
    result = runner.invoke(app, ["keys", "rotate", "--json"])
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert set(document) == {"master_key", "rewrapped", "retired"}
    assert document["rewrapped"] == 3
    assert document["retired"] == [old_id]
    assert document["master_key"] not in (old_id, None)
    key_file = cli_env.effective_secret_key_file
    assert _key_ids(key_file) == [document["master_key"]]
    assert key_file.stat().st_mode & 0o777 == 0o600
    fresh = fresh_engine()
    _assert_everything_opens(fresh, stored, cli_env)
    with Session(fresh) as session:
        events = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "vault:master-key:rotate")
        ).all()
        assert len(events) == 1
        (event,) = events
        assert event.target == document["master_key"]
        assert event.details == {"rewrapped": 3}
        assert event.actor.startswith("cli")
        assert event.patient_id is None
        assert verify_chain(session).intact
    assert set(_wrapping_keys(fresh).values()) == {document["master_key"]}
    # In text form too, and again: another new key, the previous one retired.
    again = runner.invoke(app, ["keys", "rotate"])
    assert again.exit_code == 0, again.stderr
    assert "3 data keys re-wrapped" in again.stdout
    assert "1 old keys removed" in again.stdout
    (newest,) = _key_ids(key_file)
    assert newest != document["master_key"]
    _assert_everything_opens(fresh_engine(), stored, cli_env)


def test_cli_keys_rotate_on_an_empty_database(cli_env: Settings, keyring: KeyRing) -> None:
    result = runner.invoke(app, ["keys", "rotate", "--json"])
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert (document["rewrapped"], document["retired"]) == (0, [keyring.primary.id])
    assert _key_ids(cli_env.effective_secret_key_file) == [document["master_key"]]


def test_a_running_server_follows_a_rotation_made_by_another_process(
    stored: Stored, database_url: str, settings: Settings
) -> None:
    key_file = settings.effective_secret_key_file
    server = create_db_engine(database_url, keyring=load_or_create(key_file), key_file=key_file)
    operator = create_db_engine(database_url, keyring=load_or_create(key_file), key_file=key_file)
    try:
        with session_scope(operator) as session:
            rotation = rotate_master_key(session, key_file)
        with session_scope(operator) as session:
            assert retire_master_keys(session, key_file)
        ring = bound_keyring(server)
        assert ring is not None
        assert [k.id for k in ring.keys] == [rotation.master_key]  # read again from the changed file
        with session_scope(server) as session:
            assert get_patient(session, PATIENT_EMAIL).name == PATIENT_NAME
            add_other_patient(session, "after@example.org", "After Rotation")
        with session_scope(operator) as session:
            assert get_patient(session, "after@example.org").name == "After Rotation"
            wrapped_by = session.execute(text("SELECT DISTINCT master_key_id FROM data_keys")).scalars().all()
            assert wrapped_by == [rotation.master_key]
    finally:
        server.dispose()
        operator.dispose()

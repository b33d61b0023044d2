"""Shared fixtures: real SQLite and real PostgreSQL databases, settings, and the CLI runner.

Every test that takes ``engine`` (or anything built on it) runs twice: on SQLite and on PostgreSQL.
PostgreSQL comes from ``GLUCOSHARE_TEST_POSTGRES_URL`` (default: the local server with trust auth);
each test session makes a fresh database and drops it at the end. When the server is missing the
PostgreSQL half is skipped with the reason, unless ``GLUCOSHARE_TEST_REQUIRE_POSTGRES=1`` (as in
``.ci/run``), which turns the skip into a failure.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from sqlalchemy import Engine, create_engine, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from glucoshare.config import Settings, get_settings
from glucoshare.db.migrate import upgrade
from glucoshare.db.models import Base
from glucoshare.db.session import create_db_engine
from glucoshare.vault.keyfile import KeyRing, load_or_create

# The shared test helpers assert too: show their failures in detail, as in the tests themselves.
pytest.register_assert_rewrite("tests.ingest.helpers")

hypothesis_settings.register_profile(
    "fast", max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
hypothesis_settings.register_profile(
    "thorough", max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
hypothesis_settings.register_profile(  # make fuzz: 1,000 damaged files per layout (tests/fuzz)
    "fuzz", max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "fast"))

DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
REQUIRE_POSTGRES = os.environ.get("GLUCOSHARE_TEST_REQUIRE_POSTGRES") == "1"
SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples"


def _postgres_server_url() -> str:
    return os.environ.get("GLUCOSHARE_TEST_POSTGRES_URL", DEFAULT_POSTGRES)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An SQLite file with the migrated schema, copied for every test."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    engine = create_db_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()
    return path


@contextlib.contextmanager
def scratch_postgres_database(prefix: str) -> Iterator[str]:
    """A new, empty PostgreSQL database (dropped at the end); skipped (or failed, when required)
    when the server cannot be reached."""
    server = make_url(_postgres_server_url())
    name = f"{prefix}_{os.environ.get('PYTEST_XDIST_WORKER', 'main')}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001 - any failure to reach the server means "no PostgreSQL"
        admin.dispose()
        reason = (
            f"PostgreSQL not reachable at {server.render_as_string(hide_password=True)}: {type(exc).__name__}"
        )
        if REQUIRE_POSTGRES:
            pytest.fail(reason + " (GLUCOSHARE_TEST_REQUIRE_POSTGRES=1)")
        pytest.skip(reason)
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this test session (worker); dropped at the end."""
    with scratch_postgres_database("glucoshare_test") as url:
        engine = create_db_engine(url)
        upgrade(engine)
        engine.dispose()
        yield url


def _truncate_all(engine: Engine) -> None:
    queue = [t for t in inspect(engine).get_table_names() if t.startswith("procrastinate_")]
    tables = [t.name for t in Base.metadata.sorted_tables] + queue
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE"))


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path) -> Iterator[str]:
    """The URL of an empty, migrated database; the test runs once per engine."""
    if request.param == "sqlite":
        path = tmp_path / "glucoshare.db"
        shutil.copyfile(sqlite_template, path)
        yield f"sqlite:///{path}"
        return
    url: str = request.getfixturevalue("postgres_database")
    yield url
    engine = create_engine(url)
    _truncate_all(engine)
    engine.dispose()


@pytest.fixture
def keyring(settings: Settings) -> KeyRing:
    """The test installation's master key (the same file the CLI under test reads)."""
    return load_or_create(settings.effective_secret_key_file)


@pytest.fixture
def engine(database_url: str, keyring: KeyRing) -> Iterator[Engine]:
    """An engine on the test database, with the installation's master key."""
    db = create_db_engine(database_url, keyring=keyring)
    yield db
    db.dispose()


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    """A session for service tests; the test decides whether to commit."""
    with Session(engine, expire_on_commit=False) as db_session:
        yield db_session
        db_session.rollback()


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    """Settings pointing at the test database and a private data directory."""
    return Settings(database_url=database_url, data_dir=tmp_path / "data")


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> Iterator[Settings]:
    """Environment for in-process CLI runs against the test database."""
    from glucoshare.cli import runtime  # noqa: PLC0415 - imported late so settings are not cached early

    monkeypatch.setenv("GLUCOSHARE_DATABASE_URL", settings.effective_database_url)
    monkeypatch.setenv("GLUCOSHARE_DATA_DIR", str(settings.data_dir))
    get_settings.cache_clear()
    runtime.engine.cache_clear()
    yield settings
    if runtime.engine.cache_info().currsize:
        runtime.engine().dispose()
    runtime.engine.cache_clear()
    get_settings.cache_clear()


def table_snapshot(engine: Engine) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table, sorted: compare before and after to prove nothing changed."""
    snapshot: dict[str, list[tuple[object, ...]]] = {}
    with engine.connect() as conn:
        for name in inspect(conn).get_table_names():
            rows = conn.execute(text(f'SELECT * FROM "{name}"')).all()
            snapshot[name] = sorted((tuple(r) for r in rows), key=repr)
    return snapshot

"""A backup taken while the server writes holds the database of one moment, on both engines."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path

from sqlalchemy import Engine

from glucoshare.accounts.service import get_patient
from glucoshare.backup.service import write_backup
from glucoshare.backup.snapshot import snapshot_session
from glucoshare.config import Settings
from glucoshare.db.session import session_scope
from glucoshare.ingest.schemas import IncomingFile
from glucoshare.ingest.service import import_file
from glucoshare.simulator import simulate
from glucoshare.simulator.writers.dexcom_clarity import write_clarity
from tests.backup.conftest import restore_target
from tests.backup.world import Install, dump, run, run_json
from tests.ingest.helpers import profile

EMAIL = "kim@example.org"


def _clarity(seed: int, start: dt.date) -> IncomingFile:
    export = write_clarity(simulate(profile(seed=seed), start=start, days=3))
    return IncomingFile(export.file_name, export.data)


def test_an_import_that_commits_during_a_backup_is_not_in_it(
    cli_env: Settings, engine: Engine, database_url: str, tmp_path: Path
) -> None:
    source = Install(database_url, cli_env.data_dir, cli_env.effective_secret_key_file)
    run_json(source, "patients", "add", "--email", EMAIL, "--name", "Kim Lee")
    first = tmp_path / "first.csv"
    first.write_bytes(_clarity(seed=3, start=dt.date(2025, 3, 1)).data)
    run_json(source, "import", str(first), "--patient", EMAIL)
    before = dump(database_url)
    later = _clarity(seed=4, start=dt.date(2025, 4, 1))
    failures: list[BaseException] = []
    committed = threading.Event()

    def import_meanwhile() -> None:
        try:
            with session_scope(engine) as session:
                patient = get_patient(session, EMAIL)
                import_file(
                    session, settings=cli_env, patient=patient, incoming=later, timezone=None, actor="test"
                )
            committed.set()
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
            failures.append(exc)

    def progress(_phase: str, done: int, _total: int) -> None:
        # After the first rows were read, another connection imports a file and commits.
        if done and not committed.is_set() and not failures:
            writer = threading.Thread(target=import_meanwhile)
            writer.start()
            writer.join()

    backup = tmp_path / "during.glucoshare-backup"
    with backup.open("wb") as sink, snapshot_session(engine) as snapshot:
        manifest = write_backup(snapshot, sink, progress=progress)
    assert failures == []
    assert committed.is_set()
    now = dump(database_url)
    assert len(now["records"]) > len(before["records"])
    assert len(now["uploads"]) == len(before["uploads"]) + 1

    assert manifest.counts == {name: len(rows) for name, rows in before.items()}
    assert manifest.audit.events == len(before["audit_events"])
    target = restore_target(f"sqlite:///{tmp_path / 'restored.db'}", tmp_path / "restored", source.key_file)
    restored = run_json(target, "restore", str(backup))
    assert restored["counts"] == manifest.counts
    rows = dump(target.url)
    events = rows.pop("audit_events")
    assert rows == {name: table for name, table in before.items() if name != "audit_events"}
    assert events[:-1] == before["audit_events"]
    assert run(target, "audit", "verify")[0] == 0

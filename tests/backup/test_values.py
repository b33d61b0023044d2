"""Values that are easy to get wrong survive a backup and restore on both engines and across them."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import JSON, Engine, null, select, update

from glucoshare.accounts.models import ApiToken
from glucoshare.audit.service import record_event
from glucoshare.audit.tags import AuditTag
from glucoshare.config import Settings
from glucoshare.db.session import session_scope
from tests.backup.conftest import fresh_database, restore_target
from tests.backup.world import Install, dump, run, run_json

AWKWARD = {
    "text": 'Zürich "Süd"\nline two\ttab \\ backslash 🩸 \u2028',
    "tiny": 1.5e-7,
    "huge": 2**53 + 1,
    "negative": -0.0,
    "nested": {"empty": [], "none": None, "flag": False},
}


@pytest.mark.parametrize("target_kind", ["sqlite", "postgresql"])
def test_sql_null_json_null_unicode_and_numbers_come_back_as_they_were(
    cli_env: Settings, engine: Engine, database_url: str, tmp_path: Path, target_kind: str
) -> None:
    source = Install(database_url, cli_env.data_dir, cli_env.effective_secret_key_file)
    patient = run_json(source, "patients", "add", "--email", "ada@example.org", "--name", "Ada Lovelace")
    first = run_json(source, "token", "create", "--patient", patient["id"], "--kind", "read")
    second = run_json(source, "token", "create", "--patient", patient["id"], "--kind", "read")
    with session_scope(engine) as session:
        session.execute(update(ApiToken).where(ApiToken.id == first["id"]).values(roles=null()))
        session.execute(update(ApiToken).where(ApiToken.id == second["id"]).values(roles=JSON.NULL))
        record_event(session, actor="test", action=AuditTag.PROFILE_UPDATE, details=AWKWARD)
    with session_scope(engine) as session:
        nulls = {row[0]: row[1] for row in session.execute(select(ApiToken.id, ApiToken.roles.is_(None)))}
    assert nulls == {first["id"]: True, second["id"]: False}  # one SQL NULL, one JSON null

    before = dump(database_url)
    backup = tmp_path / "values.glucoshare-backup"
    run_json(source, "backup", "--out", str(backup))
    with fresh_database(target_kind, tmp_path) as url:
        target = restore_target(url, tmp_path, source.key_file)
        run_json(target, "restore", str(backup))
        rows = dump(url)
        assert rows["api_tokens"] == before["api_tokens"]
        events = rows.pop("audit_events")
        assert events[:-1] == before.pop("audit_events")
        assert rows == before
        assert run(target, "audit", "verify")[0] == 0

"""Notes the patient typed (free text in device exports) are sealed like names; exports open them."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from sqlalchemy import Engine, text

from glucoshare.accounts.service import add_patient, validate_patient
from glucoshare.config import Settings
from glucoshare.db.session import session_scope
from glucoshare.export.service import export_patient
from glucoshare.ingest.schemas import IncomingFile
from glucoshare.ingest.service import import_file
from glucoshare.simulator import simulate
from glucoshare.simulator.writers.libreview import write_libreview
from tests.ingest.helpers import profile


def test_note_texts_are_sealed_deduplicated_and_exported(
    engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    export = write_libreview(simulate(profile(seed=8), start=dt.date(2025, 4, 1), days=6))
    assert b"Pizza" in export.data  # the simulator writes a note on big meals
    with session_scope(engine) as session:
        patient = add_patient(
            session, validate_patient(email="n@example.org", name="N", timezone="Europe/Berlin")
        )
        first = import_file(
            session,
            settings=settings,
            patient=patient,
            incoming=IncomingFile(export.file_name, export.data),
            timezone=None,
            actor="test",
        )
    assert first.counts.get("note", 0) > 0
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT payload, dedup_key FROM records WHERE type = 'note'")).all()
    assert len(stored) == first.counts["note"]
    assert all("Pizza" not in repr(row) for row in stored)
    with session_scope(engine) as session:
        again = import_file(
            session,
            settings=settings,
            patient=patient,
            incoming=IncomingFile("again.csv", export.data),
            timezone=None,
            actor="test",
        )
        assert again.new == 0  # the keyed identity of a note is stable: nothing is doubled
        out = tmp_path / "records.json"
        export_patient(session, patient=patient, fmt="json", out=out)
    notes = [r for r in json.loads(out.read_text())["records"] if r["type"] == "note"]
    assert notes
    assert {"Pizza"} <= {r["payload"].get("text") for r in notes}

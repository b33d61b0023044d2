"""The patient's latest CGM reading, found device by device."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Engine, func, select

from glucoshare.accounts.service import add_patient, validate_patient
from glucoshare.config import Settings
from glucoshare.db.session import session_scope
from glucoshare.records.models import Record
from glucoshare.simulator import simulate
from glucoshare.simulator.writers.dexcom_clarity import write_clarity
from glucoshare.summaries.data import latest_cgm
from tests.ingest.helpers import profile, store_export


def test_the_latest_reading_is_the_newest_of_all_the_patients_devices(
    engine: Engine, settings: Settings
) -> None:
    with session_scope(engine) as session:
        patient = add_patient(session, validate_patient(email="kim@example.org", name="Kim", timezone="UTC"))
        assert latest_cgm(session, patient.id) is None
        # Two sensors (two devices): the one read first ends later.
        store_export(
            session,
            settings,
            patient,
            write_clarity(simulate(profile(seed=1), start=dt.date(2025, 3, 5), days=2)),
        )
        store_export(
            session,
            settings,
            patient,
            write_clarity(simulate(profile(seed=2), start=dt.date(2025, 3, 1), days=2)),
        )
        newest = session.execute(select(func.max(Record.time_ms)).where(Record.type == "cbg")).scalar_one()
        found = latest_cgm(session, patient.id)
        assert found is not None
        assert found[0] == newest
        value = session.execute(
            select(Record.value).where(Record.type == "cbg", Record.time_ms == newest)
        ).scalar_one()
        assert found[1] == value

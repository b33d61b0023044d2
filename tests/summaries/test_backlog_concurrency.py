"""The summary backlog under concurrent transactions: several servers, a worker and requests at once.

Found by the load benchmark (``benchmarks/population.py``, two ``glucoshare serve`` processes): an
upload's :func:`mark_outdated` failed when a refresh elsewhere had removed the backlog entry it had
read (``StaleDataError``, HTTP 500), and two refreshes of one patient collided on the daily
summaries' primary key.
"""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, text

from glucoshare.accounts.service import add_patient, validate_patient
from glucoshare.db.session import session_scope
from glucoshare.summaries.models import SummaryBacklog
from glucoshare.summaries.service import mark_outdated, refresh_outdated


def _patient_in_backlog(engine: Engine, first_ms: int, last_ms: int) -> str:
    with session_scope(engine) as session:
        patient = add_patient(
            session, validate_patient(email="busy@example.org", name="Busy", timezone="UTC")
        )
        mark_outdated(session, patient.id, first_ms, last_ms, "upload")
        return patient.id


def test_marking_holds_when_a_refresh_elsewhere_removed_the_entry(engine: Engine) -> None:
    patient_id = _patient_in_backlog(engine, 100_000, 200_000)
    with session_scope(engine) as upload:
        seen = upload.get(SummaryBacklog, patient_id)  # this transaction has read the entry (and keeps it)
        assert seen is not None
        with session_scope(engine) as elsewhere:
            assert refresh_outdated(elsewhere, [patient_id]) == 1  # ... which another one then removes
        mark_outdated(upload, patient_id, 300_000, 400_000, "upload")
    with session_scope(engine) as session:
        entry = session.get(SummaryBacklog, patient_id)
        assert entry is not None
        assert (entry.first_ms, entry.last_ms) == (300_000, 400_000)


def test_marking_widens_the_entry_to_cover_both_spans(engine: Engine) -> None:
    patient_id = _patient_in_backlog(engine, 100_000, 200_000)
    with session_scope(engine) as session:
        mark_outdated(session, patient_id, 150_000, 500_000, "nightscout")
        mark_outdated(session, patient_id, 50_000, 60_000, "upload")
    with session_scope(engine) as session:
        entry = session.get(SummaryBacklog, patient_id)
        assert entry is not None
        assert (entry.first_ms, entry.last_ms, entry.reason) == (50_000, 500_000, "upload")


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)  # SQLite's writers take turns
def test_a_refresh_skips_a_patient_another_transaction_is_refreshing(engine: Engine) -> None:
    patient_id = _patient_in_backlog(engine, 100_000, 200_000)
    with session_scope(engine) as first:
        assert refresh_outdated(first, [patient_id]) == 1  # its lock on the entry lasts until it commits
        with session_scope(engine) as second:
            second.execute(text("SET LOCAL lock_timeout = '5s'"))  # waiting would be the defect
            assert refresh_outdated(second, [patient_id]) == 0
    with session_scope(engine) as session:
        assert session.get(SummaryBacklog, patient_id) is None

"""Claiming a background request (an import, a report render) before a worker runs it: one rule for both."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from glucoshare.accounts.service import add_patient, validate_patient
from glucoshare.db.session import session_scope
from glucoshare.ingest.models import ImportRequest
from glucoshare.ingest.queued import claim_import_request
from glucoshare.jobs.claims import FINISHED, claim
from glucoshare.reports.models import ReportRender
from glucoshare.reports.renders import claim_render

Row = ImportRequest | ReportRender


def _import_request(patient_id: str) -> Row:
    return ImportRequest(
        patient_id=patient_id, state="queued", file_count=1, size_bytes=10, timezone=None, requested_by="t"
    )


def _render(patient_id: str) -> Row:
    day = dt.date(2025, 6, 1)
    return ReportRender(
        patient_id=patient_id, kind="agp", first_day=day, last_day=day, requested_by="t", state="queued"
    )


def _claim_import(session: Session, row_id: str) -> bool:
    return claim_import_request(session, row_id) is not None


KINDS: dict[str, tuple[Callable[[str], Row], Callable[[Session, str], bool]]] = {
    "import": (_import_request, _claim_import),
    "render": (_render, claim_render),
}


def _queued(engine: Engine, kind: str) -> str:
    """A committed, queued request of ``kind`` for a new patient; its id."""
    with session_scope(engine) as session:
        patient = add_patient(session, validate_patient(email="c@example.org", name="C", timezone="UTC"))
        row = KINDS[kind][0](patient.id)
        session.add(row)
        session.flush()
        return row.id


def _state(engine: Engine, kind: str, row_id: str) -> tuple[str, int]:
    model = ImportRequest if kind == "import" else ReportRender
    with session_scope(engine) as session:
        row = session.get(model, row_id)
        assert row is not None
        return row.state, row.attempts


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_claim_marks_the_request_running_and_counts_the_attempt(engine: Engine, kind: str) -> None:
    row_id = _queued(engine, kind)
    claimed = KINDS[kind][1]
    assert _state(engine, kind, row_id) == ("queued", 0)
    with session_scope(engine) as session:
        assert claimed(session, row_id)
    assert _state(engine, kind, row_id) == ("running", 1)
    with session_scope(engine) as session:  # its worker died before the outcome: run it again
        assert claimed(session, row_id)
    assert _state(engine, kind, row_id) == ("running", 2)
    with session_scope(engine) as session:
        assert not claimed(session, "0" * 32)  # no such request


@pytest.mark.parametrize("state", sorted(FINISHED))
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_finished_request_is_never_claimed(engine: Engine, kind: str, state: str) -> None:
    row_id = _queued(engine, kind)
    model = ImportRequest if kind == "import" else ReportRender
    with session_scope(engine) as session:
        row = session.get(model, row_id)
        assert row is not None
        row.state = state
    with session_scope(engine) as session:
        assert not KINDS[kind][1](session, row_id)
        assert claim(session, model, row_id) is None
    assert _state(engine, kind, row_id) == (state, 0)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_claimed_request_stays_locked_until_the_claim_commits(engine: Engine, kind: str) -> None:
    row_id = _queued(engine, kind)
    model = ImportRequest if kind == "import" else ReportRender
    with Session(engine) as first, Session(engine) as second:
        row = claim(first, model, row_id)
        assert row is not None
        assert (row.state, row.attempts) == ("running", 1)
        second.execute(text("SET LOCAL lock_timeout = '200ms'"))
        with pytest.raises(OperationalError, match="lock timeout"):
            claim(second, model, row_id)
        second.rollback()
        first.commit()
        again = claim(second, model, row_id)
        assert again is not None
        assert (again.state, again.attempts) == ("running", 2)
        second.commit()
    assert _state(engine, kind, row_id) == ("running", 2)

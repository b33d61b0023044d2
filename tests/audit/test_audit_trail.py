"""The audit trail on both databases: where an action came from, how it ended, and a chain that
reveals a changed, removed, reordered or inserted event while events from before origins existed
still verify."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any

import anyio
import anyio.to_thread
import pytest
from sqlalchemy import select, text, update
from sqlalchemy.orm import Session

from glucoshare.audit.context import Origin, current_origin, request_origin
from glucoshare.audit.models import AuditEvent
from glucoshare.audit.service import GENESIS, _event_hash, access_log, record_event, verify_chain
from glucoshare.audit.tags import AuditTag

PATIENT = "0" * 31 + "1"
BROWSER = Origin(ip="203.0.113.7", user_agent="Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0")
AT = dt.datetime(2026, 11, 1, 8, 30, 0, 123456, tzinfo=dt.UTC)


def _old_event_hash(
    prev_hash: str,
    *,
    event_id: int,
    occurred_at: dt.datetime,
    actor: str,
    action: str,
    patient_id: str | None,
    target: str | None,
    details: dict[str, Any],
) -> str:
    """The formula of the releases before origins and outcomes, verbatim."""
    body = json.dumps(
        {
            "id": event_id,
            "at": occurred_at.astimezone(dt.UTC).isoformat(timespec="microseconds"),
            "actor": actor,
            "action": action,
            "patient": patient_id,
            "target": target,
            "details": details,
        },
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(f"{prev_hash}|{body}".encode()).hexdigest()


def _read(session: Session, n: int = 1) -> list[AuditEvent]:
    return [
        record_event(
            session, actor="user:abc", action=AuditTag.RECORDS_READ, patient_id=PATIENT, target=f"t{i}"
        )
        for i in range(n)
    ]


def _reloaded(session: Session) -> list[AuditEvent]:
    session.expire_all()
    return list(session.scalars(select(AuditEvent).order_by(AuditEvent.id)))


def _legacy_event(session: Session, prev_hash: str, event_id: int | None = None, **fields: Any) -> AuditEvent:
    """An event exactly as the old code wrote it: no origin, no outcome, the old hash.

    Without ``event_id`` the database numbers it, as the old code let it.
    """
    values: dict[str, Any] = {
        "occurred_at": AT,
        "actor": "cli:root",
        "action": str(AuditTag.RECORDS_EXPORT),
        "patient_id": PATIENT,
        "target": None,
        "details": {"format": "csv", "count": 3},
    } | fields
    event = AuditEvent(id=event_id, **values, prev_hash=prev_hash, hash="")
    session.add(event)
    session.flush()
    event.hash = _old_event_hash(
        prev_hash,
        event_id=event.id,
        occurred_at=event.occurred_at,
        actor=event.actor,
        action=event.action,
        patient_id=event.patient_id,
        target=event.target,
        details=event.details,
    )
    session.flush()
    return event


# --- where it came from, how it ended ---


def test_the_command_line_has_no_origin_and_success_is_the_default(session: Session) -> None:
    assert current_origin() is None
    (event,) = _read(session)
    assert (event.ip, event.user_agent, event.outcome) == (None, None, "success")
    assert verify_chain(session).intact


def test_the_origin_of_the_current_request_is_stored(session: Session) -> None:
    with request_origin(BROWSER):
        (event,) = _read(session)
    (stored,) = _reloaded(session)
    assert (stored.ip, stored.user_agent) == (BROWSER.ip, BROWSER.user_agent)
    assert stored.id == event.id
    assert verify_chain(session).intact


def test_an_explicit_origin_wins_over_the_request(session: Session) -> None:
    explicit = Origin(ip="2001:db8::1", user_agent=None)
    with request_origin(BROWSER):
        event = record_event(session, actor="anonymous", action=AuditTag.LOGIN_FAILURE, origin=explicit)
    assert (event.ip, event.user_agent) == ("2001:db8::1", None)


def test_the_outcome_is_stored(session: Session) -> None:
    record_event(session, actor="anonymous", action=AuditTag.LOGIN_FAILURE, outcome="failure")
    record_event(session, actor="user:abc", action=AuditTag.LOGIN_FAILURE, outcome="denied")
    record_event(session, actor="user:abc", action=AuditTag.LOGIN_SUCCESS, outcome="success")
    assert [e.outcome for e in _reloaded(session)] == ["failure", "denied", "success"]
    assert verify_chain(session).intact


def test_an_unknown_outcome_is_refused(session: Session) -> None:
    with pytest.raises(ValueError, match="unknown audit outcome"):
        record_event(session, actor="x", action=AuditTag.LOGIN_FAILURE, outcome="ok")  # type: ignore[arg-type]
    assert session.scalar(select(AuditEvent)) is None


def test_long_or_odd_origins_are_cut_to_fit(session: Session) -> None:
    origin = Origin(ip="f" * 100, user_agent="A\x00" + "é" * 400)
    with request_origin(origin):
        record_event(session, actor="anonymous", action=AuditTag.LOGIN_FAILURE, outcome="failure")
    (stored,) = _reloaded(session)
    assert stored.ip == "f" * 64
    assert stored.user_agent == "A" + "é" * 299
    assert verify_chain(session).intact


def test_the_context_restores_what_it_found() -> None:
    inner = Origin(ip="198.51.100.2", user_agent="curl/8.11")
    with request_origin(BROWSER) as entered:
        assert entered is BROWSER
        with request_origin(inner):
            assert current_origin() is inner
        assert current_origin() is BROWSER
        with request_origin(None):
            assert current_origin() is None
        assert current_origin() is BROWSER
    assert current_origin() is None


def test_the_origin_reaches_the_thread_pool_that_runs_sync_endpoints() -> None:
    async def handle() -> Origin | None:
        with request_origin(BROWSER):
            return await anyio.to_thread.run_sync(current_origin)

    assert anyio.run(handle) is BROWSER


def test_the_access_log_shows_origin_and_outcome(session: Session) -> None:
    legacy = _legacy_event(session, GENESIS)
    with request_origin(BROWSER):
        record_event(session, actor="user:abc", action=AuditTag.RECORDS_READ, patient_id=PATIENT)
        record_event(
            session, actor="token:t1", action=AuditTag.RECORDS_EXPORT, patient_id=PATIENT, outcome="denied"
        )
    record_event(session, actor="cli:root", action=AuditTag.PATIENT_LIST)  # not about this patient
    entries = access_log(session, PATIENT)
    assert [(e.actor, e.ip, e.user_agent, e.outcome) for e in entries] == [
        ("token:t1", BROWSER.ip, BROWSER.user_agent, "denied"),
        ("user:abc", BROWSER.ip, BROWSER.user_agent, "success"),
        (legacy.actor, None, None, "success"),  # written before outcomes: shown as a success
    ]
    assert entries[-1].at == legacy.occurred_at
    assert verify_chain(session).intact


# --- events from before origins and outcomes ---


@pytest.mark.parametrize(
    ("patient_id", "target", "details"),
    [
        (PATIENT, "upload-1", {"format": "csv", "count": 3, "period": ["2026-10-01", "2026-10-31"]}),
        (None, None, {}),
        (None, "user-ü", {"nested": {"b": 1, "a": [None, True, 1.5]}}),
    ],
)
def test_without_origin_and_outcome_the_hash_is_the_old_one(
    patient_id: str | None, target: str | None, details: dict[str, Any]
) -> None:
    fields: dict[str, Any] = {
        "event_id": 42,
        "occurred_at": AT,
        "actor": "cli:root",
        "action": "records:data:export",
        "patient_id": patient_id,
        "target": target,
        "details": details,
    }
    prev = hashlib.sha256(b"previous").hexdigest()
    old = _old_event_hash(prev, **fields)
    assert _event_hash(prev, **fields, ip=None, user_agent=None, outcome=None) == old
    assert _event_hash(prev, **fields, ip=None, user_agent=None, outcome="success") != old
    assert _event_hash(prev, **fields, ip="203.0.113.7", user_agent=None, outcome=None) != old


def test_a_chain_begun_by_the_old_code_still_verifies_and_goes_on(session: Session) -> None:
    first = _legacy_event(session, GENESIS)
    second = _legacy_event(session, first.hash, target="upload-2", details={})
    assert verify_chain(session).intact
    with request_origin(BROWSER):
        new = record_event(session, actor="user:abc", action=AuditTag.RECORDS_READ, patient_id=PATIENT)
    assert new.prev_hash == second.hash
    report = verify_chain(session)
    assert report.intact
    assert report.events == 3


# --- tampering ---


@pytest.mark.parametrize(
    "assignment",
    [
        "target = 'another-upload'",
        "ip = '192.0.2.66'",
        "ip = NULL",
        "user_agent = 'curl/8.11'",
        "outcome = 'failure'",
        "outcome = NULL",
        "ip = NULL, user_agent = NULL, outcome = NULL",  # passing a new event off as an old one
    ],
)
def test_verify_detects_a_changed_field(session: Session, assignment: str) -> None:
    with request_origin(BROWSER):
        _, middle, _ = _read(session, 3)
    session.execute(text(f"UPDATE audit_events SET {assignment} WHERE id = :id"), {"id": middle.id})
    session.expire_all()
    report = verify_chain(session)
    assert (report.intact, report.first_bad_event, report.reason) == (False, middle.id, "event altered")


def test_verify_detects_a_removed_event(session: Session) -> None:
    _, middle, last = (event.id for event in _read(session, 3))
    session.execute(text("DELETE FROM audit_events WHERE id = :id"), {"id": middle})
    session.expire_all()
    report = verify_chain(session)
    assert (report.intact, report.first_bad_event, report.reason) == (
        False,
        last,
        "link to previous event broken",
    )
    assert report.events == 2


@pytest.mark.parametrize("with_links", [True, False], ids=["whole-rows", "contents-only"])
def test_verify_detects_two_events_swapped(session: Session, with_links: bool) -> None:
    _read(session, 1)
    with request_origin(BROWSER):
        one = record_event(session, actor="user:abc", action=AuditTag.RECORDS_READ, patient_id=PATIENT)
    two = record_event(
        session, actor="token:t1", action=AuditTag.RECORDS_EXPORT, patient_id=PATIENT, outcome="denied"
    )
    _read(session, 1)
    table = AuditEvent.metadata.tables[AuditEvent.__tablename__]
    keep = {"id"} if with_links else {"id", "prev_hash", "hash"}
    columns = [c for c in table.columns if c.name not in keep]
    rows = {
        row.id: {c.name: row._mapping[c.name] for c in columns}
        for row in session.execute(select(table).where(table.c.id.in_([one.id, two.id])))
    }
    session.execute(update(table).where(table.c.id == one.id).values(rows[two.id]))
    session.execute(update(table).where(table.c.id == two.id).values(rows[one.id]))
    swapped = _reloaded(session)
    assert [e.actor for e in swapped[1:3]] == ["token:t1", "user:abc"]
    report = verify_chain(session)
    assert not report.intact
    assert report.first_bad_event == one.id
    assert report.reason == ("link to previous event broken" if with_links else "event altered")


def test_an_event_inserted_in_the_middle_breaks_the_next_link(session: Session) -> None:
    # A valid chain may skip ids (PostgreSQL does not reuse the id of a rolled-back event).
    first = _legacy_event(session, GENESIS, 1)
    second = _legacy_event(session, first.hash, 2)
    fourth = _legacy_event(session, second.hash, 4)
    fifth = _legacy_event(session, fourth.hash, 5)
    assert verify_chain(session).intact
    # Someone who knows the formula slips an event into the gap, linked and hashed like a real one.
    forged: dict[str, Any] = {
        "event_id": 3,
        "occurred_at": AT + dt.timedelta(minutes=3),
        "actor": "user:abc",
        "action": "records:data:read",
        "patient_id": PATIENT,
        "target": None,
        "details": {},
        "ip": "192.0.2.66",
        "user_agent": None,
        "outcome": "success",
    }
    session.add(
        AuditEvent(
            id=3,
            **{k: v for k, v in forged.items() if k != "event_id"},
            prev_hash=second.hash,
            hash=_event_hash(second.hash, **forged),
        )
    )
    session.flush()
    report = verify_chain(session)
    assert (report.intact, report.first_bad_event, report.reason) == (
        False,
        fourth.id,
        "link to previous event broken",
    )
    # Relinking the next event (and rehashing it) only moves the break to the event after it: to hide
    # the insertion every later event would have to be rewritten.
    forged_hash = _event_hash(second.hash, **forged)
    relinked = _old_event_hash(
        forged_hash,
        event_id=fourth.id,
        occurred_at=fourth.occurred_at,
        actor=fourth.actor,
        action=fourth.action,
        patient_id=fourth.patient_id,
        target=fourth.target,
        details=fourth.details,
    )
    session.execute(
        text("UPDATE audit_events SET prev_hash = :p, hash = :h WHERE id = :id"),
        {"p": forged_hash, "h": relinked, "id": fourth.id},
    )
    session.expire_all()
    report = verify_chain(session)
    assert (report.first_bad_event, report.reason) == (fifth.id, "link to previous event broken")

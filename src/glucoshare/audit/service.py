"""Record audit events and verify the chain.

Services flush but never commit: an event commits together with the change it describes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any, get_args

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from glucoshare.audit.context import Origin, current_origin
from glucoshare.audit.models import AuditEvent
from glucoshare.audit.schemas import AccessEntryOut, ChainReport, Outcome
from glucoshare.audit.tags import AuditTag
from glucoshare.db.base import utcnow

GENESIS = "0" * 64
_CHAIN_LOCK_ID = 0x6C75636F  # arbitrary constant for PostgreSQL's advisory lock
OUTCOMES: frozenset[str] = frozenset(get_args(Outcome))
MAX_IP = 64
MAX_USER_AGENT = 300


def _event_hash(
    prev_hash: str,
    *,
    event_id: int,
    occurred_at: dt.datetime,
    actor: str,
    action: str,
    patient_id: str | None,
    target: str | None,
    details: dict[str, Any],
    ip: str | None,
    user_agent: str | None,
    outcome: str | None,
) -> str:
    """SHA-256 over the previous hash and the event's fields.

    The origin and outcome join the hashed body only when one of them is set, so events written
    before those columns existed (all three ``None``) keep the hash they were written with.
    """
    fields: dict[str, Any] = {
        "id": event_id,
        "at": occurred_at.astimezone(dt.UTC).isoformat(timespec="microseconds"),
        "actor": actor,
        "action": action,
        "patient": patient_id,
        "target": target,
        "details": details,
    }
    if ip is not None or user_agent is not None or outcome is not None:
        fields |= {"ip": ip, "user_agent": user_agent, "outcome": outcome}
    body = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(f"{prev_hash}|{body}".encode()).hexdigest()


def _clip(value: str | None, limit: int) -> str | None:
    """``value`` without NUL characters (PostgreSQL refuses them), cut to ``limit`` characters."""
    if value is None:
        return None
    return value.replace("\x00", "")[:limit]


def record_event(
    session: Session,
    *,
    actor: str,
    action: AuditTag,
    patient_id: str | None = None,
    target: str | None = None,
    details: dict[str, Any] | None = None,
    outcome: Outcome = "success",
    origin: Origin | None = None,
) -> AuditEvent:
    """Append one event to the chain. ``details`` must not hold health data, secrets or tokens.

    ``outcome`` says how the action ended (``failure``: e.g. a wrong password; ``denied``: refused,
    e.g. no permission or throttled). ``origin`` is where it came from; without one, the current
    request's (:func:`glucoshare.audit.context.current_origin`, ``None`` on the command line). The
    IP address is cut to 64 characters and the user agent to 300.
    """
    if outcome not in OUTCOMES:
        msg = f"unknown audit outcome {outcome!r}"
        raise ValueError(msg)
    where = origin if origin is not None else current_origin()
    ip = _clip(where.ip, MAX_IP) if where is not None else None
    user_agent = _clip(where.user_agent, MAX_USER_AGENT) if where is not None else None
    if session.get_bind().dialect.name == "postgresql":
        # Serialise writers so that the chain stays linear across processes.
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _CHAIN_LOCK_ID})
    event = AuditEvent(
        occurred_at=utcnow(),
        actor=actor,
        action=str(action),
        patient_id=patient_id,
        target=target,
        details=dict(details or {}),
        ip=ip,
        user_agent=user_agent,
        outcome=outcome,
        prev_hash="",
        hash="",
    )
    session.add(event)
    # The event is written before its predecessor is read. On SQLite the write takes the database's
    # one write lock until the transaction ends, so no other process can append in between; reading
    # first would not (Python's sqlite3 runs a lone SELECT outside any transaction), and two
    # servers could both link to the same predecessor.
    session.flush()
    last = session.execute(
        select(AuditEvent.id, AuditEvent.hash)
        .where(AuditEvent.id < event.id)
        .order_by(AuditEvent.id.desc())
        .limit(1)
    ).first()
    prev_hash = last.hash if last is not None else GENESIS
    event.prev_hash = prev_hash
    event.hash = _event_hash(
        prev_hash,
        event_id=event.id,
        occurred_at=event.occurred_at,
        actor=actor,
        action=event.action,
        patient_id=patient_id,
        target=target,
        details=event.details,
        ip=ip,
        user_agent=user_agent,
        outcome=outcome,
    )
    session.flush()
    return event


def verify_chain(session: Session) -> ChainReport:
    """Walk the chain from the first event and report the first event that does not match."""
    prev_hash = GENESIS
    count = 0
    for event in session.scalars(select(AuditEvent).order_by(AuditEvent.id)).yield_per(1000):
        count += 1
        if event.prev_hash != prev_hash:
            return ChainReport(
                events=count, intact=False, first_bad_event=event.id, reason="link to previous event broken"
            )
        expected = _event_hash(
            prev_hash,
            event_id=event.id,
            occurred_at=event.occurred_at,
            actor=event.actor,
            action=event.action,
            patient_id=event.patient_id,
            target=event.target,
            details=event.details,
            ip=event.ip,
            user_agent=event.user_agent,
            outcome=event.outcome,
        )
        if expected != event.hash:
            return ChainReport(events=count, intact=False, first_bad_event=event.id, reason="event altered")
        prev_hash = event.hash
    return ChainReport(events=count, intact=True)


def access_log(
    session: Session, patient_id: str, *, since: dt.datetime | None = None, limit: int = 1000
) -> list[AccessEntryOut]:
    """Who read or changed a patient's data, newest first (what the patient sees of the trail).

    Each entry says from where (IP address, user agent; ``None`` for the command line) and how it
    ended; events recorded before outcomes existed show as ``success``.
    """
    query = select(AuditEvent).where(AuditEvent.patient_id == patient_id)
    if since is not None:
        query = query.where(AuditEvent.occurred_at >= since)
    rows = session.scalars(query.order_by(AuditEvent.id.desc()).limit(limit))
    return [
        AccessEntryOut(
            at=row.occurred_at,
            actor=row.actor,
            action=row.action,
            target=row.target,
            ip=row.ip,
            user_agent=row.user_agent,
            outcome=row.outcome or "success",
        )
        for row in rows
    ]

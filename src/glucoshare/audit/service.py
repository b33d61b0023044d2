"""Record audit events and verify the chain.

Services flush but never commit: an event commits together with the change it describes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from glucoshare.audit.models import AuditEvent
from glucoshare.audit.schemas import AccessEntryOut, ChainReport
from glucoshare.audit.tags import AuditTag
from glucoshare.db.base import utcnow

GENESIS = "0" * 64
_CHAIN_LOCK_ID = 0x6C75636F  # arbitrary constant for PostgreSQL's advisory lock


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
) -> str:
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


def record_event(
    session: Session,
    *,
    actor: str,
    action: AuditTag,
    patient_id: str | None = None,
    target: str | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one event to the chain. ``details`` must not hold health data, secrets or tokens."""
    if session.get_bind().dialect.name == "postgresql":
        # Serialise writers so that the chain stays linear across processes.
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _CHAIN_LOCK_ID})
    last = session.execute(
        select(AuditEvent.id, AuditEvent.hash).order_by(AuditEvent.id.desc()).limit(1)
    ).first()
    prev_hash = last.hash if last is not None else GENESIS
    event = AuditEvent(
        occurred_at=utcnow(),
        actor=actor,
        action=str(action),
        patient_id=patient_id,
        target=target,
        details=dict(details or {}),
        prev_hash=prev_hash,
        hash="",
    )
    session.add(event)
    session.flush()
    event.hash = _event_hash(
        prev_hash,
        event_id=event.id,
        occurred_at=event.occurred_at,
        actor=actor,
        action=event.action,
        patient_id=patient_id,
        target=target,
        details=event.details,
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
        )
        if expected != event.hash:
            return ChainReport(events=count, intact=False, first_bad_event=event.id, reason="event altered")
        prev_hash = event.hash
    return ChainReport(events=count, intact=True)


def access_log(
    session: Session, patient_id: str, *, since: dt.datetime | None = None, limit: int = 1000
) -> list[AccessEntryOut]:
    """Who read or changed a patient's data, newest first (what the patient sees of the trail)."""
    query = select(AuditEvent).where(AuditEvent.patient_id == patient_id)
    if since is not None:
        query = query.where(AuditEvent.occurred_at >= since)
    rows = session.scalars(query.order_by(AuditEvent.id.desc()).limit(limit))
    return [
        AccessEntryOut(at=row.occurred_at, actor=row.actor, action=row.action, target=row.target)
        for row in rows
    ]

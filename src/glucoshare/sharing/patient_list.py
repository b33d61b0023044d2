"""A clinic's patient list: search, tags, filters and sorting over the population triage.

Names, birth dates and MRNs are sealed, so the list opens them in bulk (one query per 500 patients
for their data keys) and searches the opened values; figures come from the period summaries
(:func:`glucoshare.summaries.service.population`).
"""

from __future__ import annotations

import datetime as dt
import math
import time
from typing import Literal

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from glucoshare.accounts.service import patient_identities
from glucoshare.analytics.population import CATEGORIES
from glucoshare.sharing.models import Clinic, Share
from glucoshare.summaries.schemas import PeriodOut, TriagePatientOut
from glucoshare.summaries.service import population
from glucoshare.vault.service import open_value

DAY_MS = 86_400_000
PLACEHOLDER_DOMAIN = "@patients.invalid"
"""Clinic-created patients without an address get one in this reserved domain (RFC 2606)."""
SortKey = Literal[
    "triage",
    "name",
    "last_data",
    "time_in_range",
    "time_below_range",
    "gmi",
    "cgm_use",
    "time_in_range_change",
]


class ClinicPatientOut(BaseModel):
    """One row of a clinic's patient list."""

    patient_id: str
    name: str
    email: str | None
    birthdate: dt.date | None
    mrn: str | None
    tags: list[str]
    custodial: bool
    """The clinic created the account and the patient has not claimed it yet."""
    last_reviewed_at: dt.datetime | None
    last_reviewed_by: str | None
    category: str
    current: PeriodOut
    previous: PeriodOut
    time_in_range_change_pct: float | None
    last_data: str | None
    upload_reminder_due: bool
    """No data for ``reminder_days`` days or more: ask for an upload before the device forgets."""


class ClinicPatientListOut(BaseModel):
    """A page of the clinic's patient list, with the counts per triage category of all matches."""

    clinic_id: str
    days: int
    total: int
    counts: dict[str, int]
    patients: list[ClinicPatientOut]


def _number(value: float | None) -> float:
    return -math.inf if value is None else value


def clinic_patients(
    session: Session,
    clinic: Clinic,
    *,
    days: int = 14,
    search: str | None = None,
    tag: str | None = None,
    category: str | None = None,
    sort: SortKey = "triage",
    descending: bool = False,
    reminder_days: int = 14,
    limit: int = 50,
    offset: int = 0,
    now_ms: int | None = None,
) -> ClinicPatientListOut:
    """The clinic's patients matching ``search`` (name, MRN or birth date), ``tag`` and ``category``."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    shares = list(
        session.execute(
            select(
                Share.id,
                Share.patient_id,
                Share.mrn_sealed,
                Share.tags,
                Share.custodian,
                Share.last_reviewed_at,
                Share.last_reviewed_by,
            ).where(Share.clinic_id == clinic.id, Share.revoked_at.is_(None))
        )
    )
    ids = [row.patient_id for row in shares]
    people = patient_identities(session, ids)
    triaged = population(
        session,
        patient_ids=ids,
        days=days,
        now_ms=now,
        emails={pid: who.email for pid, who in people.items()},
    )
    at_of = {pid: at for at, pid in enumerate(triaged.patient_ids)}
    needle = (search or "").strip()
    folded = needle.casefold()
    as_date = _date(needle)
    rows: list[ClinicPatientOut] = []
    for share in shares:
        who = people.get(share.patient_id)
        at = at_of.get(share.patient_id)
        if who is None or at is None:
            continue
        mrn = None
        if share.mrn_sealed is not None:
            place = f"shares.mrn_sealed:{share.id}"
            mrn = open_value(session, share.patient_id, share.mrn_sealed, place).decode()
        if needle and not (
            folded in who.name.casefold()
            or (mrn is not None and mrn == needle.upper())
            or as_date == who.birthdate
        ):
            continue
        if tag is not None and tag not in (share.tags or []):
            continue
        if category is not None and triaged.categories[at] != category:
            continue
        last = int(triaged.last_ms[at])
        entry = TriagePatientOut.build(
            patient_id=share.patient_id,
            email=who.email,
            category=triaged.categories[at],
            current=triaged.current,
            previous=triaged.previous,
            at=at,
            last_ms=last if last >= 0 else None,
        )
        rows.append(
            ClinicPatientOut.model_construct(
                patient_id=share.patient_id,
                name=who.name,
                email=None if who.email.endswith(PLACEHOLDER_DOMAIN) else who.email,
                birthdate=who.birthdate,
                mrn=mrn,
                tags=list(share.tags or []),
                custodial=bool(share.custodian),
                last_reviewed_at=share.last_reviewed_at,
                last_reviewed_by=share.last_reviewed_by,
                category=entry.category,
                current=entry.current,
                previous=entry.previous,
                time_in_range_change_pct=entry.time_in_range_delta_pct,
                last_data=entry.last_data,
                upload_reminder_due=last < 0 or last < now - reminder_days * DAY_MS,
            )
        )
    counts = dict.fromkeys(CATEGORIES, 0)
    for row in rows:
        counts[row.category] += 1
    rows.sort(key=_sort_key(sort), reverse=descending)
    return ClinicPatientListOut(
        clinic_id=clinic.id, days=days, total=len(rows), counts=counts, patients=rows[offset : offset + limit]
    )


def _date(text: str) -> dt.date | None:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        return None


def _sort_key(sort: SortKey):  # type: ignore[no-untyped-def]  # noqa: ANN202 - a key function per choice
    rank = {name: at for at, name in enumerate(CATEGORIES)}
    keys = {
        "triage": lambda r: (rank[r.category], _number(r.current.time_in_range_pct), r.name.casefold()),
        "name": lambda r: (r.name.casefold(), r.patient_id),
        "last_data": lambda r: (r.last_data or "", r.name.casefold()),
        "time_in_range": lambda r: (_number(r.current.time_in_range_pct), r.name.casefold()),
        "time_below_range": lambda r: (
            _number(r.current.time_very_low_pct) + _number(r.current.time_low_pct),
            r.name.casefold(),
        ),
        "gmi": lambda r: (_number(r.current.gmi_pct), r.name.casefold()),
        "cgm_use": lambda r: (r.current.cgm_use_pct, r.name.casefold()),
        "time_in_range_change": lambda r: (_number(r.time_in_range_change_pct), r.name.casefold()),
    }
    return keys[sort]

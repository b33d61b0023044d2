"""A clinic's patient list: search, tags, filters and sorting over the population triage.

Names, birth dates and MRNs are sealed, so the list opens them in bulk (one query per 500 patients
for their data keys) and searches the opened values; figures come from the period summaries
(:func:`glucoshare.summaries.service.population`).
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from glucoshare.accounts.models import Patient
from glucoshare.accounts.service import Identity, patient_identities
from glucoshare.analytics.population import CATEGORIES
from glucoshare.sharing.models import Clinic, Share
from glucoshare.sharing.schemas import real_address
from glucoshare.summaries.schemas import PeriodOut, TriagePatientOut
from glucoshare.summaries.service import Population, population
from glucoshare.vault.models import DataKey
from glucoshare.vault.service import lookup_hash, remember_data_keys

DAY_MS = 86_400_000
SortKey = Literal[
    "added",
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
    """The clinic's patients matching ``search`` (name, MRN or birth date), ``tag`` and ``category``.

    Names are opened for every patient (search and order need them); MRNs are matched through their
    keyed hash; birth dates, addresses and MRNs are opened for the rows of the page only.
    """
    now = int(time.time() * 1000) if now_ms is None else now_ms
    active = (Share.clinic_id == clinic.id, Share.revoked_at.is_(None))
    columns: list[Any] = [
        Share.id,
        Share.patient_id,
        Share.mrn_lookup,
        Patient.name_sealed,
        DataKey.master_key_id,
        DataKey.wrapped,
    ]
    # Only what filtering and ordering need, for every patient; the rest for the page's rows.
    columns += [Share.tags] if tag is not None else []
    columns += [Share.created_at] if sort == "added" else []
    shares = list(
        session.execute(
            select(*columns)
            .join(Patient, Patient.id == Share.patient_id)
            .join(DataKey, DataKey.subject_id == Share.patient_id)
            .where(*active)
        )
    )
    remember_data_keys(session, ((r.patient_id, r.master_key_id, r.wrapped) for r in shares))
    names = {
        r.patient_id: Patient.name.open_column(session, r.patient_id, r.patient_id, r.name_sealed)
        for r in shares
    }
    ids = list(names)
    triaged = population(
        session, patient_ids=select(Share.patient_id).where(*active), days=days, now_ms=now, with_emails=False
    )
    at_of = {pid: at for at, pid in enumerate(triaged.patient_ids)}
    needle = (search or "").strip()
    folded = needle.casefold()
    as_date = _date(needle)
    mrn_key = lookup_hash(session, f"mrn:{clinic.id}:{needle.upper()}") if needle else None
    born = _birthdates(session, ids) if as_date is not None else {}
    matches = []
    for share in shares:
        at = at_of.get(share.patient_id)
        name = names.get(share.patient_id)
        if at is None or name is None:
            continue
        if needle and not (
            folded in name.casefold()
            or share.mrn_lookup == mrn_key
            or (as_date is not None and born.get(share.patient_id) == as_date)
        ):
            continue
        if tag is not None and tag not in (share.tags or []):
            continue
        if category is not None and triaged.categories[at] != category:
            continue
        matches.append((share, at, name))
    counts = dict.fromkeys(CATEGORIES, 0)
    for _, at, _ in matches:
        counts[triaged.categories[at]] += 1
    matches.sort(key=_sort_key(sort, triaged), reverse=descending)
    page = matches[offset : offset + limit]
    identities = patient_identities(session, [share.patient_id for share, _, _ in page])
    full = {
        s.id: s
        for s in session.scalars(select(Share).where(Share.id.in_([share.id for share, _, _ in page])))
    }
    rows = [
        _row(
            full[share.id],
            at,
            who=identities[share.patient_id],
            triaged=triaged,
            now=now,
            days=reminder_days,
        )
        for share, at, _ in page
    ]
    return ClinicPatientListOut(
        clinic_id=clinic.id, days=days, total=len(matches), counts=counts, patients=rows
    )


def _birthdates(session: Session, patient_ids: list[str]) -> dict[str, dt.date | None]:
    return {pid: who.birthdate for pid, who in patient_identities(session, patient_ids).items()}


def _row(
    share: Share,
    at: int,
    *,
    who: Identity,
    triaged: Population,
    now: int,
    days: int,
) -> ClinicPatientOut:
    mrn = share.mrn
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
    return ClinicPatientOut.model_construct(
        patient_id=share.patient_id,
        name=who.name,
        email=real_address(who.email),
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
        upload_reminder_due=last < 0 or last < now - days * DAY_MS,
    )


def _date(text: str) -> dt.date | None:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        return None


def _sort_key(sort: SortKey, triaged: Population) -> Callable[[tuple[Any, int, str]], tuple[Any, ...]]:
    """The key that orders ``(share, index, name)`` candidates by ``sort``."""
    rank = [{name: at for at, name in enumerate(CATEGORIES)}[c] for c in triaged.categories]
    now, before = triaged.current, triaged.previous
    cached: dict[int, list[float]] = {}

    def figure(array: np.ndarray, at: int) -> float:
        values = cached.get(id(array))
        if values is None:
            values = cached[id(array)] = [v if math.isfinite(v) else -math.inf for v in array.tolist()]
        return values[at]

    keys: dict[str, Callable[[tuple[Any, int, str]], tuple[Any, ...]]] = {
        "triage": lambda c: (rank[c[1]], figure(now.in_range_pct, c[1]), c[2].casefold()),
        "name": lambda c: (c[2].casefold(), c[0].patient_id),
        "added": lambda c: (c[0].created_at, c[0].patient_id),
        "last_data": lambda c: (int(triaged.last_ms[c[1]]), c[2].casefold()),
        "time_in_range": lambda c: (figure(now.in_range_pct, c[1]), c[2].casefold()),
        "time_below_range": lambda c: (
            figure(now.very_low_pct, c[1]) + figure(now.low_pct, c[1]),
            c[2].casefold(),
        ),
        "gmi": lambda c: (figure(now.gmi_pct, c[1]), c[2].casefold()),
        "cgm_use": lambda c: (figure(now.cgm_use_pct, c[1]), c[2].casefold()),
        "time_in_range_change": lambda c: (
            figure(now.in_range_pct, c[1]) - figure(before.in_range_pct, c[1]),
            c[2].casefold(),
        ),
    }
    return keys[sort]

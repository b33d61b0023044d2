"""A clinic's patient list: search, tags, filters and sorting over the population triage.

Names, birth dates and MRNs are sealed, so the list opens them in bulk (one query per 500 patients
for their data keys) and searches the opened values; figures come from the period summaries
(:func:`glucoshare.summaries.service.population`).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import time
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel
from sqlalchemy import Text, cast, null, select
from sqlalchemy.orm import Session

from glucoshare.accounts.models import Patient
from glucoshare.accounts.service import Identity, patient_identities
from glucoshare.analytics.population import CATEGORIES
from glucoshare.sharing.models import Clinic, Share
from glucoshare.sharing.schemas import real_address
from glucoshare.sharing.service import mrn_lookup
from glucoshare.summaries.schemas import PeriodOut, TriagePatientOut
from glucoshare.summaries.service import Population, triage_patients
from glucoshare.vault.models import DataKey
from glucoshare.vault.service import remember_data_keys

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
    # Only what filtering and ordering need, for every patient; the rest for the page's rows.
    # Tags as their JSON text: only the rows that mention the tag are decoded.
    columns: list[Any] = [
        Share.patient_id,
        Share.mrn_lookup,
        Patient.name_sealed,
        DataKey.master_key_id,
        DataKey.wrapped,
        cast(Share.tags, Text) if tag is not None else null(),
        Share.created_at if sort == "added" else null(),
    ]
    query = (
        select(*columns)
        .join(Patient, Patient.id == Share.patient_id)
        .join(DataKey, DataKey.subject_id == Share.patient_id)
        .where(*active)
    )
    # Core rows, read by position: no ORM bookkeeping per patient (a clinic may have thousands).
    shares = session.connection().execute(query).all()
    ids, mrn_keys, sealed_names, masters, wrapped, tag_texts, added = (
        [list(column) for column in zip(*shares, strict=True)] if shares else [[] for _ in columns]
    )
    remember_data_keys(session, zip(ids, masters, wrapped, strict=True))
    names = Patient.name.open_columns(session, ids, ids, sealed_names)
    triaged = triage_patients(
        session, ids, ids, selection=select(Share.patient_id).where(*active), days=days, now_ms=now
    )
    keep = np.ones(len(ids), np.bool_)
    needle = (search or "").strip()
    if needle:
        keep &= _matching(session, clinic, needle=needle, ids=ids, names=names, mrn_keys=mrn_keys)
    if tag is not None:
        quoted = json.dumps(tag)
        keep &= np.fromiter(
            (bool(text) and quoted in text and tag in json.loads(text) for text in tag_texts),
            np.bool_,
            len(ids),
        )
    categories = np.asarray(triaged.categories)
    if category is not None:
        keep &= categories == category
    counts = dict.fromkeys(CATEGORIES, 0)
    found, times = np.unique(categories[keep], return_counts=True)
    counts.update(zip(found.tolist(), times.tolist(), strict=True))
    matches = np.flatnonzero(keep).tolist()
    matches.sort(key=_sort_key(sort, triaged, names, added), reverse=descending)
    page = matches[offset : offset + limit]
    identities = patient_identities(session, [ids[at] for at in page])
    full = {
        share.patient_id: share
        for share in session.scalars(
            select(Share).where(*active, Share.patient_id.in_([ids[at] for at in page]))
        )
    }
    rows = [
        _row(
            full[ids[at]],
            at,
            who=identities[ids[at]],
            triaged=triaged,
            now=now,
            days=reminder_days,
        )
        for at in page
    ]
    return ClinicPatientListOut(
        clinic_id=clinic.id, days=days, total=len(matches), counts=counts, patients=rows
    )


def _matching(
    session: Session,
    clinic: Clinic,
    *,
    needle: str,
    ids: list[str],
    names: list[str],
    mrn_keys: list[str | None],
) -> np.ndarray:
    """Which patients ``needle`` finds: part of the name, the whole MRN or the birth date (ISO)."""
    folded = needle.casefold()
    mrn_key = mrn_lookup(session, clinic.id, needle)
    found = np.fromiter(
        (folded in name.casefold() or mrn == mrn_key for name, mrn in zip(names, mrn_keys, strict=True)),
        np.bool_,
        len(ids),
    )
    as_date = _date(needle)
    if as_date is not None:
        born = patient_identities(session, ids)
        found |= np.fromiter((born[pid].birthdate == as_date for pid in ids), np.bool_, len(ids))
    return found


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


def _sort_key(
    sort: SortKey, triaged: Population, names: list[str], added: list[dt.datetime | None]
) -> Callable[[int], tuple[Any, ...]]:
    """The key that orders patients (by their index in ``triaged``) by ``sort``, ties by name."""
    rank = [{name: at for at, name in enumerate(CATEGORIES)}[c] for c in triaged.categories]
    now, before = triaged.current, triaged.previous
    folded = [name.casefold() for name in names]
    ids = triaged.patient_ids

    def figure(array: np.ndarray) -> list[float]:
        return [v if math.isfinite(v) else -math.inf for v in array.tolist()]

    primary: dict[str, Callable[[], list[Any]]] = {
        "triage": lambda: list(zip(rank, figure(now.in_range_pct), strict=True)),
        "name": lambda: folded,
        "added": lambda: added,
        "last_data": triaged.last_ms.tolist,
        "time_in_range": lambda: figure(now.in_range_pct),
        "time_below_range": lambda: figure(now.very_low_pct + now.low_pct),
        "gmi": lambda: figure(now.gmi_pct),
        "cgm_use": lambda: figure(now.cgm_use_pct),
        "time_in_range_change": lambda: figure(now.in_range_pct - before.in_range_pct),
    }
    values = primary[sort]()
    return lambda at: (values[at], folded[at], ids[at])

"""Stats of a patient, daily aggregates kept up to date, and the triage of a population.

Services flush but never commit; the command, request or job owns the transaction.

Daily aggregates (:class:`~glucoshare.summaries.models.DailySummary`) follow the data: an import
(or any other way data lands) calls :func:`mark_outdated` in its own transaction, which records the
affected span in the backlog at the cost of one row; :func:`refresh_outdated` recomputes those days
from the stored readings, afterwards in its own transaction (the command line does it right after
an import) and, for any patient still in the backlog, before a population is read. Readers never
see stale aggregates, and an import does not wait for them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
import zoneinfo
from collections.abc import Sequence
from typing import Any

import numpy as np
from sqlalchemy import Select, case, delete, func, insert, select
from sqlalchemy.orm import Session

from glucoshare.accounts.models import Patient
from glucoshare.accounts.service import patient_emails
from glucoshare.analytics.coverage import one_per_slot, sampling_interval
from glucoshare.analytics.population import CATEGORIES, SUM_COLUMNS, PeriodFigures, period_figures, triage
from glucoshare.analytics.ranges import TargetRange, classify_readings, target_range
from glucoshare.audit.service import record_event
from glucoshare.audit.tags import AuditTag
from glucoshare.db.base import utcnow
from glucoshare.db.upsert import upsert_into
from glucoshare.records.periods import local_day_start_ms
from glucoshare.summaries.data import latest_cgm_ms, load_cgm, load_therapy
from glucoshare.summaries.errors import InvalidStatsPeriodError, InvalidTargetRangeError
from glucoshare.summaries.models import DailySummary, PeriodSummary, SummaryBacklog
from glucoshare.summaries.schemas import ComparisonOut, PopulationOut, StatsOut, TriagePatientOut
from glucoshare.summaries.stats import Period, compute_stats

DEFAULT_DAYS = 14
TRIAGE_PERIODS = (1, 7, 14, 30)
MAX_DAYS = 3660
DAY_MS = 86_400_000
EXTREME_HIGH_MGDL = 350.0
_EPOCH_DATE = dt.date(1970, 1, 1)


PatientSelection = Sequence[str] | Select[Any]
"""Some patients: their ids, or a query that selects them (a subquery keeps large lists out of SQL)."""


def target_of(patient: Patient) -> TargetRange:
    """The patient's target range and goals."""
    try:
        return target_range(patient.target_scheme, patient.target_low_mgdl, patient.target_high_mgdl)
    except ValueError as exc:
        raise InvalidTargetRangeError(str(exc)) from exc


def _local_date(utc_ms: int, timezone: str) -> dt.date:
    return dt.datetime.fromtimestamp(utc_ms / 1000, tz=zoneinfo.ZoneInfo(timezone)).date()


def resolve_period(
    session: Session,
    patient: Patient,
    *,
    days: int | None = None,
    first: dt.date | None = None,
    last: dt.date | None = None,
) -> Period:
    """The stats period (module :mod:`glucoshare.summaries.stats` describes the rules).

    ``first``/``last`` are inclusive local dates; with only one of them the period runs ``days``
    (default 14) days from or to it; without them it ends with the day of the latest reading.
    """
    count = DEFAULT_DAYS if days is None else days
    if count < 1 or count > MAX_DAYS:
        msg = f"--days must be between 1 and {MAX_DAYS}"
        raise InvalidStatsPeriodError(msg)
    if last is None:
        if first is not None:
            last = first + dt.timedelta(days=count - 1)
        else:
            latest = latest_cgm_ms(session, patient.id)
            now_ms = int(time.time() * 1000)
            last = _local_date(latest if latest is not None else now_ms, patient.timezone)
    if first is None:
        first = last - dt.timedelta(days=count - 1)
    if last < first:
        msg = "--to is before --from"
        raise InvalidStatsPeriodError(msg)
    if (last - first).days + 1 > MAX_DAYS:
        msg = f"a period can be at most {MAX_DAYS} days"
        raise InvalidStatsPeriodError(msg)
    return Period(
        first=first,
        last=last,
        start_ms=local_day_start_ms(first, patient.timezone),
        end_ms=local_day_start_ms(last + dt.timedelta(days=1), patient.timezone),
    )


def patient_stats(session: Session, patient: Patient, period: Period, *, actor: str) -> StatsOut:
    """The stats document of ``patient`` over ``period``; the read is audited."""
    cgm = load_cgm(session, patient.id, patient.timezone, period.start_ms, period.end_ms)
    therapy = load_therapy(session, patient.id, patient.timezone, period.start_ms, period.end_ms)
    stats = compute_stats(
        patient=patient.email,
        timezone=patient.timezone,
        display_units=patient.display_units,
        target=target_of(patient),
        period=period,
        cgm=cgm,
        therapy=therapy,
        latest_ms=latest_cgm_ms(session, patient.id),
    )
    record_event(
        session,
        actor=actor,
        action=AuditTag.STATS_READ,
        patient_id=patient.id,
        details={"from": stats.from_, "to": stats.to},
    )
    return stats


def previous_period(period: Period, timezone: str) -> Period:
    """The period of the same number of days just before ``period``."""
    last = period.first - dt.timedelta(days=1)
    first = last - dt.timedelta(days=period.days - 1)
    return Period(
        first=first,
        last=last,
        start_ms=local_day_start_ms(first, timezone),
        end_ms=local_day_start_ms(last + dt.timedelta(days=1), timezone),
    )


def compare_periods(
    session: Session, patient: Patient, current: Period, previous: Period, *, actor: str
) -> ComparisonOut:
    """Two periods' stats side by side with the change of every number (both reads are audited)."""
    now = patient_stats(session, patient, current, actor=actor)
    before = patient_stats(session, patient, previous, actor=actor)
    changes: dict[str, float | None] = {}
    for name, value in now.model_dump().items():
        old = getattr(before, name)
        if isinstance(value, bool) or not isinstance(value, int | float) or name == "days":
            continue
        changes[name] = None if value is None or old is None else float(value) - float(old)
    for name in ("time_in_target_pct", "time_below_target_pct", "time_above_target_pct"):
        value, old = getattr(now.target, name), getattr(before.target, name)
        changes[f"target_{name}"] = None if value is None or old is None else value - old
    return ComparisonOut(current=now, previous=before, changes=changes)


def mark_outdated(session: Session, patient_id: str, first_ms: int, last_ms: int, reason: str) -> None:
    """Note that the patient's daily aggregates between two instants (UTC ms) need recomputing.

    One upsert, so that it holds against a concurrent refresh that removes the patient's entry (a
    read, then an update, would find the row gone and fail).
    """
    session.flush()
    upsert = upsert_into(session, SummaryBacklog).values(
        patient_id=patient_id, first_ms=first_ms, last_ms=last_ms, reason=reason, since=utcnow()
    )
    stored = SummaryBacklog.__table__.c
    session.execute(
        upsert.on_conflict_do_update(
            index_elements=[stored.patient_id],
            set_={
                "first_ms": case(
                    (stored.first_ms < upsert.excluded.first_ms, stored.first_ms),
                    else_=upsert.excluded.first_ms,
                ),
                "last_ms": case(
                    (stored.last_ms > upsert.excluded.last_ms, stored.last_ms), else_=upsert.excluded.last_ms
                ),
                "reason": reason,
            },
        )
    )


def refresh_outdated(session: Session, patient_ids: PatientSelection | None = None) -> int:
    """Recompute the daily aggregates of every patient in the backlog (or of those given).

    On PostgreSQL the backlog entries are locked while their patients are refreshed, and entries
    that another transaction is refreshing are skipped (``FOR UPDATE SKIP LOCKED``): two servers,
    workers or requests never refresh the same patient at once. Returns how many patients were
    refreshed.
    """
    query = (
        select(SummaryBacklog)
        .with_for_update(skip_locked=True)
        .execution_options(populate_existing=True)  # the entry as stored now (upserts bypass the session)
    )
    if patient_ids is not None:
        query = query.where(SummaryBacklog.patient_id.in_(patient_ids))
    entries = list(session.scalars(query))
    for entry in entries:
        patient = session.get(Patient, entry.patient_id)
        if patient is not None:
            refresh_days(session, patient, entry.first_ms, entry.last_ms)
        session.delete(entry)
    session.flush()
    return len(entries)


def refresh_days(session: Session, patient: Patient, first_ms: int, last_ms: int) -> None:
    """Recompute the patient's daily aggregates of every local day touched by ``[first_ms, last_ms]``."""
    first_day = _local_date(first_ms, patient.timezone)
    last_day = _local_date(last_ms, patient.timezone)
    start = local_day_start_ms(first_day, patient.timezone)
    end = local_day_start_ms(last_day + dt.timedelta(days=1), patient.timezone)
    day_numbers = ((first_day - _EPOCH_DATE).days, (last_day - _EPOCH_DATE).days)
    session.execute(
        delete(DailySummary).where(
            DailySummary.patient_id == patient.id,
            DailySummary.day >= day_numbers[0],
            DailySummary.day <= day_numbers[1],
        )
    )
    cgm = load_cgm(session, patient.id, patient.timezone, start, end)
    if cgm.utc_ms.size == 0:
        refresh_periods(session, patient.id)
        return
    interval = sampling_interval(cgm.utc_ms)
    cgm = cgm.take(one_per_slot(cgm.utc_ms, interval))
    days, index = np.unique(cgm.local_ms // DAY_MS, return_inverse=True)
    size = days.size
    bands, tight = classify_readings(cgm.mgdl, cgm.mmol)
    band_counts = np.bincount(index * 5 + bands, minlength=size * 5).reshape(size, 5)
    rows = [
        {
            "patient_id": patient.id,
            "day": int(day),
            "readings": int(readings),
            "interval_min": interval,
            "very_low": int(counts[0]),
            "low": int(counts[1]),
            "in_range": int(counts[2]),
            "high": int(counts[3]),
            "very_high": int(counts[4]),
            "tight": int(tight_count),
            "extreme_high": int(extreme),
            "sum_mgdl": float(total),
            "sum_sq_mgdl": float(squares),
            "last_ms": int(last),
        }
        for day, readings, counts, tight_count, extreme, total, squares, last in zip(
            days.tolist(),
            np.bincount(index, minlength=size).tolist(),
            band_counts.tolist(),
            np.bincount(index, weights=tight, minlength=size).tolist(),
            np.bincount(index, weights=cgm.mgdl >= EXTREME_HIGH_MGDL, minlength=size).tolist(),
            np.bincount(index, weights=cgm.mgdl, minlength=size).tolist(),
            np.bincount(index, weights=cgm.mgdl * cgm.mgdl, minlength=size).tolist(),
            _last_per_group(cgm.utc_ms, index, size),
            strict=True,
        )
    ]
    session.execute(insert(DailySummary), rows)
    refresh_periods(session, patient.id)
    session.flush()


def _last_per_group(values: np.ndarray, index: np.ndarray, size: int) -> list[int]:
    out = np.full(size, np.iinfo(np.int64).min, np.int64)
    np.maximum.at(out, index, values)
    return [int(v) for v in out.tolist()]


def refresh_periods(session: Session, patient_id: str) -> None:
    """Rewrite the patient's period summaries (the triage periods, ending with the last data day)."""
    session.execute(delete(PeriodSummary).where(PeriodSummary.patient_id == patient_id))
    last_day = session.scalar(select(func.max(DailySummary.day)).where(DailySummary.patient_id == patient_id))
    if last_day is None:
        return
    longest = max(TRIAGE_PERIODS)
    rows = session.execute(
        select(DailySummary.day, DailySummary.interval_min, DailySummary.last_ms, *_DAILY_SUMS).where(
            DailySummary.patient_id == patient_id, DailySummary.day > last_day - 2 * longest
        )
    ).all()
    day = np.array([row[0] for row in rows], np.int64)
    # minutes covered = readings × sampling interval
    table = np.array([[*row[3:], row[3] * row[1]] for row in rows], np.float64).reshape(-1, len(SUM_COLUMNS))
    last_ms = max(int(row[2]) for row in rows)
    out = []
    for days in TRIAGE_PERIODS:
        for previous in (False, True):
            high = last_day - (days if previous else 0)
            inside = (day > high - days) & (day <= high)
            sums = table[inside].sum(axis=0)
            if not previous or sums[0] > 0:
                out.append(
                    _period_row(
                        patient_id, days, previous, last_day=int(last_day), last_ms=last_ms, sums=sums
                    )
                )
    session.execute(insert(PeriodSummary), out)


_DAILY_SUMS = (
    DailySummary.readings,
    DailySummary.very_low,
    DailySummary.low,
    DailySummary.in_range,
    DailySummary.high,
    DailySummary.very_high,
    DailySummary.tight,
    DailySummary.extreme_high,
    DailySummary.sum_mgdl,
    DailySummary.sum_sq_mgdl,
)


def _period_row(
    patient_id: str, days: int, previous: bool, *, last_day: int, last_ms: int, sums: np.ndarray
) -> dict[str, object]:
    row: dict[str, object] = {
        "patient_id": patient_id,
        "days": days,
        "previous": previous,
        "last_day": last_day,
        "last_ms": last_ms,
    }
    for name, value in zip(SUM_COLUMNS, sums.tolist(), strict=True):
        row[name] = value if name in ("sum_mgdl", "sum_sq_mgdl", "minutes") else round(value)
    return row


@dataclasses.dataclass(frozen=True, slots=True)
class Population:
    """A triaged population: per-patient figure arrays and categories, in patient order."""

    days: int
    patient_ids: list[str]
    emails: list[str]
    categories: list[str]
    current: PeriodFigures
    previous: PeriodFigures
    last_ms: np.ndarray

    def order(self) -> list[int]:
        """Patient indexes by category priority, then time in range (lowest first), then e-mail."""
        rank = {name: at for at, name in enumerate(CATEGORIES)}
        in_range = np.nan_to_num(self.current.in_range_pct).tolist()
        return sorted(
            range(len(self.patient_ids)),
            key=lambda at: (rank[self.categories[at]], in_range[at], self.emails[at]),
        )

    def out(self, limit: int | None = None) -> PopulationOut:
        """The document (``limit``: at most that many patients, in triage order)."""
        counts = dict.fromkeys(CATEGORIES, 0)
        for category in self.categories:
            counts[category] += 1
        patients = [
            TriagePatientOut.build(
                patient_id=self.patient_ids[at],
                email=self.emails[at],
                category=self.categories[at],
                current=self.current,
                previous=self.previous,
                at=at,
                last_ms=int(self.last_ms[at]) if self.last_ms[at] >= 0 else None,
            )
            for at in self.order()[:limit]
        ]
        return PopulationOut(days=self.days, counts=counts, patients=patients)


def population(
    session: Session,
    *,
    patient_ids: PatientSelection | None = None,
    days: int = DEFAULT_DAYS,
    now_ms: int | None = None,
    recent_days: int | None = None,
    with_emails: bool = True,
) -> Population:
    """Triage a population from its period summaries (categories: :mod:`glucoshare.analytics.population`).

    Each patient's figures over their last ``days`` days of data (ending with the day of their
    latest reading) and the change against the ``days`` before. A patient whose latest reading is
    more than ``recent_days`` (default ``days``) days before ``now_ms`` is ``no_data``, whatever
    their older figures. Patients still in the backlog are refreshed first. ``with_emails=False`` skips
    opening the addresses (the patients are then labelled and ordered by id), for callers that label
    patients themselves.
    """
    people = select(Patient.id)
    if patient_ids is not None:
        people = people.where(Patient.id.in_(patient_ids))
    ids = list(session.scalars(people))
    emails = patient_emails(session, ids) if with_emails else {patient_id: patient_id for patient_id in ids}
    ids.sort(key=emails.__getitem__)
    return triage_patients(
        session,
        ids,
        [emails[patient_id] for patient_id in ids],
        selection=patient_ids,
        days=days,
        now_ms=now_ms,
        recent_days=recent_days,
    )


def triage_patients(
    session: Session,
    patient_ids: list[str],
    labels: list[str],
    *,
    selection: PatientSelection | None,
    days: int = DEFAULT_DAYS,
    now_ms: int | None = None,
    recent_days: int | None = None,
) -> Population:
    """:func:`population` of the patients the caller has found already (``selection`` holds them all).

    ``patient_ids`` and their ``labels`` are kept in the order given; ``selection`` (``None``: every
    patient) narrows the summaries read, which are then matched to ``patient_ids``.
    """
    if days not in TRIAGE_PERIODS:
        msg = f"the triage period is one of {', '.join(map(str, TRIAGE_PERIODS))} days"
        raise InvalidStatsPeriodError(msg)
    now = int(time.time() * 1000) if now_ms is None else now_ms
    refresh_outdated(session, selection)
    summaries = select(
        PeriodSummary.patient_id, PeriodSummary.previous, PeriodSummary.last_ms, *_PERIOD_SUMS
    ).where(PeriodSummary.days == days)
    if selection is not None:
        summaries = summaries.where(PeriodSummary.patient_id.in_(selection))
    position = {patient_id: at for at, patient_id in enumerate(patient_ids)}
    width = len(SUM_COLUMNS)
    # Core rows (no ORM bookkeeping) into arrays column by column: a clinic may have thousands.
    rows = session.connection().execute(summaries).all()
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in range(3 + width)]
    at = np.fromiter((position.get(pid, -1) for pid in columns[0]), np.intp, len(rows))
    ours = at >= 0
    is_previous = np.asarray(columns[1], np.bool_).reshape(-1) & ours
    is_current = ~is_previous & ours
    sums = np.asarray(columns[3:], np.float64).reshape(width, len(rows)).T
    current = np.zeros((len(patient_ids), width))
    previous = np.zeros((len(patient_ids), width))
    current[at[is_current]] = sums[is_current]
    previous[at[is_previous]] = sums[is_previous]
    last_ms = np.full(len(patient_ids), -1, np.int64)
    last_ms[at[ours]] = np.asarray(columns[2], np.int64).reshape(-1)[ours]
    now_figures, before = period_figures(current, days), period_figures(previous, days)
    recent = last_ms >= now - (recent_days or days) * DAY_MS
    return Population(
        days=days,
        patient_ids=list(patient_ids),
        emails=list(labels),
        categories=triage(now_figures, before, recent),
        current=now_figures,
        previous=before,
        last_ms=last_ms,
    )


_PERIOD_SUMS = tuple(getattr(PeriodSummary, name) for name in SUM_COLUMNS)

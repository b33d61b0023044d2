"""The clinic patient list over real period summaries: every sort key, tags, categories and counts."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import insert
from sqlalchemy.orm import Session

from glucoshare.accounts.models import Patient
from glucoshare.analytics.population import CATEGORIES
from glucoshare.sharing.models import Clinic, Share
from glucoshare.sharing.patient_list import SortKey, clinic_patients
from glucoshare.sharing.service import mrn_lookup
from glucoshare.summaries.models import DailySummary
from glucoshare.summaries.service import refresh_periods

DAY_MS = 86_400_000
NOW = dt.datetime(2026, 11, 20, 12, tzinfo=dt.UTC)
TODAY = (NOW.date() - dt.date(1970, 1, 1)).days


def _days(
    patient_id: str, *, in_range: int, low: int, high: int, days: int = 14, start: int = 0
) -> list[dict]:
    """Daily summaries of ``days`` days ending ``start`` days before today, 288 readings a day."""
    rows = []
    for k in range(start, start + days):
        n = in_range + low + high
        rows.append(
            {
                "patient_id": patient_id,
                "day": TODAY - k,
                "readings": n,
                "interval_min": 5,
                "very_low": 0,
                "low": low,
                "in_range": in_range,
                "high": high,
                "very_high": 0,
                "tight": in_range // 2,
                "extreme_high": 0,
                "sum_mgdl": 140.0 * n,
                "sum_sq_mgdl": 140.0 * 140.0 * n + 900.0 * n,
                "last_ms": (TODAY - k) * DAY_MS + 80_000_000,
            }
        )
    return rows


@pytest.fixture
def clinic(session: Session) -> Clinic:
    """A clinic with four patients: good control, many lows, a drop versus before, and no data."""
    clinic = Clinic(
        name="List Clinic", details={}, share_code="LIST-CLNC-TEST", patient_tags=["pump", "pump 2"]
    )
    session.add(clinic)
    session.flush()
    people = {
        "dora": ("Dora Good", ["pump"], _days("dora", in_range=270, low=3, high=15)),
        "eli": ("eli Lows", ["pump 2"], _days("eli", in_range=200, low=40, high=48)),
        "fay": (
            "Fay Drop",
            ["pump", "pump 2"],
            _days("fay", in_range=220, low=2, high=66) + _days("fay", in_range=280, low=0, high=8, start=14),
        ),
        "gus": ("Gus None", [], []),
    }
    for number, (pid, (name, tags, rows)) in enumerate(people.items()):
        session.add(
            Patient(
                id=pid,
                email=f"{pid}@example.org",
                name=name,
                birthdate=dt.date(1980, 1, 1 + number),
                timezone="UTC",
                display_units="mg/dL",
            )
        )
        session.flush()
        share = Share(patient_id=pid, clinic_id=clinic.id, permissions=["view"], tags=tags, created_by="test")
        share.mrn = f"MRN{number}"
        share.mrn_lookup = mrn_lookup(session, clinic.id, share.mrn)
        share.created_at = NOW - dt.timedelta(days=10 - number)
        session.add(share)
        if rows:
            session.execute(insert(DailySummary), rows)
        session.flush()
        refresh_periods(session, pid)
    session.flush()
    return clinic


def _names(session: Session, clinic: Clinic, **options: object) -> list[str]:
    listing = clinic_patients(session, clinic, now_ms=int(NOW.timestamp() * 1000), **options)  # type: ignore[arg-type]
    return [row.name for row in listing.patients]


@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        ("name", ["Dora Good", "eli Lows", "Fay Drop", "Gus None"]),
        ("added", ["Dora Good", "eli Lows", "Fay Drop", "Gus None"]),
        ("time_in_range", ["Gus None", "eli Lows", "Fay Drop", "Dora Good"]),
        ("time_below_range", ["Gus None", "Fay Drop", "Dora Good", "eli Lows"]),
        ("last_data", ["Gus None", "Dora Good", "eli Lows", "Fay Drop"]),
        ("triage", ["eli Lows", "Fay Drop", "Dora Good", "Gus None"]),
    ],
)
def test_each_sort_orders_by_its_figure_then_by_name(
    session: Session, clinic: Clinic, sort: SortKey, expected: list[str]
) -> None:
    assert _names(session, clinic, sort=sort) == expected
    assert _names(session, clinic, sort=sort, descending=True) == expected[::-1]


def test_the_change_against_the_previous_period_is_sorted_and_triaged(
    session: Session, clinic: Clinic
) -> None:
    listing = clinic_patients(
        session, clinic, sort="time_in_range_change", now_ms=int(NOW.timestamp() * 1000)
    )
    fay = next(row for row in listing.patients if row.name == "Fay Drop")
    assert fay.time_in_range_change_pct is not None
    assert fay.time_in_range_change_pct < -15
    assert fay.category == "drop_in_target"
    # Without a previous period there is no change: those patients sort lowest, by name.
    assert [row.name for row in listing.patients] == ["Dora Good", "eli Lows", "Gus None", "Fay Drop"]
    assert [row.time_in_range_change_pct for row in listing.patients[:3]] == [None, None, None]


def test_tags_match_whole_tags_only(session: Session, clinic: Clinic) -> None:
    assert _names(session, clinic, tag="pump", sort="name") == ["Dora Good", "Fay Drop"]
    assert _names(session, clinic, tag="pump 2", sort="name") == ["eli Lows", "Fay Drop"]
    assert _names(session, clinic, tag="pum", sort="name") == []


def test_counts_cover_every_match_and_category_filters(session: Session, clinic: Clinic) -> None:
    listing = clinic_patients(session, clinic, limit=1, now_ms=int(NOW.timestamp() * 1000))
    assert listing.total == 4
    assert len(listing.patients) == 1
    assert set(listing.counts) == set(CATEGORIES)
    assert sum(listing.counts.values()) == 4
    assert listing.counts["no_data"] == 1
    only = clinic_patients(session, clinic, category="no_data", now_ms=int(NOW.timestamp() * 1000))
    assert [row.name for row in only.patients] == ["Gus None"]
    assert only.counts["no_data"] == 1
    assert sum(only.counts.values()) == 1


def test_search_finds_names_mrns_and_birth_dates(session: Session, clinic: Clinic) -> None:
    assert _names(session, clinic, search="ELI", sort="name") == ["eli Lows"]
    assert _names(session, clinic, search=" mrn2 ") == ["Fay Drop"]
    assert _names(session, clinic, search="1980-01-04") == ["Gus None"]
    assert _names(session, clinic, search="nobody") == []


def test_a_revoked_share_leaves_the_list(session: Session, clinic: Clinic) -> None:
    share = session.query(Share).filter_by(patient_id="dora").one()
    share.revoked_at = NOW
    session.flush()
    assert "Dora Good" not in _names(session, clinic, sort="name")

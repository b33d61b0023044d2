"""Outputs of the summaries domain: the stats document (CONTRACT.md) and the clinic triage."""

from __future__ import annotations

import math

import numpy as np
from pydantic import BaseModel, Field

from glucoshare.analytics.population import PeriodFigures
from glucoshare.records.schemas import iso_utc


class GoalsOut(BaseModel):
    """Consensus goals of the patient's target scheme (percent of readings; ``None``: no goal)."""

    in_target_min_pct: float | None
    below_max_pct: float | None
    very_low_max_pct: float | None
    above_max_pct: float | None
    very_high_max_pct: float | None
    cv_max_pct: float


class TargetOut(BaseModel):
    """The patient's target range, the time in it and whether the goals are met."""

    scheme: str
    low_mgdl: float
    high_mgdl: float
    time_in_target_pct: float | None
    time_below_target_pct: float | None
    time_above_target_pct: float | None
    goals: GoalsOut
    goals_met: dict[str, bool]


class PatternOut(BaseModel):
    """A pattern with its evidence (:mod:`glucoshare.analytics.patterns`)."""

    kind: str
    summary: str
    window_start: str
    window_end: str
    dates: list[str]
    occurrences: int
    days_observed: int
    worst_mgdl: float | None


class StatsOut(BaseModel):
    """``glucoshare stats --json`` and ``GET /v1/patients/{id}/stats``.

    The fields up to ``carbs_daily_g`` are CONTRACT.md's, in its order: percentages 0–100, glucose
    in mg/dL whatever the display unit, ``None`` where not computable; the rest are additions.
    """

    patient: str
    from_: str = Field(serialization_alias="from")
    to: str
    days: int
    readings: int
    sensor_active_pct: float | None
    sufficient_data: bool
    mean_mgdl: float | None
    sd_mgdl: float | None
    cv_pct: float | None
    gmi_pct: float | None
    time_very_low_pct: float | None
    time_low_pct: float | None
    time_in_range_pct: float | None
    time_high_pct: float | None
    time_very_high_pct: float | None
    time_tight_range_pct: float | None
    time_below_range_pct: float | None
    time_above_range_pct: float | None
    gri: float | None
    gri_hypo: float | None
    gri_hyper: float | None
    lbgi: float | None
    hbgi: float | None
    mage_mgdl: float | None
    modd_mgdl: float | None
    conga1_mgdl: float | None
    j_index: float | None
    hypo_events_l1: int | None
    hypo_events_l2: int | None
    hyper_events_l1: int | None
    hyper_events_l2: int | None
    insulin_total_daily_u: float | None
    insulin_basal_pct: float | None
    carbs_daily_g: float | None
    # Additions.
    timezone: str
    display_units: str
    sensor_interval_min: int | None
    days_with_cgm: int
    gmi_mmol_mol: float | None
    mage_service_mgdl: float | None
    """MAGE counting only the direction of the first excursion (Service 1970)."""
    gri_zone: str | None
    hypo_events_extended: int | None
    nocturnal_hypo_events: int | None
    insulin_basal_daily_u: float | None
    insulin_bolus_daily_u: float | None
    boluses_daily: float | None
    time_in_automated_pct: float | None
    days_with_insulin: int
    days_with_carbs: int
    site_changes: int
    days_between_site_changes: float | None
    target: TargetOut
    patterns: list[PatternOut]

    def document(self) -> dict[str, object]:
        """The JSON document (``from`` is a Python keyword, hence ``from_`` here)."""
        return self.model_dump(by_alias=True)


class PeriodOut(BaseModel):
    """A patient's figures over one period of a triage (from the daily aggregates)."""

    readings: int
    cgm_use_pct: float
    mean_mgdl: float | None
    sd_mgdl: float | None
    gmi_pct: float | None
    time_very_low_pct: float | None
    time_low_pct: float | None
    time_in_range_pct: float | None
    time_high_pct: float | None
    time_very_high_pct: float | None
    time_tight_range_pct: float | None
    time_extreme_high_pct: float | None


class TriagePatientOut(BaseModel):
    """One patient of a population triage."""

    patient_id: str
    email: str
    category: str
    current: PeriodOut
    previous: PeriodOut
    time_in_range_delta_pct: float | None
    last_data: str | None

    @classmethod
    def build(
        cls,
        *,
        patient_id: str,
        email: str,
        category: str,
        current: PeriodFigures,
        previous: PeriodFigures,
        at: int,
        last_ms: int | None,
    ) -> TriagePatientOut:
        """The patient at index ``at`` of the population's figure arrays (trusted values, not revalidated)."""
        now, before = _period(current, at), _period(previous, at)
        delta = (
            None
            if now.time_in_range_pct is None or before.time_in_range_pct is None
            else now.time_in_range_pct - before.time_in_range_pct
        )
        return cls.model_construct(
            patient_id=patient_id,
            email=email,
            category=category,
            current=now,
            previous=before,
            time_in_range_delta_pct=delta,
            last_data=iso_utc(last_ms),
        )


def _number(array: np.ndarray, at: int) -> float | None:
    value = float(array[at])
    return value if math.isfinite(value) else None


def _period(figures: PeriodFigures, at: int) -> PeriodOut:
    return PeriodOut.model_construct(
        readings=int(figures.readings[at]),
        cgm_use_pct=float(figures.cgm_use_pct[at]),
        mean_mgdl=_number(figures.mean_mgdl, at),
        sd_mgdl=_number(figures.sd_mgdl, at),
        gmi_pct=_number(figures.gmi_pct, at),
        time_very_low_pct=_number(figures.very_low_pct, at),
        time_low_pct=_number(figures.low_pct, at),
        time_in_range_pct=_number(figures.in_range_pct, at),
        time_high_pct=_number(figures.high_pct, at),
        time_very_high_pct=_number(figures.very_high_pct, at),
        time_tight_range_pct=_number(figures.tight_pct, at),
        time_extreme_high_pct=_number(figures.extreme_high_pct, at),
    )


class PopulationOut(BaseModel):
    """A triaged population: how many patients per category, and the patients in triage order."""

    days: int
    counts: dict[str, int]
    patients: list[TriagePatientOut]


class ComparisonOut(BaseModel):
    """Two periods side by side (CareLink's "Assessment & Progress"), with the changes.

    ``changes`` holds, for every number of the stats document, current minus previous (``None``
    where either is missing); percentages change in percentage points.
    """

    current: StatsOut
    previous: StatsOut
    changes: dict[str, float | None]

    def document(self) -> dict[str, object]:
        """The JSON document."""
        return {
            "current": self.current.document(),
            "previous": self.previous.document(),
            "changes": self.changes,
        }

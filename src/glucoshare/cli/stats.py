"""``glucoshare stats --patient E [--days N | --from D --to D] --json`` and ``glucoshare triage``."""

from __future__ import annotations

from typing import Annotated

import typer

from glucoshare.accounts.service import get_patient
from glucoshare.audit.service import record_event
from glucoshare.audit.tags import AuditTag
from glucoshare.cli.runtime import (
    DaysOption,
    FromOption,
    JsonOption,
    PatientOption,
    ToOption,
    actor,
    handle_errors,
    print_json,
    stdout,
    unit_of_work,
)
from glucoshare.records.periods import parse_local_date
from glucoshare.records.vocabulary import mgdl_to_mmol
from glucoshare.summaries.schemas import PopulationOut, StatsOut
from glucoshare.summaries.service import (
    compare_periods,
    patient_stats,
    population,
    previous_period,
    resolve_period,
)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} %"


def _num(value: float | None, unit: str = "", digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}{unit}"


@handle_errors
def stats_command(
    patient: PatientOption,
    days: DaysOption = None,
    from_: FromOption = None,
    to: ToOption = None,
    as_json: JsonOption = False,
) -> None:
    """CGM, insulin and carbohydrate statistics of a patient, in the patient's time zone."""
    first = parse_local_date(from_, "--from") if from_ else None
    last = parse_local_date(to, "--to") if to else None
    with unit_of_work() as session:
        person = get_patient(session, patient)
        period = resolve_period(session, person, days=days, first=first, last=last)
        stats = patient_stats(session, person, period, actor=actor())
    if as_json:
        print_json(stats.document())
    else:
        _print_stats(stats)


def _glucose(value: float | None, units: str) -> str:
    """A glucose value in the patient's display unit (the JSON document stays in mg/dL)."""
    if value is None:
        return "-"
    if units == "mmol/L":
        return f"{mgdl_to_mmol(value):.1f} mmol/L"
    return f"{value:.0f} mg/dL"


def _print_stats(stats: StatsOut) -> None:
    units = stats.display_units
    lines = [
        f"{stats.patient}: {stats.from_} to {stats.to} ({stats.days} days, {stats.timezone})",
        f"  readings {stats.readings}, sensor active {_pct(stats.sensor_active_pct)}"
        + ("" if stats.sufficient_data else "  (not enough data for a reliable picture)"),
        f"  mean {_glucose(stats.mean_mgdl, units)}, GMI {_pct(stats.gmi_pct)}, CV {_pct(stats.cv_pct)}",
        (
            f"  very low {_pct(stats.time_very_low_pct)}, low {_pct(stats.time_low_pct)}, "
            f"in range {_pct(stats.time_in_range_pct)}, high {_pct(stats.time_high_pct)}, "
            f"very high {_pct(stats.time_very_high_pct)}"
        ),
        (
            f"  GRI {_num(stats.gri)} ({stats.gri_zone or '-'}), MAGE {_glucose(stats.mage_mgdl, units)}, "
            f"hypo events {stats.hypo_events_l1 if stats.hypo_events_l1 is not None else '-'}"
        ),
        (
            f"  insulin {_num(stats.insulin_total_daily_u, ' U/day')}, "
            f"basal {_pct(stats.insulin_basal_pct)}, "
            f"carbs {_num(stats.carbs_daily_g, ' g/day', 0)}"
        ),
    ]
    for line in lines:
        stdout.print(line, markup=False, soft_wrap=True)


@handle_errors
def compare_command(
    patient: PatientOption,
    days: DaysOption = None,
    from_: FromOption = None,
    to: ToOption = None,
    against_from: Annotated[
        str | None,
        typer.Option("--against-from", help="First local date to compare with (default: the days before)."),
    ] = None,
    against_to: Annotated[
        str | None, typer.Option("--against-to", help="Last local date to compare with.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Compare a period with the one before it (or another), number by number."""
    first = parse_local_date(from_, "--from") if from_ else None
    last = parse_local_date(to, "--to") if to else None
    with unit_of_work() as session:
        person = get_patient(session, patient)
        period = resolve_period(session, person, days=days, first=first, last=last)
        if against_from or against_to:
            other = resolve_period(
                session,
                person,
                days=period.days,
                first=parse_local_date(against_from, "--against-from") if against_from else None,
                last=parse_local_date(against_to, "--against-to") if against_to else None,
            )
        else:
            other = previous_period(period, person.timezone)
        result = compare_periods(session, person, period, other, actor=actor())
    if as_json:
        print_json(result.document())
        return
    now, before = result.current, result.previous
    stdout.print(
        f"{now.patient}: {now.from_} to {now.to} against {before.from_} to {before.to}", markup=False
    )
    for name, label in (
        ("time_in_range_pct", "in range"),
        ("time_below_range_pct", "below range"),
        ("time_above_range_pct", "above range"),
        ("mean_mgdl", "mean"),
        ("gmi_pct", "GMI"),
        ("cv_pct", "CV"),
        ("sensor_active_pct", "sensor active"),
        ("insulin_total_daily_u", "insulin per day"),
    ):
        change = result.changes.get(name)
        stdout.print(
            f"  {label:<16} {_num(getattr(before, name))} → {_num(getattr(now, name))}"
            f"  ({'-' if change is None else f'{change:+.1f}'})",
            markup=False,
        )


@handle_errors
def triage_command(
    days: Annotated[int, typer.Option(help="Days of the period: 1, 7, 14 or 30.")] = 14,
    as_json: JsonOption = False,
) -> None:
    """Every patient with their figures over the last days, grouped by triage category."""
    with unit_of_work() as session:
        result = population(session, days=days).out()
        record_event(
            session,
            actor=actor(),
            action=AuditTag.POPULATION_READ,
            details={"days": days, "patients": len(result.patients)},
        )
    if as_json:
        print_json(result)
    else:
        _print_population(result)


def _print_population(result: PopulationOut) -> None:
    for patient in result.patients:
        current = patient.current
        stdout.print(
            f"{patient.category:<16} {patient.email:<40} in range {_pct(current.time_in_range_pct)}, "
            f"CGM use {_pct(current.cgm_use_pct)}, mean {_num(current.mean_mgdl, ' mg/dL')}",
            markup=False,
            soft_wrap=True,
        )

"""``glucoshare diary add --patient E --time T [values...]``: a row of the manual diary."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import typer
from pydantic import ValidationError

from glucoshare.accounts.service import get_patient
from glucoshare.cli.runtime import (
    JsonOption,
    PatientOption,
    actor,
    handle_errors,
    print_json,
    refresh_summaries,
    settings,
    stdout,
    unit_of_work,
)
from glucoshare.errors import InputError
from glucoshare.ingest.diary import DiaryEntry, add_diary_entries

app = typer.Typer(
    help="The manual diary: glucose, insulin, carbohydrate, notes and ratios.", no_args_is_help=True
)
Amount = Annotated[float | None, typer.Option(min=0.0)]


@app.command("add")
@handle_errors
def add_command(
    patient: PatientOption,
    time: Annotated[str, typer.Option(help="Local time, YYYY-MM-DDTHH:MM (or with an offset).")],
    glucose: Amount = None,
    unit: Annotated[str | None, typer.Option(help="mg/dL or mmol/L (needed with glucose values).")] = None,
    rapid: Annotated[float | None, typer.Option(help="Meal insulin, units.")] = None,
    correction: Annotated[float | None, typer.Option(help="Correction insulin, units.")] = None,
    long: Annotated[float | None, typer.Option("--long", help="Background insulin, units.")] = None,
    carbs: Annotated[float | None, typer.Option(help="Carbohydrate, grams.")] = None,
    note: Annotated[str | None, typer.Option(help="A note.")] = None,
    carb_ratio: Annotated[float | None, typer.Option(help="Grams of carbohydrate per unit.")] = None,
    sensitivity: Annotated[float | None, typer.Option(help="Glucose drop per unit, in --unit.")] = None,
    target_low: Annotated[float | None, typer.Option(help="Target range, low end, in --unit.")] = None,
    target_high: Annotated[float | None, typer.Option(help="Target range, high end, in --unit.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Add one diary row for a patient; it is stored like an uploaded diary file (with provenance)."""
    try:
        moment = dt.datetime.fromisoformat(time)
    except ValueError:
        msg = "--time: not a date and time like 2026-11-20T08:15"
        raise InputError(msg) from None
    try:
        entry = DiaryEntry.model_validate(
            {
                "time": moment,
                "glucose": glucose,
                "unit": unit,
                "rapid_u": rapid,
                "correction_u": correction,
                "long_u": long,
                "carbs_g": carbs,
                "note": note,
                "carb_ratio": carb_ratio,
                "sensitivity": sensitivity,
                "target_low": target_low,
                "target_high": target_high,
            }
        )
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        msg = f"--{where.replace('_u', '').replace('_', '-')}: {message}" if where else message
        raise InputError(msg) from None
    with unit_of_work() as session:
        person = get_patient(session, patient)
        upload = add_diary_entries(session, settings(), person, [entry], actor=actor())
    refresh_summaries([upload.patient_id])
    if as_json:
        print_json(upload)
    else:
        stdout.print(
            f"added {upload.new} diary values ({upload.duplicates} were there already)", markup=False
        )

"""Diary entries typed by a person (web app, command line) go through the diary importer.

Each submission becomes a small document of the :mod:`glucoshare.ingest.glucoshare_diary` format
and is imported like any file: detected, parsed, deduplicated, stored with its raw document as
provenance, and audited. So a typed entry and an uploaded diary file are the same thing.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy.orm import Session

from glucoshare.accounts.models import Patient
from glucoshare.config import Settings
from glucoshare.errors import InputError
from glucoshare.ingest.glucoshare_diary import diary_header
from glucoshare.ingest.schemas import IncomingFile
from glucoshare.ingest.service import import_file
from glucoshare.records.schemas import UploadOut


class DiaryEntry(BaseModel):
    """One row of the diary: a time and what happened then (at least one value)."""

    model_config = ConfigDict(extra="forbid")

    time: dt.datetime = Field(description="Local time (the patient's time zone), or an instant with offset")
    glucose: float | None = Field(default=None, gt=0, le=600)
    unit: Literal["mg/dL", "mmol/L"] | None = None
    rapid_u: float | None = Field(default=None, gt=0, le=100, description="Meal insulin, units")
    correction_u: float | None = Field(default=None, gt=0, le=100, description="Correction insulin, units")
    long_u: float | None = Field(default=None, gt=0, le=100, description="Background insulin, units")
    carbs_g: float | None = Field(default=None, gt=0, le=1000)
    note: str | None = Field(default=None, min_length=1, max_length=2000)
    carb_ratio: float | None = Field(default=None, gt=0, le=150, description="Grams per unit")
    sensitivity: float | None = Field(default=None, gt=0, le=600, description="Drop per unit, in unit")
    target_low: float | None = Field(default=None, gt=0, le=600)
    target_high: float | None = Field(default=None, gt=0, le=600)

    @model_validator(mode="after")
    def _something(self) -> DiaryEntry:
        values = self.model_dump(exclude={"time", "unit"}, exclude_none=True)
        if not values:
            msg = "a diary entry needs at least one value (glucose, insulin, carbohydrate, a note or ratios)"
            raise ValueError(msg)
        glucose_fields = ("glucose", "sensitivity", "target_low", "target_high")
        if any(getattr(self, f) is not None for f in glucose_fields) and self.unit is None:
            msg = "unit: a glucose value needs its unit, mg/dL or mmol/L"
            raise ValueError(msg)
        return self


def diary_document(entries: list[DiaryEntry]) -> bytes:
    """The diary document (JSON Lines) of ``entries``, as the importer reads it."""
    lines = [diary_header()]
    for entry in entries:
        row = entry.model_dump(exclude_none=True)
        row["time"] = entry.time.isoformat(timespec="minutes")
        lines.append(json.dumps(row, ensure_ascii=False, sort_keys=True))
    return ("\n".join(lines) + "\n").encode()


def add_diary_entries(
    session: Session, settings: Settings, patient: Patient, entries: list[DiaryEntry], *, actor: str
) -> UploadOut:
    """Store typed diary entries for ``patient`` (an upload of the diary format; audited as one)."""
    if not entries:
        msg = "no diary entry to add"
        raise InputError(msg)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%f")
    incoming = IncomingFile(f"diary-{stamp}.jsonl", diary_document(entries))
    return import_file(
        session, settings=settings, patient=patient, incoming=incoming, timezone=None, actor=actor
    )

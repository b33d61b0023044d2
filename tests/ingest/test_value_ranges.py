"""The service's backstops: values out of their type's range are rejected rows; labels are quoted short."""

from __future__ import annotations

import json
import math

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Engine, select

from glucoshare.config import Settings
from glucoshare.db.session import session_scope
from glucoshare.ingest.base import MAX_SHOWN_LABEL, ReadingBlock, shown
from glucoshare.ingest.schemas import IncomingFile
from glucoshare.ingest.service import (
    GLUCOSE_CEILING_MGDL,
    IMPLAUSIBLE_GLUCOSE,
    VALUE_RANGES,
    ValueRange,
    plausible_part,
)
from glucoshare.records.models import Record, Upload
from glucoshare.records.service import dedup_key, dedup_keys
from tests.ingest.helpers import committed_upload

MS = 1_717_315_200_000  # 2024-06-02 08:00 UTC


def test_every_range_admits_its_bounds_and_refuses_beyond_them() -> None:
    for kind, span in VALUE_RANGES.items():
        assert span.admits(span.ceiling), kind
        assert not span.admits(math.nextafter(span.ceiling, math.inf)), kind
        assert not span.admits(-0.5), kind
        assert not span.admits(math.nan), kind
        assert not span.admits(math.inf), kind
        assert span.admits(0.0) is not span.glucose, kind  # glucose must be above 0; a basal may be 0
        assert span.admits(None) is not span.glucose, kind  # glucose must be there; a note has none


@given(st.floats(allow_nan=True, allow_infinity=True) | st.none())
def test_glucose_is_admitted_exactly_above_0_and_up_to_the_ceiling(value: float | None) -> None:
    span = VALUE_RANGES["cbg"]
    assert span.admits(value) == (value is not None and 0.0 < value <= GLUCOSE_CEILING_MGDL)
    assert span.reason == IMPLAUSIBLE_GLUCOSE


def test_reasons_name_the_range_and_unit() -> None:
    assert ValueRange(1000.0, "U").reason == "value out of range (0 to 1000 U)"
    assert VALUE_RANGES["food"].reason == "value out of range (0 to 10000 g)"


def test_an_import_rejects_out_of_range_values_and_stores_the_rest(
    engine: Engine, settings: Settings
) -> None:
    """Nightscout treatments carry no limits of their own: the service's ranges apply."""
    treatments = [
        {"eventType": "Correction Bolus", "insulin": 2.5, "created_at": "2024-06-02T08:00:00Z"},
        {"eventType": "Correction Bolus", "insulin": 5000, "created_at": "2024-06-02T08:05:00Z"},
        {"eventType": "Meal Bolus", "carbs": 40, "created_at": "2024-06-02T08:10:00Z"},
        {"eventType": "Meal Bolus", "carbs": 1e9, "created_at": "2024-06-02T08:15:00Z"},
        {"eventType": "Temp Basal", "rate": 1e6, "duration": 30, "created_at": "2024-06-02T08:20:00Z"},
    ]
    entries = [{"type": "sgv", "sgv": 100 + i, "date": MS + i * 300_000} for i in range(12)]
    text = json.dumps(entries + treatments, indent=1)
    patient = committed_upload(engine, settings, IncomingFile("ns.json", text.encode()))
    with session_scope(engine) as session:
        upload = session.scalars(select(Upload).where(Upload.patient_id == patient.id)).one()
        reasons = {row["reason"] for row in upload.rejected}
        stored = sorted(
            (kind, value)
            for kind, value in session.execute(select(Record.type, Record.value).where(Record.type != "cbg"))
        )
    assert upload.rejected_count == 3
    assert reasons == {
        "value out of range (0 to 1000 U)",
        "value out of range (0 to 10000 g)",
        "value out of range (0 to 100 U/h)",
    }
    assert stored == [("bolus", 2.5), ("food", 40.0)]


def test_a_label_from_a_file_is_quoted_whole_when_short_and_cut_when_long() -> None:
    assert shown("mg/dL") == "'mg/dL'"
    assert shown("x" * MAX_SHOWN_LABEL) == repr("x" * MAX_SHOWN_LABEL)
    assert shown("y" * 5000) == repr("y" * MAX_SHOWN_LABEL) + "… (5,000 characters)"


def _date_reason(time_ms: int, bounds: tuple[int, int]) -> str:
    return "late" if time_ms > bounds[1] else "early"


@given(
    st.lists(
        st.tuples(
            st.integers(min_value=-2, max_value=12),
            st.floats(allow_nan=True, allow_infinity=True, width=64),
        ),
        min_size=1,
        max_size=40,
    ),
    st.sampled_from(["cbg", "basal", "bolus", "physicalActivity"]),
)
def test_a_block_keeps_exactly_the_rows_a_single_record_would_keep(
    rows: list[tuple[int, float]], kind: str
) -> None:
    """Dates within the bounds and values in their type's range; durations follow their rows."""
    bounds = (0, 10)
    block = ReadingBlock(
        type=kind,
        subtype="automated",
        device="d",
        orig_unit="U",
        time_ms=np.array([t for t, _ in rows], np.int64),
        utc_offset_min=np.zeros(len(rows), np.int64),
        value=np.array([v for _, v in rows], np.float64),
        orig_value=np.array([v for _, v in rows], np.float64),
        line=np.arange(2, len(rows) + 2, dtype=np.int64),
        duration_ms=np.arange(len(rows), dtype=np.int64) * 1000,
    )
    kept, rejected = plausible_part(block, bounds, _date_reason)
    span = VALUE_RANGES.get(kind)
    expected_kept, expected_rejected = [], []
    for at, (time_ms, value) in enumerate(rows):
        if not bounds[0] <= time_ms <= bounds[1]:
            expected_rejected.append((at + 2, _date_reason(time_ms, bounds)))
        elif span is not None and not span.admits(value):
            expected_rejected.append((at + 2, span.reason))
        else:
            expected_kept.append(at)
    assert [(row.line, row.reason) for row in rejected] == expected_rejected
    assert kept.line.tolist() == [at + 2 for at in expected_kept]
    assert kept.duration_ms is not None
    assert kept.duration_ms.tolist() == [at * 1000 for at in expected_kept]
    assert [r.duration_ms for r in kept.records()] == [at * 1000 for at in expected_kept]


@given(
    st.sampled_from(["basal", "bolus", "food", "cbg"]),
    st.text(min_size=0, max_size=80),
    st.one_of(
        st.lists(st.floats(allow_nan=False, allow_infinity=False), max_size=20),
        # a pump's few repeated rates (each key formatted once), with both zeros
        st.lists(st.sampled_from([0.0, -0.0, 0.05, 0.85, 1.2345678, 1e-7, 12.0]), max_size=40),
    ),
)
def test_keys_of_a_block_are_the_keys_of_its_single_records(
    kind: str, subtype: str, values: list[float]
) -> None:
    """A dose stored from a block and the same dose stored alone are one record (same key)."""
    keys = dedup_keys(kind, subtype, values)
    singles = [dedup_key(kind, subtype, None if kind == "cbg" else value, "") for value in values]
    if isinstance(keys, str):
        assert kind == "cbg"
        assert all(key == keys for key in singles)
    else:
        assert keys == singles

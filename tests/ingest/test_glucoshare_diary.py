"""The manual diary: its document format, the importer, typed entries, the command line and the API."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.orm import Session

from glucoshare.accounts.service import add_patient, validate_patient
from glucoshare.analytics.settings import parse_pump_settings
from glucoshare.config import Settings
from glucoshare.errors import InputError
from glucoshare.ingest.base import ParseContext, SourceText, each_record
from glucoshare.ingest.diary import DiaryEntry, add_diary_entries, diary_document
from glucoshare.ingest.glucoshare_diary import GlucoshareDiaryImporter, diary_header
from glucoshare.ingest.registry import detect_format
from glucoshare.records.models import Record
from glucoshare.records.vocabulary import MGDL_PER_MMOLL

ZONE = "Europe/Berlin"


def _parse(text: str) -> tuple[list, list]:
    result = GlucoshareDiaryImporter().parse(SourceText("d.jsonl", text, "utf-8"), ParseContext(ZONE))
    records = list(each_record(result.records))
    return records, result.rejected


def test_a_diary_row_becomes_one_record_per_value() -> None:
    text = diary_header() + "\n" + json.dumps(
        {"time": "2026-11-20T12:10", "glucose": 9.4, "unit": "mmol/L", "rapid_u": 5, "correction_u": 1,
         "long_u": 12, "carbs_g": 60, "note": "pasta"}
    ) + "\n"  # fmt: skip
    records, rejected = _parse(text)
    assert rejected == []
    kinds = sorted((r.type, r.subtype) for r in records)
    assert kinds == [
        ("food", ""),
        ("insulin", "long"),
        ("insulin", "rapid"),
        ("insulin", "rapid"),
        ("note", ""),
        ("smbg", "manual"),
    ]
    glucose = next(r for r in records if r.type == "smbg")
    assert glucose.value == pytest.approx(9.4 * MGDL_PER_MMOLL)
    assert (glucose.orig_value, glucose.orig_unit) == (9.4, "mmol/L")
    assert {r.line for r in records} == {2}
    # 12:10 in Berlin in November is 11:10 UTC.
    assert glucose.time_ms == int(dt.datetime(2026, 11, 20, 11, 10, tzinfo=dt.UTC).timestamp() * 1000)
    assert glucose.utc_offset_min == 60
    correction = next(r for r in records if r.payload == {"purpose": "correction"})
    assert correction.value == 1


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ({"time": "2026-11-20T08:00", "glucose": 140}, "unit"),
        ({"time": "2026-11-20T08:00", "glucose": 2000, "unit": "mg/dL"}, "glucose"),
        ({"time": "yesterday", "carbs_g": 10}, "time"),
        ({"carbs_g": 10}, "time"),
        ({"time": "2026-11-20T08:00", "rapid_u": -1}, "rapid_u"),
        ({"time": "2026-11-20T08:00", "insulin": 3}, "unknown field"),
        ({"time": "2026-11-20T08:00"}, "no value"),
        ({"time": "2026-11-20T08:00", "carb_ratio": 900}, "carb_ratio"),
        ([1, 2], "JSON object"),
    ],
)
def test_an_unreadable_row_is_reported_with_its_line_and_the_rest_is_kept(row: object, reason: str) -> None:
    good = {"time": "2026-11-20T07:00", "carbs_g": 30}
    text = "\n".join([diary_header(), json.dumps(good), json.dumps(row), "not json at all"]) + "\n"
    records, rejected = _parse(text)
    assert [r.type for r in records] == ["food"]
    assert [r.line for r in rejected] == [3, 4]
    assert reason in rejected[0].reason
    assert "not a JSON object" in rejected[1].reason


def test_ratios_become_canonical_pump_settings() -> None:
    row = {"time": "2026-11-20T08:00", "carb_ratio": 10, "sensitivity": 2.2, "unit": "mmol/L",
           "target_low": 5, "target_high": 7}  # fmt: skip
    records, _ = _parse(diary_header() + "\n" + json.dumps(row))
    (settings,) = records
    assert settings.type == "pumpSettings"
    parsed = parse_pump_settings(settings.payload, 0)
    assert parsed.carb_ratios[0].value == 10
    assert parsed.sensitivities[0].value == pytest.approx(2.2 * MGDL_PER_MMOLL)
    assert parsed.targets[0].low_mgdl == pytest.approx(5 * MGDL_PER_MMOLL)


def test_the_format_is_detected_from_the_content_only() -> None:
    source = SourceText("anything.csv", diary_header() + "\n", "utf-8")
    assert detect_format(source).format == "glucoshare_diary"
    assert not GlucoshareDiaryImporter().detect(['{"format": "something-else"}'])
    assert not GlucoshareDiaryImporter().detect(["Index,Timestamp"])


@given(
    st.dictionaries(
        st.sampled_from(
            ["time", "glucose", "unit", "rapid_u", "long_u", "carbs_g", "note", "carb_ratio", "x"]
        ),
        st.one_of(
            st.none(), st.integers(-5, 5000), st.floats(allow_nan=True), st.text(max_size=20), st.booleans()
        ),
        max_size=6,
    )
)
def test_no_row_crashes_the_importer(row: dict[str, object]) -> None:
    text = diary_header() + "\n" + json.dumps(row) + "\n"
    records, rejected = _parse(text)
    assert len(rejected) + (1 if records else 0) >= 1
    for record in records:
        assert record.line == 2


def test_a_row_nested_too_deeply_is_an_unreadable_row() -> None:
    # Found by the fuzzer (tests/fuzz): json.loads raises RecursionError, not ValueError, on a
    # deeply nested row; that escaped the importer.
    deep = '{"time": "2026-11-20T08:00", "note": ' + "[" * 100_000 + "]" * 100_000 + "}"
    text = "\n".join([diary_header(), deep, json.dumps({"time": "2026-11-20T09:00", "carbs_g": 20})]) + "\n"
    records, rejected = _parse(text)
    assert [r.type for r in records] == ["food"]
    assert [(r.line, r.reason) for r in rejected] == [(2, "not a JSON object")]


def test_half_a_character_in_a_note_becomes_the_replacement_character() -> None:
    # Found by the fuzzer in Nightscout files (tests/fuzz): JSON may escape half of a UTF-16 pair
    # (\udc80) alone; the decoded text cannot be encoded (sealing the note failed on it).
    text = diary_header() + '\n{"time": "2026-11-20T08:00", "note": "pasta \\udc80"}\n'
    records, rejected = _parse(text)
    assert rejected == []
    assert [r.payload for r in records] == [{"text": "pasta \ufffd"}]


def test_a_unicode_line_separator_inside_a_string_does_not_split_the_row() -> None:
    # Found by review while writing the fuzzer (tests/fuzz): U+2028 is legal inside a JSON string,
    # but splitlines() splits there, so a header holding one failed with an unhandled JSONDecodeError
    # and a row holding one became two unreadable rows with the wrong lines.
    header = json.dumps({"format": "glucoshare-diary", "version": 1, "by": "a\u2028b"}, ensure_ascii=False)
    row = json.dumps({"time": "2026-11-20T08:00", "note": "line\u2028break"}, ensure_ascii=False)
    records, rejected = _parse(f"{header}\n{row}\n")
    assert rejected == []
    assert [(r.type, r.line) for r in records] == [("note", 2)]


def test_typed_entries_are_stored_once_with_their_provenance(session: Session, settings: Settings) -> None:
    patient = add_patient(session, validate_patient(email="d@example.org", name="D", timezone=ZONE))
    entry = DiaryEntry(
        time=dt.datetime(2026, 11, 20, 8, 15), glucose=142, unit="mg/dL", rapid_u=4, carbs_g=45
    )
    first = add_diary_entries(session, settings, patient, [entry], actor="test")
    assert (first.format, first.new, first.duplicates) == ("glucoshare_diary", 3, 0)
    assert first.device is not None
    assert (first.device.manufacturer, first.device.model) == ("Glucoshare", "Diary")
    again = add_diary_entries(session, settings, patient, [entry], actor="test")
    assert (again.new, again.duplicates) == (0, 3)
    lines = set(session.scalars(select(Record.source_line).where(Record.type == "smbg")))
    assert lines == {2}
    assert diary_document([entry]).decode().splitlines()[0] == diary_header()


def test_an_entry_needs_a_value_and_a_unit_for_glucose() -> None:
    with pytest.raises(ValueError, match="at least one value"):
        DiaryEntry(time=dt.datetime(2026, 11, 20, 8, 15))
    with pytest.raises(ValueError, match="unit"):
        DiaryEntry(time=dt.datetime(2026, 11, 20, 8, 15), glucose=140)
    with pytest.raises(InputError):
        add_diary_entries(None, None, None, [], actor="t")  # type: ignore[arg-type]


def test_the_diary_command_adds_a_row_and_refuses_bad_ones(cli_env: Settings) -> None:
    from typer.testing import CliRunner  # noqa: PLC0415

    from glucoshare.cli import app  # noqa: PLC0415

    runner = CliRunner()
    added = runner.invoke(
        app, ["patients", "add", "--email", "kim@example.org", "--name", "Kim", "--timezone", ZONE]
    )
    assert added.exit_code == 0, added.output
    base = ["diary", "add", "--patient", "kim@example.org", "--time", "2026-11-20T08:00"]
    result = runner.invoke(app, [*base, "--glucose", "7.5", "--unit", "mmol/L", "--carbs", "40", "--json"])
    assert result.exit_code == 0, result.output
    upload = json.loads(result.stdout)
    assert upload["format"] == "glucoshare_diary"
    assert upload["counts"] == {"food": 1, "smbg": 1}
    for extra, message in (
        (["--glucose", "140"], "unit"),
        (["--rapid", "500"], "--rapid"),
        ([], "at least one value"),
    ):
        refused = runner.invoke(app, [*base, *extra])
        assert refused.exit_code == 2
        assert message in refused.stderr
    bad_time = runner.invoke(
        app, ["diary", "add", "--patient", "kim@example.org", "--time", "noon", "--carbs", "3"]
    )
    assert bad_time.exit_code == 2
    assert "--time" in bad_time.stderr

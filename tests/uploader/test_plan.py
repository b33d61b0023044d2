"""Reading exports locally for the uploader: as an import reads them, grouped by device, ready to send."""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import io
import zipfile
import zoneinfo
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from glucoshare.config import Settings
from glucoshare.datasets.records import record_json, validate_records
from glucoshare.errors import UnrecognisedFormatError
from glucoshare.ingest.base import (
    DeviceInfo,
    ParseContext,
    ParsedItem,
    ParsedRecord,
    ParseResult,
    ReadingBlock,
    RejectedRow,
    SourceText,
    each_record,
)
from glucoshare.ingest.errors import MalformedFileError, NoRecordsError
from glucoshare.ingest.schemas import IncomingFile
from glucoshare.ingest.service import GLUCOSE_CEILING_MGDL, IMPLAUSIBLE_GLUCOSE, MAX_DEVICE_TEXT
from glucoshare.simulator import simulate
from glucoshare.simulator.writers.dexcom_clarity import write_clarity
from glucoshare.uploader.plan import (
    BEFORE_2000,
    FUTURE,
    DeviceRecords,
    Prepared,
    Source,
    Tally,
    device_key,
    keep_valid,
    prepare,
    read_records,
    sendable,
    unsendable_reason,
)
from tests.ingest.helpers import profile

BERLIN = "Europe/Berlin"
T0 = int(dt.datetime(2025, 3, 1, 8, tzinfo=dt.UTC).timestamp() * 1000)
OLD = int(dt.datetime(1999, 6, 1, tzinfo=dt.UTC).timestamp() * 1000)


@pytest.fixture
def settings(tmp_path: Any) -> Settings:  # no database: the uploader reads files only
    return Settings(data_dir=tmp_path / "data")


def clarity(days: int = 1) -> IncomingFile:
    export = write_clarity(simulate(profile(seed=2), start=dt.date(2025, 3, 1), days=days))
    return IncomingFile("Clarity.csv", export.data)


class FakeImporter:
    """An importer whose records the test chooses."""

    format: ClassVar[str] = "glucoshare_csv"
    label: ClassVar[str] = "fake"
    items: ClassVar[list[ParsedItem]] = []
    rejected: ClassVar[list[RejectedRow]] = []
    devices: ClassVar[dict[str, DeviceInfo]] = {}

    def detect(self, head: list[str]) -> bool:
        return bool(head)

    def parse(self, source: SourceText, ctx: ParseContext) -> ParseResult:  # noqa: ARG002 - the protocol
        return ParseResult(iter(self.items), dict(self.devices), list(self.rejected))


def fake_file(
    items: list[ParsedItem], rejected: list[RejectedRow] | None = None, lines: int = 20
) -> Prepared:
    FakeImporter.items = items
    FakeImporter.rejected = rejected or []
    FakeImporter.devices = {
        "pump": DeviceInfo("Tandem", "t:slim X2", "123"),
        "cgm": DeviceInfo("Dexcom", "G6", None),
        "again": DeviceInfo(" TANDEM ", "T:SLIM X2", "123 "),
    }
    text = "row\n" * lines
    return Prepared("fake.csv", "0" * 64, SourceText("fake.csv", text, "utf-8"), FakeImporter(), None)


def reading(time_ms: int, value: float = 120.0, device: str = "cgm", line: int = 1) -> ParsedRecord:
    return ParsedRecord("cbg", "sensor", time_ms, 60, line, device, value, value, "mg/dL")


def test_a_clarity_export_is_read_as_an_import_reads_it(settings: Settings) -> None:
    preparation = prepare(settings, Source("Clarity.csv", [clarity()]))
    assert preparation.left_out == []
    (prepared,) = preparation.files
    plan = read_records(prepared, timezone=BERLIN)
    assert plan.format == "dexcom_clarity"
    (device,) = plan.devices
    assert (device.device.manufacturer, device.device.model) == ("Dexcom", "G6")
    parsed = list(each_record(prepared.importer.parse(prepared.source, ParseContext(BERLIN)).records))
    assert device.count == plan.records == len(parsed)
    assert plan.dataset_name(device) == f"upload:{prepared.sha256}:{device.key}"
    assert len(plan.dataset_name(device)) <= 100

    tally = Tally()
    sent = list(sendable(device, latest={}, zone=BERLIN, tally=tally))
    expected = [w for w in map(record_json, parsed) if w is not None]
    assert sent == expected
    assert tally.left_out == {unsendable_reason("cgmSettings"): len(parsed) - len(expected)}
    assert tally.already_on_server == 0
    assert len(validate_records(sent[:1000], device="d", first_line=1)) == min(1000, len(sent))


@given(st.integers(min_value=0, max_value=300))
def test_only_records_newer_than_the_servers_newest_are_sent(cut: int) -> None:
    readings = [reading(T0 + i * 300_000, line=i + 1) for i in range(300)]
    meals = [ParsedRecord("food", "", T0 + i * 3_600_000, 60, 400 + i, "cgm", 30.0) for i in range(20)]
    device = DeviceRecords("k", DeviceInfo("Dexcom", "G6", None), [*readings, *meals], 320)
    latest = {"cbg": T0 + (cut - 1) * 300_000} if cut else {}
    tally = Tally()
    sent = list(sendable(device, latest=latest, zone="UTC", tally=tally))
    assert tally.already_on_server == cut
    assert len(sent) == 320 - cut
    assert [r["type"] for r in sent].count("food") == 20


def test_blocks_of_readings_are_sent_like_single_records() -> None:
    times = np.array([T0 + i * 300_000 for i in range(5)], dtype=np.int64)
    block = ReadingBlock(
        "cbg",
        "sensor",
        "cgm",
        "mg/dL",
        times,
        np.full(5, 60),
        np.full(5, 110.0),
        np.full(5, 110.0),
        np.arange(1, 6),
    )
    device = DeviceRecords("k", DeviceInfo("Dexcom", "G6", None), [block], 5)
    sent = list(sendable(device, latest={"cbg": int(times[1])}, zone="UTC", tally=Tally()))
    assert sent == [record_json(r) for r in list(block.records())[2:]]


def invalid_meal(time_ms: int) -> ParsedRecord:
    return ParsedRecord("food", "", time_ms, 60, 1, "cgm", None)  # a meal without carbohydrate


@given(st.lists(st.booleans(), max_size=60))
def test_records_the_rules_refuse_are_left_out_one_by_one(valid: list[bool]) -> None:
    written = [
        record_json(reading(T0 + i * 60_000) if ok else invalid_meal(T0 + i * 60_000))
        for i, ok in enumerate(valid)
    ]
    left_out = collections.Counter[str]()
    kept = keep_valid([w for w in written if w is not None], zoneinfo.ZoneInfo("UTC"), left_out)
    assert kept == [w for w, ok in zip(written, valid, strict=True) if ok]
    assert left_out == ({"value: empty; food records need one": valid.count(False)} if False in valid else {})


def test_records_of_one_device_are_grouped_and_dates_out_of_range_left_out() -> None:
    future = int((dt.datetime.now(dt.UTC) + dt.timedelta(days=3)).timestamp() * 1000)
    bolus = ParsedRecord("bolus", "normal", T0, 60, 3, "pump", 2.5)
    again = ParsedRecord("bolus", "normal", T0 + 60_000, 60, 4, "again", 1.0)
    times = np.array([T0, OLD, future], dtype=np.int64)
    block = ReadingBlock(
        "cbg",
        "sensor",
        "cgm",
        "mg/dL",
        times,
        np.full(3, 60),
        np.full(3, 99.0),
        np.full(3, 99.0),
        np.array([5, 6, 7]),
    )
    items: list[ParsedItem] = [bolus, reading(OLD, line=2), block, again]
    plan = read_records(fake_file(items, lines=40), timezone="UTC")
    pump, cgm = plan.devices
    assert pump.device.serial == "123"
    assert pump.count == 2  # the same pump however the file spells it
    assert pump.key == device_key(DeviceInfo("tandem", "T:SLIM X2", "123"))
    assert cgm.count == 1
    assert cgm.left_out == {BEFORE_2000: 2, FUTURE: 1}
    assert plan.rejected_rows == 3
    tally = Tally()
    assert len(list(sendable(cgm, latest={}, zone="UTC", tally=tally))) == 1
    assert tally.left_out == {BEFORE_2000: 2, FUTURE: 1}


def test_files_an_import_refuses_are_refused() -> None:
    with pytest.raises(NoRecordsError):
        read_records(fake_file([]), timezone="UTC")
    with pytest.raises(MalformedFileError, match="no row of the file could be read"):
        read_records(fake_file([reading(OLD)]), timezone="UTC")
    many = [RejectedRow(line, "bad glucose") for line in range(2, 14)]
    with pytest.raises(MalformedFileError, match="12 of 13 rows cannot be read"):
        read_records(fake_file([reading(T0)], many), timezone="UTC")
    cut = fake_file([reading(T0)], [RejectedRow(3, "bad glucose")], lines=2)
    cut = dataclasses.replace(cut, source=SourceText("fake.csv", "row\nrow\nrow", "utf-8"))
    with pytest.raises(MalformedFileError, match="truncated"):
        read_records(cut, timezone="UTC")


def test_archives_give_their_exports_and_list_the_rest(settings: Settings) -> None:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("export/Clarity.csv", clarity().data)
        zipped.writestr("export/README.txt", "read me\n")
    preparation = prepare(settings, Source("export.zip", [IncomingFile("export.zip", archive.getvalue())]))
    assert [p.name for p in preparation.files] == ["export.zip/export/Clarity.csv"]
    assert preparation.files[0].container == "export.zip"
    assert len(preparation.left_out) == 1
    assert preparation.left_out[0].startswith("export/README.txt (")
    with pytest.raises(UnrecognisedFormatError):
        prepare(settings, Source("notes.txt", [IncomingFile("notes.txt", b"milk\neggs\n")]))


def _spellings(text: str) -> Iterator[str]:
    yield text
    yield f"  {text.upper()} "
    yield text.lower()


@given(
    st.text(alphabet="abcdefghij XYZ:", min_size=1, max_size=12).filter(str.strip),
    st.text(alphabet="abcdefghij XYZ:", min_size=1, max_size=12).filter(str.strip),
    st.one_of(st.none(), st.text(alphabet="abc123", min_size=1, max_size=8)),
)
def test_a_device_has_one_key_however_it_is_spelled(
    manufacturer: str, model: str, serial: str | None
) -> None:
    keys = {
        device_key(DeviceInfo(m, n, None if serial is None else f" {serial.lower()} "))
        for m in _spellings(manufacturer)
        for n in _spellings(model)
    }
    assert keys == {device_key(DeviceInfo(manufacturer, model, serial and serial.upper()))}
    other = device_key(DeviceInfo(manufacturer + "x", model, serial))
    assert other not in keys


def _kept(device: DeviceRecords) -> list[ParsedRecord]:
    return [record for item in device.items for record in each_record([item])]


def test_glucose_an_import_rejects_is_left_out_with_the_imports_reason() -> None:
    values = [0.0, -5.0, 120.0, GLUCOSE_CEILING_MGDL, GLUCOSE_CEILING_MGDL + 0.5, float("nan")]
    times = np.array([T0 + i * 300_000 for i in range(len(values))], dtype=np.int64)
    block = ReadingBlock(
        "cbg",
        "sensor",
        "cgm",
        "mg/dL",
        times,
        np.full(len(values), 60),
        np.array(values),
        np.array(values),
        np.arange(2, 2 + len(values)),
    )
    finger = [
        ParsedRecord("smbg", "", T0 + i, 60, 20 + i, "cgm", value, value, "mg/dL")
        for i, value in enumerate([0.0, 95.0, 6000.0, None])
    ]
    food = ParsedRecord("food", "", T0, 60, 30, "cgm", 6000.0)  # not glucose: not this rule's business
    items: list[ParsedItem] = [block, *finger, food, reading(OLD, value=0.0, line=31)]
    plan = read_records(fake_file(items, lines=60), timezone="UTC")
    (cgm,) = plan.devices
    assert [r.value for r in _kept(cgm)] == [120.0, GLUCOSE_CEILING_MGDL, 95.0, 6000.0]
    assert cgm.left_out == {IMPLAUSIBLE_GLUCOSE: 7, BEFORE_2000: 1}  # the date is checked first
    assert plan.rejected_rows == 8
    assert IMPLAUSIBLE_GLUCOSE == "glucose out of range (0 to 5000 mg/dL)"


def test_a_file_of_mostly_implausible_glucose_is_refused_as_an_import_refuses_it() -> None:
    readings = [reading(T0 + i * 60_000, value=9999.0, line=i + 2) for i in range(12)]
    with pytest.raises(MalformedFileError, match="12 of 13 rows cannot be read"):
        read_records(fake_file([reading(T0 - 60_000, line=14), *readings]), timezone="UTC")


@pytest.mark.parametrize("field", ["manufacturer", "model", "serial", "identifier"])
def test_a_device_named_beyond_its_columns_refuses_the_file(field: str) -> None:
    def device(length: int) -> DeviceInfo:
        text = "x" * length
        return DeviceInfo(
            text if field == "manufacturer" else "Dexcom",
            text if field == "model" else "G6",
            text if field == "serial" else None,
            identifiers={("transmitter", text)} if field == "identifier" else set(),
        )

    assert read_records(_with_devices({"cgm": device(MAX_DEVICE_TEXT)}), timezone="UTC").records == 1
    message = (
        f"fake.csv: a device's name, serial number or identifier is longer than {MAX_DEVICE_TEXT} "
        "characters (a damaged file?)"
    )
    with pytest.raises(MalformedFileError) as refused:
        read_records(_with_devices({"cgm": device(MAX_DEVICE_TEXT + 1)}), timezone="UTC")
    assert refused.value.message == message
    # A device of the file without a record of its own is registered by an import all the same.
    extra = {"cgm": DeviceInfo("Dexcom", "G6", None), "meter": device(MAX_DEVICE_TEXT + 1)}
    with pytest.raises(MalformedFileError, match="longer than 100 characters"):
        read_records(_with_devices(extra), timezone="UTC")


def _with_devices(devices: dict[str, DeviceInfo]) -> Prepared:
    prepared = fake_file([reading(T0)])
    FakeImporter.devices = devices
    return prepared

"""The uploader's decisions, against an in-memory server: resume, skip, the zone, ``full``, refusals."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from glucoshare.config import Settings
from glucoshare.errors import ConflictError
from glucoshare.ingest.base import SourceText
from glucoshare.ingest.schemas import IncomingFile
from glucoshare.records.vocabulary import RECORD_TYPES
from glucoshare.simulator import simulate
from glucoshare.simulator.writers.dexcom_clarity import write_clarity
from glucoshare.uploader import send as send_module
from glucoshare.uploader.client import Dataset, UploadClient
from glucoshare.uploader.plan import FilePlan, Prepared, Source, Tally, prepare, read_records, sendable
from glucoshare.uploader.send import ALREADY_UPLOADED, UPLOADED, Uploader
from tests.ingest.helpers import profile


@dataclasses.dataclass
class Stored:
    dataset: Dataset
    name: str
    lines: list[dict[str, Any]] = dataclasses.field(default_factory=list)


class MemoryServer(UploadClient):
    """The upload API's decisions, kept in memory (no HTTP)."""

    def __init__(self, zone: str = "Europe/Berlin", latest: dict[str, int] | None = None) -> None:
        super().__init__(
            "https://memory.example", "t", transport=httpx.MockTransport(lambda r: httpx.Response(500))
        )
        self.zone = zone
        self.latest = latest or {}
        self.sets: dict[str, Stored] = {}
        self.opened: list[tuple[str, str | None]] = []
        self.formats: list[tuple[str | None, dict[str, str | None]]] = []
        self.fail_after: int | None = None

    def open_dataset(
        self, *, name: str, device: Mapping[str, str | None], source_format: str | None, timezone: str | None
    ) -> Dataset:
        self.opened.append((name, timezone))
        self.formats.append((source_format, dict(device)))
        if name not in self.sets:
            dataset = Dataset(
                f"ds{len(self.sets)}", "open", timezone or self.zone, 0, 0, 0, dict(self.latest)
            )
            self.sets[name] = Stored(dataset, name)
        stored = self.sets[name]
        return dataclasses.replace(
            stored.dataset, records_received=len(stored.lines), device_latest=dict(self.latest)
        )

    def _stored(self, dataset_id: str) -> Stored:
        return next(s for s in self.sets.values() if s.dataset.id == dataset_id)

    def append_records(
        self, dataset_id: str, records: Sequence[Mapping[str, Any]], *, first_line: int
    ) -> int:
        stored = self._stored(dataset_id)
        assert first_line == len(stored.lines) + 1
        if self.fail_after is not None and self.batches_sent >= self.fail_after:
            raise KeyboardInterrupt
        stored.lines.extend(dict(r) for r in records)
        self.batches_sent += 1
        return len(records)

    def close_dataset(self, dataset_id: str) -> Dataset:
        stored = self._stored(dataset_id)
        unique = {(r["type"], r["time"], r.get("value")) for r in stored.lines}
        stored.dataset = dataclasses.replace(stored.dataset, state="closed", new=len(unique))
        return stored.dataset


def export(days: int, seed: int = 2) -> IncomingFile:
    data = write_clarity(simulate(profile(seed=seed), start=dt.date(2025, 3, 1), days=days)).data
    return IncomingFile("Clarity.csv", data)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data")


def stream(settings: Settings, incoming: IncomingFile, zone: str) -> list[dict[str, Any]]:
    (prepared,) = prepare(settings, Source(incoming.name, [incoming])).files
    (device,) = read_records(prepared, timezone=zone).devices
    return list(sendable(device, latest={}, zone=zone, tally=Tally()))


def test_without_a_zone_the_patients_zone_on_the_server_reads_the_file(settings: Settings) -> None:
    server = MemoryServer(zone="America/New_York")
    (report,) = Uploader(server, settings).upload([Source("Clarity.csv", [export(1)])])
    (stored,) = server.sets.values()
    assert stored.lines == stream(settings, export(1), "America/New_York")
    assert stored.lines[0]["time"].endswith("-05:00")
    assert [timezone for _name, timezone in server.opened] == [None]  # opened once, without a zone
    assert server.formats == [("dexcom_clarity", {"manufacturer": "Dexcom", "model": "G6", "serial": None})]
    assert report.datasets[0].status == UPLOADED


def test_a_given_zone_reads_the_file_and_goes_to_the_data_set(settings: Settings) -> None:
    server = MemoryServer(zone="America/New_York")
    Uploader(server, settings, timezone="Asia/Tokyo").upload([Source("Clarity.csv", [export(1)])])
    (stored,) = server.sets.values()
    assert stored.dataset.timezone == "Asia/Tokyo"
    assert stored.lines[0]["time"].endswith("+09:00")


def test_an_interrupted_upload_sends_only_the_rest(settings: Settings) -> None:
    server = MemoryServer()
    server.fail_after = 1
    with pytest.raises(KeyboardInterrupt):
        Uploader(server, settings).upload([Source("Clarity.csv", [export(5)])])
    (stored,) = server.sets.values()
    assert len(stored.lines) == 1000
    server.fail_after = None
    (report,) = Uploader(server, settings).upload([Source("Clarity.csv", [export(5)])])
    (dataset,) = report.datasets
    assert dataset.resumed == 1000
    assert stored.lines == stream(settings, export(5), "Europe/Berlin")
    assert dataset.sent == len(stored.lines) - 1000


def test_a_stream_shorter_than_what_the_server_received_is_sent_again_whole(settings: Settings) -> None:
    server = MemoryServer()
    server.fail_after = 1
    with pytest.raises(KeyboardInterrupt):
        Uploader(server, settings).upload([Source("Clarity.csv", [export(5)])])
    everything = stream(settings, export(5), "Europe/Berlin")
    # Meanwhile the server received the device's records up to the last few of the file.
    last = dt.datetime.fromisoformat(everything[-3]["time"])
    server.latest = {r["type"]: int(last.timestamp() * 1000) for r in everything}
    server.fail_after = None
    (report,) = Uploader(server, settings).upload([Source("Clarity.csv", [export(5)])])
    (dataset,) = report.datasets
    assert dataset.resumed == 0
    (stored,) = server.sets.values()
    newer = [r for r in everything if dt.datetime.fromisoformat(r["time"]) > last]
    assert stored.lines[1000:] == newer
    assert dataset.sent == len(newer) == 2


def test_a_closed_data_set_means_the_file_was_uploaded(settings: Settings) -> None:
    server = MemoryServer()
    uploader = Uploader(server, settings)
    uploader.upload([Source("Clarity.csv", [export(1)])])
    sent = server.batches_sent
    (report,) = uploader.upload([Source("Clarity.csv", [export(1)])])
    assert report.skipped == ALREADY_UPLOADED
    assert [(d.status, d.sent) for d in report.datasets] == [(ALREADY_UPLOADED, 0)]
    assert server.batches_sent == sent


def test_full_sends_what_the_server_seems_to_have(settings: Settings) -> None:
    server = MemoryServer(latest=dict.fromkeys(RECORD_TYPES, 2_000_000_000_000))  # 2033
    (report,) = Uploader(server, settings).upload([Source("a.csv", [export(1, seed=1)])])
    assert report.datasets[0].sent == 0
    assert report.datasets[0].already_on_server > 0
    (report,) = Uploader(server, settings, full=True).upload([Source("b.csv", [export(1, seed=4)])])
    assert report.datasets[0].already_on_server == 0
    assert report.datasets[0].sent == len(stream(settings, export(1, seed=4), "Europe/Berlin"))


def test_a_continuous_data_set_under_the_files_name_refuses_the_file(settings: Settings) -> None:
    server = MemoryServer()
    uploader = Uploader(server, settings)
    (prepared,) = prepare(settings, Source("Clarity.csv", [export(1)])).files
    plan = read_records(prepared, timezone="Europe/Berlin")
    name = plan.dataset_name(plan.devices[0])
    server.open_dataset(name=name, device={}, source_format=None, timezone=None)
    server.sets[name].dataset = dataclasses.replace(server.sets[name].dataset, state="continuous")
    (report,) = uploader.upload([Source("Clarity.csv", [export(1)])])
    assert report.error is not None
    assert report.error["code"] == ConflictError.code
    assert report.datasets == []


def test_progress_counts_every_record_of_the_device(settings: Settings) -> None:
    events: list[tuple[str, int]] = []

    class Recorder:
        def start(self, name: str, total: int) -> None:
            events.append((f"start {name}", total))

        def advance(self, count: int) -> None:
            events.append(("advance", count))

        def finish(self) -> None:
            events.append(("finish", 0))

    Uploader(MemoryServer(), settings, progress=Recorder()).upload([Source("Clarity.csv", [export(5)])])
    (start, total) = events[0]
    assert start == "start Clarity.csv (Dexcom G6)"
    assert sum(n for kind, n in events if kind == "advance") == total
    assert events[-1] == ("finish", 0)


def test_a_file_already_uploaded_is_read_once(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    server = MemoryServer()
    Uploader(server, settings).upload([Source("Clarity.csv", [export(1)])])
    reads: list[str] = []

    def counted(prepared: Prepared, *, timezone: str, siblings: Sequence[SourceText] = ()) -> FilePlan:
        reads.append(timezone)
        return read_records(prepared, timezone=timezone, siblings=siblings)

    monkeypatch.setattr(send_module, "read_records", counted)
    (report,) = Uploader(server, settings).upload([Source("Clarity.csv", [export(1)])])
    assert report.skipped == ALREADY_UPLOADED
    assert reads == ["UTC"]  # not read again in the patient's zone: nothing is sent
    (report,) = Uploader(server, settings).upload([Source("Clarity.csv", [export(2)])])
    assert reads == ["UTC", "UTC", "Europe/Berlin"]
    assert report.datasets[0].status == UPLOADED

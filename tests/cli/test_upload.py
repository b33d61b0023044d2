"""``glucoshare upload`` against a live server (SQLite and PostgreSQL): what a direct import stores,
only what the server lacks, resuming an interrupted upload, folders and archives, refusals, the watcher.
"""

from __future__ import annotations

import collections
import datetime as dt
import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from typer.testing import CliRunner

from glucoshare.accounts.models import Patient
from glucoshare.cli import app
from glucoshare.config import Settings
from glucoshare.datasets.models import DatasetBatch
from glucoshare.datasets.records import record_json
from glucoshare.db.session import session_scope
from glucoshare.devices.models import Device
from glucoshare.ingest.schemas import IncomingFile
from glucoshare.ingest.service import import_files, remove_upload
from glucoshare.records.models import Record, Upload
from glucoshare.simulator import simulate
from glucoshare.simulator.writers.dexcom_clarity import write_clarity
from glucoshare.simulator.writers.libreview import write_libreview
from glucoshare.simulator.writers.tandem import write_tandem_source
from glucoshare.uploader import client as client_module
from glucoshare.uploader import watch as watch_module
from glucoshare.uploader.client import ServerUnavailableError
from tests.ingest.helpers import parse_export, profile
from tests.live import serving
from tests.web.conftest import make_person, make_token

runner = CliRunner()
START = dt.date(2025, 3, 1)
CGM_SETTINGS = "cgmSettings records cannot be sent through the upload API"
Row = tuple[Any, ...]


@pytest.fixture
def live(cli_env: Settings, engine: Engine) -> Iterator[str]:
    """The app served on 127.0.0.1 over the test database (the CLI's settings point at it too)."""
    with serving(cli_env, engine) as base_url:
        yield base_url


@pytest.fixture
def patient(engine: Engine) -> str:
    """A patient in Europe/Berlin (the id)."""
    person = make_person(engine, "uploader@example.org", "patient", patient=True)
    assert person.patient_id is not None
    return person.patient_id


@pytest.fixture
def token(engine: Engine, patient: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """An upload token of the patient, given to the command through the environment."""
    _id, secret = make_token(engine, patient, "upload")
    monkeypatch.setenv("GLUCOSHARE_UPLOAD_TOKEN", secret)
    return secret


def upload(live: str, *args: str) -> tuple[int, dict[str, Any] | None, str]:
    result = runner.invoke(app, ["upload", "--server", live, "--json", *args])
    document = json.loads(result.stdout) if result.stdout.strip() else None
    return result.exit_code, document, result.stderr


def clarity(days: int, seed: int = 3) -> bytes:
    return write_clarity(simulate(profile(seed=seed), start=START, days=days)).data


def first_days(data: bytes, days: int) -> bytes:
    """The same Clarity export cut after ``days`` days: the same records, fewer of them."""
    cut = (START + dt.timedelta(days=days)).isoformat()
    lines = data.decode("utf-8-sig").splitlines(keepends=True)
    kept = [line for line in lines[1:] if not line.split(",")[1] or line.split(",")[1] < cut]
    return ("\ufeff" + lines[0] + "".join(kept)).encode()


def rows_of(engine: Engine, patient_id: str) -> list[Row]:
    """Every stored record of a patient (what identifies it and what it says), sorted."""
    with session_scope(engine) as session:
        rows = session.execute(
            select(
                Record.type,
                Record.subtype,
                Record.time_ms,
                Record.utc_offset_min,
                Record.value,
                Record.orig_value,
                Record.orig_unit,
                Record.duration_ms,
                Record.annotation,
            )
            .join(Device, Device.seq == Record.device_seq)
            .where(Device.patient_id == patient_id)
        ).all()
    return sorted((tuple(r) for r in rows), key=repr)


def imported_rows(engine: Engine, settings: Settings, files: list[tuple[str, bytes]]) -> list[Row]:
    """What a direct import of the files stores for another patient (in the same zone)."""
    person = make_person(engine, "importer@example.org", "patient", patient=True)
    with session_scope(engine) as session:
        patient = session.get(Patient, person.patient_id)
        assert patient is not None
        import_files(
            session,
            settings=settings,
            patient=patient,
            files=[IncomingFile(name, data) for name, data in files],
            timezone=None,
            actor="test",
        )
    assert person.patient_id is not None
    return rows_of(engine, person.patient_id)


def rows_imported_instead(
    engine: Engine, settings: Settings, patient_id: str, files: list[tuple[str, bytes]]
) -> list[Row]:
    """The patient's records once the uploads are removed and the files imported directly.

    (A pump with a serial number is one device whoever uploads it, so another patient cannot
    import the same files.)
    """
    with session_scope(engine) as session:
        for upload_id in session.scalars(select(Upload.id).where(Upload.patient_id == patient_id)).all():
            remove_upload(session, settings=settings, upload_id=upload_id, actor="test")
    assert rows_of(engine, patient_id) == []
    with session_scope(engine) as session:
        patient = session.get(Patient, patient_id)
        assert patient is not None
        import_files(
            session,
            settings=settings,
            patient=patient,
            files=[IncomingFile(name, data) for name, data in files],
            timezone=None,
            actor="test",
        )
    return rows_of(engine, patient_id)


def missing_of(missing: collections.Counter[Row], record_type: str) -> int:
    return sum(n for row, n in missing.items() if row[0] == record_type)


def sendable_types(rows: list[Row]) -> list[Row]:
    return [r for r in rows if r[0] not in ("wizard", "pumpSettings", "cgmSettings")]


def count(engine: Engine, model: type[Upload | DatasetBatch | Record]) -> int:
    with session_scope(engine) as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_an_upload_stores_what_an_import_stores_and_a_second_one_sends_nothing(
    live: str, patient: str, token: str, engine: Engine, cli_env: Settings, tmp_path: Path
) -> None:
    data = clarity(days=3)
    path = tmp_path / "clarity.csv"
    path.write_bytes(data)
    code, document, stderr = upload(live, str(path))
    assert code == 0, stderr
    assert document is not None
    assert document["server"] == live
    (report,) = document["files"]
    assert report["file"] == "clarity.csv"
    assert report["format"] == "dexcom_clarity"
    assert report["skipped"] is None
    assert report["error"] is None
    (dataset,) = report["datasets"]
    assert dataset["device"]["manufacturer"] == "Dexcom"
    assert dataset["status"] == "uploaded"
    uploaded = rows_of(engine, patient)
    imported = imported_rows(engine, cli_env, [("clarity.csv", data)])
    # The patient's zone (Europe/Berlin) read the local times, as the import did, though none was given.
    assert uploaded == sendable_types(imported)
    assert len(uploaded) < len(imported)  # the CGM alert settings cannot travel through the API
    assert dataset["left_out"] == {CGM_SETTINGS: len(imported) - len(uploaded)}
    assert dataset["sent"] == dataset["new"] == len(uploaded)
    assert dataset["already_on_server"] == 0
    assert dataset["resumed"] == 0
    assert token not in stderr
    assert token not in json.dumps(document)

    uploads, batches = count(engine, Upload), count(engine, DatasetBatch)
    code, document, stderr = upload(live, str(path))
    assert code == 0, stderr
    assert document is not None
    (report,) = document["files"]
    assert report["skipped"] == "already uploaded"
    assert [(d["status"], d["sent"], d["new"]) for d in report["datasets"]] == [("already uploaded", 0, 0)]
    assert (count(engine, Upload), count(engine, DatasetBatch)) == (uploads, batches)
    assert rows_of(engine, patient) == uploaded


def test_a_longer_export_of_the_same_device_sends_only_the_new_days(
    live: str, patient: str, token: str, engine: Engine, cli_env: Settings, tmp_path: Path
) -> None:
    longer = clarity(days=4)
    shorter = first_days(longer, 2)
    (tmp_path / "two.csv").write_bytes(shorter)
    (tmp_path / "four.csv").write_bytes(longer)
    code, _document, stderr = upload(live, str(tmp_path / "two.csv"), "--timezone", "Europe/Berlin")
    assert code == 0, stderr

    code, document, stderr = upload(live, str(tmp_path / "four.csv"), "--timezone", "Europe/Berlin")
    assert code == 0, stderr
    assert document is not None
    (dataset,) = document["files"][0]["datasets"]
    # What the four-day file holds beyond the newest record of each type of the two-day file.
    export = write_clarity(simulate(profile(seed=3), start=START, days=4))
    _format, records, _result = parse_export(export, "Europe/Berlin")
    newest: dict[str, int] = {}
    for record in records:
        if record.time_ms < int(dt.datetime(2025, 3, 2, 23, tzinfo=dt.UTC).timestamp() * 1000):
            newest[record.type] = max(newest.get(record.type, 0), record.time_ms)
    sendable = [r for r in records if record_json(r) is not None]
    expected = [r for r in sendable if r.time_ms > newest.get(r.type, -1)]
    assert 0 < len(expected) < len(sendable)
    assert dataset["sent"] == dataset["new"] == len(expected)
    assert dataset["already_on_server"] == len(sendable) - len(expected)
    assert rows_of(engine, patient) == sendable_types(imported_rows(engine, cli_env, [("four.csv", longer)]))


def test_an_interrupted_upload_resumes_where_it_stopped(
    live: str,
    patient: str,
    token: str,
    engine: Engine,
    cli_env: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = clarity(days=12)
    path = tmp_path / "clarity.csv"
    path.write_bytes(data)
    original = client_module.UploadClient._append
    calls = collections.Counter[str]()
    stop: list[type[BaseException]] = [ServerUnavailableError]

    def failing(
        self: client_module.UploadClient, dataset_id: str, batch: list[bytes], first_line: int
    ) -> int:
        calls["batches"] += 1
        if calls["batches"] in (3, 5):  # the server goes away, then the person presses Ctrl-C
            raise stop.pop(0)("cannot reach the server (ConnectError) after 6 attempts")
        return original(self, dataset_id, batch, first_line)

    monkeypatch.setattr(client_module.UploadClient, "_append", failing)
    code, document, stderr = upload(live, str(path))
    assert code == 1  # an environment fault: run it again
    assert document is None
    assert "cannot reach the server" in stderr
    assert count(engine, Record) == 0  # nothing visible before the data set is closed
    assert count(engine, DatasetBatch) == 2

    stop.append(KeyboardInterrupt)
    code, document, stderr = upload(live, str(path))
    assert code == 1
    assert "run the same command again to resume" in stderr
    assert count(engine, DatasetBatch) == 3

    monkeypatch.setattr(client_module.UploadClient, "_append", original)
    code, document, stderr = upload(live, str(path))
    assert code == 0, stderr
    assert document is not None
    (dataset,) = document["files"][0]["datasets"]
    uploaded = rows_of(engine, patient)
    assert dataset["resumed"] == 3000
    assert dataset["sent"] == len(uploaded) - 3000
    assert dataset["new"] == len(uploaded)
    with session_scope(engine) as session:
        batches = session.execute(
            select(DatasetBatch.first_line, DatasetBatch.count).order_by(DatasetBatch.first_line)
        ).all()
    lines = [line for first, size in batches for line in range(first, first + size)]
    assert lines == list(range(1, len(uploaded) + 1))  # every record sent exactly once
    assert uploaded == sendable_types(imported_rows(engine, cli_env, [("clarity.csv", data)]))


def test_archives_and_folders_are_uploaded_file_by_file(
    live: str, patient: str, token: str, engine: Engine, cli_env: Settings, tmp_path: Path
) -> None:
    timeline = simulate(profile(seed=5, therapy="pump", cgm="dexcom_g6"), start=START, days=2)
    tandem = write_tandem_source(timeline)
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        for written in tandem.files:
            zipped.writestr(f"export/{written.file_name}", written.data)
        zipped.writestr("export/README.txt", "not an export\n")
    (tmp_path / "tandem.zip").write_bytes(archive.getvalue())
    folder = tmp_path / "exports"
    folder.mkdir()
    libre = write_libreview(simulate(profile(seed=6, cgm="libre2"), start=START, days=2))
    (folder / "libre.csv").write_bytes(libre.data)
    (folder / ".hidden.csv").write_bytes(b"ignored")

    code, document, stderr = upload(live, str(tmp_path / "tandem.zip"), str(folder))
    assert code == 0, stderr
    assert document is not None
    files = {f["file"]: f for f in document["files"]}
    assert "exports/libre.csv" in files
    assert files["exports/libre.csv"]["format"] == "libreview"
    tandem_files = [name for name in files if name.startswith("tandem.zip/")]
    assert len(tandem_files) == len(tandem.files)
    assert any("README.txt" in w for f in files.values() for w in f["warnings"])
    assert all(f["error"] is None for f in files.values())
    sent = sum(d["sent"] for f in files.values() for d in f["datasets"])
    assert sent == len(rows_of(engine, patient))

    uploaded = rows_of(engine, patient)
    members = [(f"tandem.zip/export/{f.file_name}", f.data) for f in tandem.files]
    imported = rows_imported_instead(engine, cli_env, patient, [*members, ("exports/libre.csv", libre.data)])
    # Everything but what the report lists as left out: the bolus calculator's wizard records (a
    # type the API does not carry) and a LibreView meal without carbohydrate (the API's rules).
    missing = collections.Counter(imported) - collections.Counter(uploaded)
    assert not collections.Counter(uploaded) - collections.Counter(imported)
    left_out = collections.Counter[str]()
    for report in files.values():
        for dataset in report["datasets"]:
            left_out.update(dataset["left_out"])
    assert left_out == {
        "wizard records cannot be sent through the upload API": missing_of(missing, "wizard"),
        "value: empty; food records need one": missing_of(missing, "food"),
    }
    assert sum(missing.values()) == sum(left_out.values())
    assert (
        files["tandem.zip/export/" + tandem.file("Hourly-basal-delivery").file_name]["skipped"]
        == "no records"
    )


def test_a_wrong_token_stops_at_once_without_showing_it(live: str, tmp_path: Path) -> None:
    path = tmp_path / "clarity.csv"
    path.write_bytes(clarity(days=1))
    secret = "gs_up_" + "x" * 40
    result = runner.invoke(app, ["upload", str(path), "--server", live, "--token", secret, "--json"])
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: the server refused the token")
    assert secret not in result.stderr


def test_a_refused_file_is_reported_and_the_others_are_still_sent(
    live: str, patient: str, token: str, engine: Engine, tmp_path: Path
) -> None:
    (tmp_path / "notes.txt").write_text("shopping list\nmilk\n", encoding="utf-8")
    (tmp_path / "clarity.csv").write_bytes(clarity(days=1))
    code, document, stderr = upload(live, str(tmp_path / "notes.txt"), str(tmp_path / "clarity.csv"))
    assert code == 2
    assert document is not None
    notes, sent = document["files"]
    assert notes["file"] == "notes.txt"
    assert notes["error"]["code"] == "unrecognised_format"
    assert notes["datasets"] == []
    assert sent["error"] is None
    assert sent["datasets"][0]["sent"] == len(rows_of(engine, patient)) > 0
    assert (
        stderr.strip()
        .splitlines()[-1]
        .startswith("error: 1 of 2 files was not uploaded; the first: notes.txt: ")
    )
    assert token not in stderr


def test_watch_uploads_a_file_that_appears_once_it_is_complete(
    live: str, patient: str, token: str, engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "downloads"
    folder.mkdir()
    data = clarity(days=1)
    pauses: list[float] = []

    def pause(seconds: float) -> None:
        pauses.append(seconds)
        if len(pauses) == 1:  # after the first look: a download arrives, and unfinished ones
            (folder / "clarity.csv").write_bytes(data)
            (folder / "other.csv.crdownload").write_bytes(b"partial")
            (folder / "~$report.csv").write_bytes(b"lock")
            (folder / ".DS_Store").write_bytes(b"hidden")

    monkeypatch.setattr(watch_module, "pause", pause)
    code, document, stderr = upload(live, "--watch", str(folder), "--interval", "0.5", "--max-rounds", "3")
    assert code == 0, stderr
    assert pauses == [0.5, 0.5]
    assert document is not None
    (report,) = document["files"]
    assert report["file"] == "clarity.csv"
    assert report["datasets"][0]["sent"] == len(rows_of(engine, patient)) > 0

    code, document, stderr = upload(live, "--watch", str(folder), "--interval", "0.5", "--max-rounds", "2")
    assert code == 0, stderr
    assert document is not None
    assert [(f["file"], f["skipped"]) for f in document["files"]] == [("clarity.csv", "already uploaded")]


def test_the_server_address_is_checked_before_anything_is_read(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["upload", str(tmp_path), "--server", "http://glucoshare.example.org", "--token", "t"]
    )
    assert result.exit_code == 2
    assert "plain http" in result.stderr
    result = runner.invoke(app, ["upload", str(tmp_path), "--server", "https://glucoshare.example.org"])
    assert result.exit_code == 2
    assert "GLUCOSHARE_UPLOAD_TOKEN" in result.stderr

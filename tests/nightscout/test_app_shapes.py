"""xDrip+, Loop, Trio and AndroidAPS uploads, replayed: accepted, answered as the apps check, stored once.

The request shapes are ours, written from research/nightscout.md (§1.4–1.7 and §3) in
tests/nightscout/fixtures/apps.py. Each app's whole upload goes twice, as apps retry after a
lost answer: the second time must change nothing (the rows of ``ns_documents`` and the patient's
canonical records are counted with SQLAlchemy), and both answers must pass the app's own checks
(HTTP 200, an array as long as what was posted, 24-hex ``_id`` values, the posted ``device`` in
the text as Spike looks for it). Then the canonical records are compared with what the documents
say: an sgv of 142 mg/dL is a ``cbg`` of 142, a Meal Bolus with insulin and carbs a ``bolus`` and
a ``food``, a temporary basal a ``basal`` with its rate and duration, a profile a
``pumpSettings``. AndroidAPS's API v3 is tested elsewhere; here are the documents of its v1 era.
tconnectsync's calls are replayed too, as it cannot be installed beside the project's pins (its
dependency requests-oidc needs typer < 0.10). The last tests hold the retry rule of device status, profiles and activity as properties of
:func:`~glucoshare.nightscout.documents.prepare`.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import re
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx2 import Response
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Engine

from glucoshare.config import Settings
from glucoshare.ingest.nightscout_mapping import iso_utc
from glucoshare.nightscout.documents import MAX_IDENTITY, prepare
from glucoshare.web.app import create_app
from tests.nightscout.fixtures import apps
from tests.nightscout.fixtures.site import (
    Site,
    StoredRecord,
    document_counts,
    iso,
    make_site,
    ms,
    patient_records,
    records_of,
    sha1,
)
from tests.web.conftest import BASE_URL

OBJECT_ID = re.compile(r"^[0-9a-f]{24}$")
NOW = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
MINUTE_MS = 60_000


@pytest.fixture
def client(settings: Settings, engine: Engine) -> Iterator[TestClient]:
    """The app on the test database, called in-process (``client`` of tests/web/conftest.py)."""
    with TestClient(create_app(settings, engine), base_url=BASE_URL) as http:
        yield http


@pytest.fixture
def site(engine: Engine) -> Site:
    return make_site(engine)


def _at(minutes: float) -> int:
    """Epoch milliseconds ``minutes`` before NOW."""
    return ms(NOW - dt.timedelta(minutes=minutes))


def _stored(answer: Response, posted: int, device: str | None = None) -> list[dict[str, Any]]:
    """The reply of a POST as Loop, xDrip+ and Spike accept it, else the test fails."""
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert isinstance(body, list)
    assert len(body) == posted
    assert all(isinstance(doc, dict) and OBJECT_ID.match(doc["_id"]) for doc in body)
    if device is not None:
        assert device in answer.text  # Spike's check
    return body


def _snapshot(engine: Engine, site: Site) -> tuple[dict[str, int], list[StoredRecord]]:
    return document_counts(engine, site.patient_id), patient_records(engine, site.patient_id)


def _summary(records: list[StoredRecord], kind: str) -> list[tuple[str, float | None, int | None]]:
    """``(subtype, value, duration in minutes)`` of the records of one type, by time."""
    return [
        (r.subtype, r.value, None if r.duration_ms is None else r.duration_ms // MINUTE_MS)
        for r in records
        if r.type == kind
    ]


# -- xDrip+ -------------------------------------------------------------------------------------------


def _xdrip_upload(client: TestClient, site: Site) -> dict[str, list[str]]:
    status = client.get("/api/v1/status.json", headers=site.headers)
    assert status.status_code == 200
    version = status.json()["version"]
    assert not version.startswith(("0.6", "0.7", "0.8"))  # xDrip+ downloads no treatments from those
    assert status.json()["careportalEnabled"] is True

    entries = apps.xdrip_entries(NOW)
    packed = gzip.compress(json.dumps(entries).encode())
    answer = client.post(
        "/api/v1/entries",
        content=packed,
        headers={**site.headers, "Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    ids = {"entries": [doc["_id"] for doc in _stored(answer, len(entries), apps.XDRIP_DEVICE)]}

    for document in apps.xdrip_device_statuses():
        answer = client.post("/api/v1/devicestatus", json=document, headers=site.headers)
        assert "created_at" in _stored(answer, 1, document["device"])[0]

    ids["treatments"] = []
    for treatment in apps.xdrip_treatments(NOW):
        answer = client.put("/api/v1/treatments", json=treatment, headers=site.headers)
        assert answer.status_code == 200
        assert answer.json()["_id"] == treatment["_id"]  # xDrip+ keeps its own id (24 hex)
        ids["treatments"].append(answer.json()["_id"])

    for batch in (apps.xdrip_heart_rate(NOW), apps.xdrip_steps(NOW)):
        answer = client.post("/api/v1/activity", json=batch, headers=site.headers)
        _stored(answer, len(batch))
    return ids


def test_xdrip_uploads_are_stored_once(client: TestClient, site: Site, engine: Engine) -> None:
    first = _xdrip_upload(client, site)
    counts, records = _snapshot(engine, site)
    assert counts == {"entries": 5, "devicestatus": 2, "treatments": 2, "activity": 5}
    second = _xdrip_upload(client, site)
    assert second == first
    again, records_again = _snapshot(engine, site)
    # Device status without a time of its own is a new status each time, as in Nightscout.
    assert again == {**counts, "devicestatus": 4}
    assert records_again == records

    assert [(r.time_ms, r.value) for r in records if r.type == "cbg"] == [
        (_at(minutes), float(value)) for minutes, value, _ in apps.XDRIP_SGV
    ]
    assert {r.device for r in records if r.type in ("cbg", "smbg")} == {"Dexcom G6 (xDrip-DexcomG6)"}
    assert {r.device for r in records if r.type in ("bolus", "food", "note")} == {"xDrip+ xDrip+ (xdrip)"}
    assert [(r.subtype, r.value, r.time_ms) for r in records if r.type == "smbg"] == [
        ("meter", 139.0, _at(7))
    ]
    assert _summary(records, "bolus") == [("normal", 3.5, None)]
    assert _summary(records, "food") == [("", 38.0, None)]
    assert [r.time_ms for r in records if r.type in ("bolus", "food")] == [_at(30), _at(30)]
    assert len(records_of(engine, site.patient_id, "note")) == 1
    assert {r.type for r in records} == {"cbg", "smbg", "bolus", "food", "note"}  # no record of a cal

    served = client.get("/api/v1/entries.json?count=10&find[type]=sgv", headers=site.headers).json()
    assert [doc["sgv"] for doc in served] == [142, 137, 131]
    assert [doc["delta"] for doc in served] == [4.998, 6.004, 5.012]  # as xDrip+ sent them
    assert served[0]["dateString"] == iso(NOW - dt.timedelta(minutes=5))
    assert served[0]["sysTime"] == served[0]["dateString"]
    assert served[0]["utcOffset"] == 60
    assert (served[0]["filtered"], served[0]["rssi"]) == (143500, 100)

    activity = client.get("/api/v1/activity.json?count=10", headers=site.headers).json()
    assert sorted((doc["type"], doc.get("bpm", doc.get("steps"))) for doc in activity) == [
        ("hr-bpm", 71),
        ("hr-bpm", 74),
        ("hr-bpm", 78),
        ("steps", 412),
        ("steps", 655),
    ]


def test_xdrip_deletes_a_treatment_by_its_uuid(client: TestClient, site: Site, engine: Engine) -> None:
    _xdrip_upload(client, site)
    wanted = str(apps.XDRIP_TREATMENT_UUID)
    found = client.get("/api/v1/treatments.json", params={"find[uuid]": wanted}, headers=site.headers)
    assert found.status_code == 200
    assert "Last-Modified" in found.headers  # xDrip+ downloads treatments by their last change
    assert [doc["_id"] for doc in found.json()] == [apps.xdrip_object_id(apps.XDRIP_TREATMENT_UUID)]
    assert (found.json()[0]["insulin"], found.json()[0]["carbs"]) == (3.5, 38)

    deleted = client.delete(f"/api/v1/treatments/{found.json()[0]['_id']}", headers=site.headers)
    assert deleted.status_code == 200
    assert deleted.json()["n"] == 1
    assert (
        client.get("/api/v1/treatments.json", params={"find[uuid]": wanted}, headers=site.headers).json()
        == []
    )
    assert document_counts(engine, site.patient_id)["treatments"] == 1
    assert records_of(engine, site.patient_id, "bolus") == []
    assert records_of(engine, site.patient_id, "food") == []
    assert len(records_of(engine, site.patient_id, "note")) == 1


# -- Loop ---------------------------------------------------------------------------------------------


def _loop_upload(client: TestClient, site: Site) -> dict[str, list[str]]:
    assert client.get("/api/v1/experiments/test", headers=site.headers).json() == {"status": "ok"}
    ids: dict[str, list[str]] = {}
    bodies: dict[str, list[dict[str, Any]]] = {
        "entries": apps.loop_entries(NOW),
        "treatments": apps.loop_treatments(NOW),
        "devicestatus": [apps.loop_device_status(NOW)],
        "profile": [apps.loop_profile(NOW)],
    }
    for collection, body in bodies.items():
        answer = client.post(f"/api/v1/{collection}", json=body, headers=site.headers)
        device = apps.LOOP_DEVICE if collection in ("entries", "devicestatus") else None
        ids[collection] = [doc["_id"] for doc in _stored(answer, len(body), device)]
    return ids


def test_loop_uploads_are_stored_once(client: TestClient, site: Site, engine: Engine) -> None:
    assert client.get("/api/v1/experiments/test", headers={"api-secret": site.read_token}).status_code == 401
    first = _loop_upload(client, site)
    counts, records = _snapshot(engine, site)
    assert counts == {"entries": 3, "treatments": 5, "devicestatus": 1, "profile": 1}
    assert _loop_upload(client, site) == first
    assert _snapshot(engine, site) == (counts, records)

    assert [(r.value, r.time_ms) for r in records if r.type == "cbg"] == [
        (float(value), _at(minutes) + 12_000) for minutes, value in apps.LOOP_SGV
    ]
    assert {r.device for r in records if r.type != "pumpSettings"} == {"Loop Loop (loop://iPhone)"}
    assert _summary(records, "bolus") == [("normal", 2.35, None), ("automated", 0.45, None)]
    assert _summary(records, "food") == [("", 30.0, None)]
    assert _summary(records, "basal") == [("automated", 1.15, 30)]
    settings = records_of(engine, site.patient_id, "pumpSettings")
    assert len(settings) == 1
    payload = settings[0].payload
    assert payload is not None
    assert payload["basal_schedules"]["Default"] == [
        {"start_min": 0, "rate_u_h": 0.8},
        {"start_min": 360, "rate_u_h": 0.95},
        {"start_min": 1320, "rate_u_h": 0.75},
    ]
    assert (payload["max_bolus_u"], payload["max_basal_u_h"], payload["insulin_duration_h"]) == (
        8.0,
        3.5,
        6.0,
    )
    assert {r.type for r in records} == {"cbg", "bolus", "food", "basal", "pumpSettings"}  # no override

    override = client.get(f"/api/v1/treatments/{first['treatments'][4]}", headers=site.headers).json()
    assert override[0]["identifier"] == apps.LOOP_OVERRIDE_ID  # a UUID _id moves, as in Nightscout 15
    assert override[0]["correctionRange"] == [130, 150]


def test_loop_updates_deletes_and_reads_back(client: TestClient, site: Site, engine: Engine) -> None:
    ids = _loop_upload(client, site)

    carbs = dict(apps.loop_treatments(NOW)[2], _id=ids["treatments"][2], carbs=35)
    answer = client.put("/api/v1/treatments", json=[carbs], headers=site.headers)
    assert [doc["_id"] for doc in _stored(answer, 1)] == [ids["treatments"][2]]
    assert _summary(records_of(engine, site.patient_id, "food"), "food") == [("", 35.0, None)]

    changed = dict(apps.loop_profile(NOW, morning_basal=1.05), _id=ids["profile"][0])
    answer = client.put("/api/v1/profile", json=[changed], headers=site.headers)
    assert [doc["_id"] for doc in _stored(answer, 1)] == ids["profile"]
    settings = records_of(engine, site.patient_id, "pumpSettings")
    assert len(settings) == 1
    assert settings[0].payload is not None
    assert settings[0].payload["basal_schedules"]["Default"][1] == {"start_min": 360, "rate_u_h": 1.05}
    assert document_counts(engine, site.patient_id) == {
        "entries": 3,
        "treatments": 5,
        "devicestatus": 1,
        "profile": 1,
    }

    deleted = client.delete(f"/api/v1/treatments/{ids['treatments'][2]}", headers=site.headers)
    assert deleted.status_code == 200
    assert records_of(engine, site.patient_id, "food") == []
    assert document_counts(engine, site.patient_id)["treatments"] == 4

    current = client.get("/api/v1/profile/current", headers=site.headers)
    assert current.status_code == 200
    assert current.json()["_id"] == ids["profile"][0]
    assert current.json()["store"]["Default"]["basal"][1]["value"] == 1.05
    assert current.json()["loopSettings"]["maximumBolus"] == 8.0

    statuses = client.get(
        "/api/v1/devicestatus",
        params={
            "find[created_at][$gte]": iso(NOW - dt.timedelta(minutes=10)),
            "find[created_at][$lte]": iso(NOW),
            "count": "288",
        },
        headers=site.headers,
    ).json()
    assert [(s["loop"]["iob"]["iob"], s["pump"]["reservoir"]) for s in statuses] == [(2.41, 87.3)]

    treatments = client.get(
        "/api/v1/treatments",
        params={
            "find[timestamp][$gte]": iso(NOW - dt.timedelta(minutes=45)),
            "find[timestamp][$lte]": iso(NOW),
            "count": "500",
        },
        headers=site.headers,
    ).json()
    assert [(t["eventType"], t["insulin"], t.get("rate")) for t in treatments] == [
        ("Temp Basal", None, 1.15),
        ("Correction Bolus", 0.45, None),
        ("Correction Bolus", 2.35, None),
    ]

    minus_five = dt.timezone(dt.timedelta(hours=-5))  # Loop asks in the phone's offset
    entries = client.get(
        "/api/v1/entries",
        params={
            "find[dateString][$gte]": (NOW - dt.timedelta(minutes=10)).astimezone(minus_five).isoformat(),
            "find[dateString][$lte]": NOW.astimezone(minus_five).isoformat(),
            "count": "288",
        },
        headers=site.headers,
    ).json()
    assert [e["sgv"] for e in entries] == [129, 124]


# -- Trio ---------------------------------------------------------------------------------------------


def _trio_upload(client: TestClient, site: Site) -> dict[str, list[str]]:
    note = client.post("/api/v1/treatments.json", json=apps.trio_connection_test(NOW), headers=site.headers)
    assert 200 <= note.status_code < 300  # Trio's connection test accepts any 2xx
    since = iso(NOW - dt.timedelta(days=1))
    fetched = client.get(
        f"/api/v1/entries/sgv.json?count=1600&find[dateString][$gte]={since}", headers=site.headers
    )
    assert fetched.status_code == 200
    ids: dict[str, list[str]] = {}
    bodies: dict[str, list[dict[str, Any]]] = {
        "entries.json": apps.trio_entries(NOW),
        "treatments.json": apps.trio_treatments(NOW) + apps.trio_careportal_carbs(NOW),
        "devicestatus.json": [apps.trio_device_status(NOW)],
    }
    for path, body in bodies.items():
        answer = client.post(f"/api/v1/{path}", json=body, headers=site.headers)
        ids[path] = [doc["_id"] for doc in _stored(answer, len(body))]
    profile = client.post(
        "/api/v1/profile.json",
        content=json.dumps(apps.trio_profile(NOW)),
        headers={**site.headers, "Content-Type": "application/json"},
    )
    assert profile.status_code == 200  # Trio wants exactly 200 here
    ids["profile.json"] = [doc["_id"] for doc in _stored(profile, 1)]
    return ids


def test_trio_uploads_are_stored_once(client: TestClient, site: Site, engine: Engine) -> None:
    first = _trio_upload(client, site)
    counts, records = _snapshot(engine, site)
    assert counts == {"entries": 3, "treatments": 7, "devicestatus": 1, "profile": 1}
    assert _trio_upload(client, site) == first
    assert _snapshot(engine, site) == (counts, records)

    assert [r.value for r in records if r.type == "cbg"] == [float(v) for _, v in apps.TRIO_SGV]
    meal = [r for r in records if r.time_ms == _at(50)]
    assert sorted((r.type, r.value) for r in meal) == [("bolus", 3.8), ("food", 42.0)]
    assert next(r for r in meal if r.type == "food").payload == {
        "event_type": "Meal Bolus",
        "fat_g": 12.0,
        "protein_g": 20.0,
    }
    assert _summary(records, "bolus") == [("normal", 3.8, None)]
    assert _summary(records, "food") == [
        ("", 42.0, None),
        ("", 12.0, None),
        ("", 9.0, None),
        ("", 16.0, None),
    ]
    assert _summary(records, "basal") == [("temp", 0.85, 30)]
    assert len([r for r in records if r.type == "note"]) == 1  # "Trio connected"
    assert len([r for r in records if r.type == "pumpSettings"]) == 1  # the temporary target is no record

    entries = client.get("/api/v1/entries/sgv.json?count=1600", headers=site.headers).json()
    assert [e["identifier"] for e in entries] == [
        f"9A8B7C6D-5E4F-4031-A2B3-C4D5E6F7A8B{i}" for i in (2, 1, 0)
    ]
    assert all(OBJECT_ID.match(e["_id"]) for e in entries)

    profile = client.get("/api/v1/profile.json?count=1", headers=site.headers)
    assert profile.headers["content-type"].startswith("application/json")
    store = profile.json()[0]["store"]
    assert list(store) == ["default"]
    assert [b["value"] for b in store["default"]["basal"]] == [0.7, 0.85]


def test_trio_queries_and_deletes(client: TestClient, site: Site, engine: Engine) -> None:
    _trio_upload(client, site)
    since = iso(NOW - dt.timedelta(days=1))
    foreign = client.get(
        "/api/v1/treatments.json?find[carbs][$exists]=true&find[enteredBy][$ne]=Trio"
        f"&find[enteredBy][$ne]=freeaps-x&find[created_at][$gt]={since}",
        headers=site.headers,
    ).json()
    assert [(t["enteredBy"], t["carbs"]) for t in foreign] == [("Nightscout careportal", 12)]

    targets = client.get(
        f"/api/v1/treatments.json?find[eventType]=Temporary+Target&find[created_at][$gte]={since}",
        headers=site.headers,
    ).json()
    assert [(t["targetTop"], t["targetBottom"], t["duration"]) for t in targets] == [(140, 140, 60)]

    by_id = client.delete(f"/api/v1/treatments.json?find[id][$eq]={apps.TRIO_CARBS_ID}", headers=site.headers)
    assert by_id.status_code == 200
    assert by_id.json()["n"] == 1
    assert 16.0 not in [r.value for r in records_of(engine, site.patient_id, "food")]

    when = targets[0]["created_at"]
    by_time = client.delete(f"/api/v1/treatments.json?find[created_at][$eq]={when}", headers=site.headers)
    assert by_time.json()["n"] == 1
    assert document_counts(engine, site.patient_id)["treatments"] == 5
    left = client.get(f"/api/v1/treatments.json?find[created_at][$gte]={since}", headers=site.headers).json()
    assert "Temporary Target" not in [t["eventType"] for t in left]


# -- AndroidAPS ---------------------------------------------------------------------------------------


def _aaps_upload(client: TestClient, site: Site) -> dict[str, list[str]]:
    ids: dict[str, list[str]] = {}
    bodies: dict[str, list[dict[str, Any]]] = {
        "entries": apps.aaps_entries(NOW),
        "treatments": apps.aaps_treatments(NOW),
        "devicestatus": [apps.aaps_device_status(NOW)],
    }
    for collection, body in bodies.items():
        answer = client.post(f"/api/v1/{collection}", json=body, headers=site.headers)
        ids[collection] = [doc["_id"] for doc in _stored(answer, len(body))]
    return ids


def test_androidaps_documents_are_stored_once(client: TestClient, site: Site, engine: Engine) -> None:
    first = _aaps_upload(client, site)
    counts, records = _snapshot(engine, site)
    assert counts == {"entries": 1, "treatments": 5, "devicestatus": 1}
    assert _aaps_upload(client, site) == first
    assert _snapshot(engine, site) == (counts, records)

    assert [(r.type, r.subtype, r.value, r.time_ms) for r in records if r.type == "cbg"] == [
        ("cbg", "sensor", 142.0, _at(6))
    ]
    assert {r.device for r in records} == {
        "Dexcom G7 (AndroidAPS-DexcomG7)",
        "AndroidAPS AndroidAPS (openaps://AndroidAPS)",
    }
    assert _summary(records, "bolus") == [("normal", 5.2, None), ("automated", 0.3, None)]
    assert _summary(records, "food") == [("", 52.0, None)]  # the carbs marked invalid are not counted
    assert _summary(records, "basal") == [("temp", 1.3, 45)]
    assert {r.type for r in records} == {"cbg", "bolus", "food", "basal"}  # a profile switch is no record

    smb_date = apps.aaps_treatments(NOW)[0]["date"]
    served = client.get(
        "/api/v1/treatments.json",
        params={"find[identifier]": apps.aaps_treatments(NOW)[0]["identifier"]},
        headers=site.headers,
    ).json()
    assert len(served) == 1
    assert served[0]["created_at"] == iso_utc(round(smb_date))  # from the fractional ``date``
    assert (served[0]["isSMB"], served[0]["type"], served[0]["pumpId"]) == (True, "SMB", 40871)
    assert (served[0]["pumpType"], served[0]["pumpSerial"]) == ("OMNIPOD_DASH", "0F2A91")
    smb = next(r for r in records if r.type == "bolus" and r.subtype == "automated")
    assert smb.time_ms == round(smb_date)

    # AndroidAPS removes a treatment by sending it again marked invalid: the document stays, its records go.
    invalid = dict(apps.aaps_treatments(NOW)[0], isValid=False)
    answer = client.post("/api/v1/treatments", json=[invalid], headers=site.headers)
    assert [doc["_id"] for doc in _stored(answer, 1)] == first["treatments"][:1]
    assert _summary(records_of(engine, site.patient_id, "bolus"), "bolus") == [("normal", 5.2, None)]
    assert document_counts(engine, site.patient_id) == counts


# -- tconnectsync --------------------------------------------------------------------------------------


def test_tconnectsync_request_forms(client: TestClient, site: Site, engine: Engine) -> None:
    """tconnectsync's calls (research/nightscout.md §1.3): it cannot be installed beside our pins.

    One object per POST with the plain secret in ``?api_secret=`` and its SHA-1 in the header;
    queries with an unescaped ``+`` in the offset (and again with a space for ``T``, its
    fallback) and a cache-busting ``ts``; a GET and a DELETE with an empty JSON body.
    """
    headers = {
        "Accept": "application/json",
        "Content-Type": "application/json",
        "api-secret": sha1(site.secret),
    }
    posts = (
        ("treatments", apps.tconnectsync_bolus(NOW)),
        ("treatments", apps.tconnectsync_basal(NOW)),
        ("entries", apps.tconnectsync_sgv(NOW)),
    )
    for _ in range(2):
        for collection, body in posts:
            answer = client.post(f"/api/v1/{collection}?api_secret={site.secret}", json=body, headers=headers)
            assert answer.status_code == 200, answer.text  # anything else is an error to tconnectsync
    counts, records = _snapshot(engine, site)
    assert counts == {"treatments": 2, "entries": 1}
    assert _summary(records, "bolus") == [("normal", 2.4, None)]
    assert _summary(records, "basal") == [("temp", 0.412, 25)]
    assert [(r.value, r.time_ms) for r in records if r.type == "cbg"] == [(151.0, _at(65))]

    by = urllib.parse.quote(apps.TCONNECTSYNC_BY)
    since = apps.tconnectsync_time(NOW - dt.timedelta(hours=2))
    for written in (since, since.replace("T", " ")):
        last = client.get(
            f"/api/v1/treatments?count=1&find[enteredBy]={by}&find[eventType]=Temp%20Basal"
            f"&find[created_at][$gte]={written}&ts={NOW.timestamp()}",
            headers={"api-secret": sha1(site.secret)},
        )
        assert [(t["absolute"], t["duration"]) for t in last.json()] == [(0.412, 25.0)]
        reading = client.get(
            f"/api/v1/entries.json?count=1&find[device]={by}&find[dateString][$gte]={written}&ts=1.5",
            headers={"api-secret": sha1(site.secret)},
        )
        assert [e["sgv"] for e in reading.json()] == [151]

    current = client.request(
        "GET", f"/api/v1/profile/current?api_secret={site.secret}", json={}, headers=headers
    )
    assert current.status_code == 200
    assert current.json() is None  # no profile yet

    bolus = client.get(
        f"/api/v1/treatments?find[eventType]=Combo%20Bolus&find[enteredBy]={by}", headers=headers
    )
    target = bolus.json()[0]["_id"]
    deleted = client.request(
        "DELETE", f"/api/v1/treatments/{target}?api_secret={site.secret}", json={}, headers=headers
    )
    assert deleted.status_code == 200
    assert records_of(engine, site.patient_id, "bolus") == []


# -- the retry rule itself ----------------------------------------------------------------------------

_INSTANTS = st.integers(min_value=ms(dt.datetime(2020, 1, 1, tzinfo=dt.UTC)), max_value=_at(-60 * 24 * 365))
_LABELS = st.text(st.characters(codec="utf-8"), max_size=200)


def _timed(collection: str, label: str, at: int) -> dict[str, Any]:
    if collection == "devicestatus":
        return {"device": label, "created_at": iso_utc(at), "uploader": {"battery": 50}}
    if collection == "activity":
        return {"type": label, "created_at": iso_utc(at), "bpm": 70}
    return {"startDate": iso_utc(at), "defaultProfile": label, "store": {}}


@given(
    collection=st.sampled_from(["devicestatus", "activity", "profile"]),
    label=_LABELS,
    at=_INSTANTS,
    later=st.integers(min_value=1, max_value=10**9),
    shift=st.integers(min_value=1, max_value=10**9),
)
def test_a_document_with_its_own_time_is_the_same_document_when_it_comes_again(
    collection: str, label: str, at: int, later: int, shift: int
) -> None:
    first = prepare(collection, _timed(collection, label, at), now_ms=at + later)
    again = prepare(collection, _timed(collection, label, at), now_ms=at + later + shift)
    assert first.identity is not None
    assert len(first.identity) <= MAX_IDENTITY
    assert again.identity == first.identity
    other = prepare(collection, _timed(collection, label, at + shift), now_ms=at + later)
    assert other.identity != first.identity


@given(collection=st.sampled_from(["devicestatus", "activity"]), label=_LABELS, now=_INSTANTS)
def test_a_document_without_a_time_is_always_new(collection: str, label: str, now: int) -> None:
    body = {"device": label} if collection == "devicestatus" else {"type": label, "bpm": 70}
    prepared = prepare(collection, body, now_ms=now)
    assert prepared.identity is None
    assert prepared.doc["created_at"] == iso_utc(now)

"""The Nightscout API v1 and v2 authorization as Nightscout clients call them (research/nightscout.md)."""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import json
import re
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select

from glucoshare.accounts.models import Patient
from glucoshare.accounts.service import add_patient, validate_patient
from glucoshare.accounts.sessions import create_api_token, revoke_api_token
from glucoshare.config import Settings
from glucoshare.db.session import session_scope
from glucoshare.ingest.schemas import IncomingFile
from glucoshare.ingest.service import import_files, remove_upload
from glucoshare.nightscout.models import NightscoutDocument
from glucoshare.records.models import Record, Upload
from tests.web.conftest import clarity_bytes

OBJECT_ID = re.compile(r"^[0-9a-f]{24}$")
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


def _sha1(text: str) -> str:
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()


class Site:
    """One patient with Nightscout credentials of every kind."""

    def __init__(self, engine: Engine, email: str = "ns@example.org") -> None:
        with session_scope(engine) as session:
            patient = add_patient(
                session, validate_patient(email=email, name="Night Scout", timezone="America/New_York")
            )
            self.patient_id = patient.id
            admin = create_api_token(session, patient, kind="nightscout", created_by="test")
            read = create_api_token(session, patient, kind="read", created_by="test")
            upload = create_api_token(session, patient, kind="upload", created_by="test")
        assert admin.api_secret is not None
        self.secret = admin.api_secret
        self.admin_token, self.admin_id = admin.token, admin.id
        self.read_token = read.token
        self.upload_token = upload.token

    @property
    def headers(self) -> dict[str, str]:
        """The API secret as Loop, Trio and xDrip+ send it."""
        return {"api-secret": _sha1(self.secret)}


@pytest.fixture
def site(engine: Engine) -> Site:
    return Site(engine)


def _sgv(minutes_ago: int, value: int, device: str = "xDrip-DexcomG6") -> dict[str, Any]:
    at = NOW - dt.timedelta(minutes=minutes_ago)
    local = at.astimezone(dt.timezone(dt.timedelta(hours=-5)))
    return {
        "type": "sgv",
        "sgv": value,
        "date": int(at.timestamp() * 1000),
        "dateString": local.strftime("%Y-%m-%dT%H:%M:%S.000%z"),  # -0500, as xDrip+ writes it
        "direction": "Flat",
        "device": device,
        "noise": 1,
        "filtered": 0,
        "unfiltered": 0,
        "rssi": 100,
    }


def _count(engine: Engine, model: type[Any]) -> int:
    with session_scope(engine) as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_status_answers_without_a_credential_and_holds_no_patient_data(
    client: TestClient, site: Site
) -> None:
    answer = client.get("/api/v1/status.json")
    assert answer.status_code == 200
    body = answer.json()
    assert body["status"] == "ok"
    assert body["version"].startswith("15.")
    assert body["settings"]["units"] == "mg/dl"
    assert "Night" not in answer.text
    script = client.get("/api/v1/status.js")
    assert script.text.startswith("this.serverSettings = {")


def test_nothing_is_readable_without_a_credential(client: TestClient, site: Site) -> None:
    client.post("/api/v1/entries", json=[_sgv(5, 120)], headers=site.headers).raise_for_status()
    for path in (
        "/api/v1/entries.json",
        "/api/v1/entries/sgv.json",
        "/api/v1/treatments",
        "/api/v1/profile.json",
    ):
        answer = client.get(path)
        assert answer.status_code == 401, path
        body = answer.json()
        assert body["status"] == 401
        assert body["message"] == "Unauthorized"
        assert body["error"]["code"] == "unauthorized"
    wrong = client.get("/api/v1/entries.json", headers={"api-secret": _sha1("not the secret")})
    assert wrong.status_code == 401
    verify = client.get("/api/v1/verifyauth").json()
    assert verify["status"] == 200
    assert verify["message"]["message"] == "UNAUTHORIZED"


def test_xdrip_entries_are_stored_once_and_read_back_newest_first(
    client: TestClient, site: Site, engine: Engine
) -> None:
    posted = [_sgv(15, 110), _sgv(10, 115), _sgv(5, 121)]
    answer = client.post("/api/v1/entries", json=posted, headers=site.headers)
    assert answer.status_code == 200
    assert answer.headers["accept-encoding"] == "gzip, deflate"  # xDrip+ gzips its uploads after this
    stored = answer.json()
    assert len(stored) == 3
    assert all(OBJECT_ID.match(doc["_id"]) for doc in stored)
    assert [doc["sgv"] for doc in stored] == [110, 115, 121]
    assert stored[0]["device"] == "xDrip-DexcomG6"
    assert stored[0]["rssi"] == 100  # fields Glucoshare does not read come back as sent
    again = client.post("/api/v1/entries.json", json=posted, headers=site.headers)
    assert [doc["_id"] for doc in again.json()] == [doc["_id"] for doc in stored]
    assert _count(engine, NightscoutDocument) == 3
    assert _count(engine, Record) == 3
    read = client.get("/api/v1/entries.json?count=2", headers=site.headers).json()
    assert [doc["sgv"] for doc in read] == [121, 115]
    assert read[0]["delta"] == 6.0
    assert read[0]["dateString"].endswith("Z")
    assert read[0]["utcOffset"] == -300
    current = client.get("/api/v1/entries/current", headers=site.headers).json()
    assert len(current) == 1
    assert current[0]["sgv"] == 121
    by_id = client.get(f"/api/v1/entries/{stored[0]['_id']}", headers=site.headers).json()
    assert [doc["sgv"] for doc in by_id] == [110]


def test_date_queries_compare_instants_whatever_the_offset(client: TestClient, site: Site) -> None:
    client.post("/api/v1/entries", json=[_sgv(30, 100), _sgv(20, 105), _sgv(10, 110)], headers=site.headers)
    cut = (NOW - dt.timedelta(minutes=25)).astimezone(dt.timezone(dt.timedelta(hours=2)))
    text = cut.strftime("%Y-%m-%dT%H:%M:%S+02:00")
    answer = client.get(
        "/api/v1/entries/sgv.json",
        params={"find[dateString][$gte]": text, "count": "10"},
        headers=site.headers,
    )
    assert sorted(doc["sgv"] for doc in answer.json()) == [105, 110]
    epoch = int((NOW - dt.timedelta(minutes=15)).timestamp() * 1000)
    answer = client.get(f"/api/v1/entries.json?find[date][$lte]={epoch}&count=10", headers=site.headers)
    assert sorted(doc["sgv"] for doc in answer.json()) == [100, 105]


def test_loop_and_trio_treatments_upsert_and_delete(client: TestClient, site: Site, engine: Engine) -> None:
    at = (NOW - dt.timedelta(minutes=20)).isoformat().replace("+00:00", "Z")
    loop = [
        {
            "eventType": "Correction Bolus",
            "created_at": at,
            "timestamp": at,
            "insulin": 1.5,
            "syncIdentifier": "abc-1",
            "enteredBy": "loop://iPhone",
            "automatic": False,
        },
        {
            "eventType": "Carb Correction",
            "created_at": at,
            "carbs": "30",
            "enteredBy": "loop://iPhone",
            "syncIdentifier": "abc-2",
        },
    ]
    stored = client.post("/api/v1/treatments", json=loop, headers=site.headers).json()
    assert len(stored) == 2
    assert stored[1]["carbs"] == 30  # text numbers become numbers, as Nightscout stores them
    trio = client.post(
        "/api/v1/treatments.json",
        json={
            "eventType": "Note",
            "enteredBy": "Trio",
            "notes": "Trio connected",
            "created_at": at,
            "id": "t-1",
        },
        headers=site.headers,
    )
    assert trio.status_code == 200
    assert len(trio.json()) == 1
    changed = dict(loop[0], insulin=2.0)
    client.post("/api/v1/treatments", json=[changed], headers=site.headers).raise_for_status()
    with session_scope(engine) as session:
        boluses = session.scalars(select(Record.value).where(Record.type == "bolus")).all()
        assert boluses == [2.0]
        assert session.scalar(select(func.count()).select_from(NightscoutDocument)) == 3
    carbs = client.get(
        "/api/v1/treatments.json", params={"find[carbs][$exists]": "true"}, headers=site.headers
    ).json()
    assert [doc["carbs"] for doc in carbs] == [30]
    deleted = client.delete("/api/v1/treatments.json?find[id][$eq]=t-1", headers=site.headers)
    assert deleted.json()["n"] == 1
    left = client.get("/api/v1/treatments", headers=site.headers).json()
    assert sorted(doc["eventType"] for doc in left) == ["Carb Correction", "Correction Bolus"]
    client.delete(f"/api/v1/treatments/{stored[0]['_id']}", headers=site.headers).raise_for_status()
    with session_scope(engine) as session:
        assert session.scalars(select(Record.value).where(Record.type == "bolus")).all() == []


def test_xdrip_put_keeps_its_own_id(client: TestClient, site: Site) -> None:
    own = "5f1e2d3c4b5a69788796a5b4"
    body = {
        "_id": own,
        "timestamp": int(NOW.timestamp() * 1000),
        "eventType": "Snack Bolus",
        "enteredBy": "xdrip",
        "carbs": 12,
        "insulin": 1,
        "uuid": "7f0c7c5c-0000-4000-8000-000000000001",
    }
    answer = client.put("/api/v1/treatments", json=body, headers=site.headers)
    assert answer.status_code == 200
    assert answer.json()["_id"] == own
    found = client.get(
        "/api/v1/treatments.json", params={"find[uuid]": body["uuid"]}, headers=site.headers
    ).json()
    assert [doc["_id"] for doc in found] == [own]


def test_bodies_as_gzip_form_and_paths_with_slash(client: TestClient, site: Site) -> None:
    packed = gzip.compress(json.dumps([_sgv(5, 130)]).encode())
    answer = client.post(
        "/api/v1/entries/",
        content=packed,
        headers={**site.headers, "Content-Encoding": "gzip", "Content-Type": "application/json"},
    )
    assert answer.status_code == 200
    assert answer.json()[0]["sgv"] == 130
    form = client.post(
        "/api/v1/treatments/",
        data={"eventType": "Note", "notes": "from a form", "created_at": NOW.isoformat()},
        headers=site.headers,
    )
    assert form.status_code == 200
    assert form.json()[0]["notes"] == "from a form"
    bomb = gzip.compress(b"[" + b" " * (20 * 1024 * 1024) + b"]")
    refused = client.post(
        "/api/v1/entries", content=bomb, headers={**site.headers, "Content-Encoding": "gzip"}
    )
    assert refused.status_code == 400


def test_every_credential_form_clients_use(client: TestClient, site: Site) -> None:
    client.post("/api/v1/entries", json=[_sgv(5, 140)], headers=site.headers).raise_for_status()
    forms: list[tuple[str, dict[str, str]]] = [
        (f"/api/v1/entries.json?token={site.read_token}", {}),
        (f"/api/v1/entries.json?secret={_sha1(site.secret)}", {}),
        (f"/api/v1/entries.json?secret={site.secret}", {}),  # tconnectsync sends the plain secret
        (f"/api/v1/entries.json?api_secret={_sha1(site.secret)}", {}),  # the swagger client's name
        ("/api/v1/entries.json", {"api-secret": site.read_token}),
        ("/api/v1/entries.json", {"api-secret": _sha1(site.read_token)}),
        ("/api/v1/entries.json", {"api-secret": f"token={site.read_token}"}),
        ("/api/v1/entries.json", {"Authorization": f"Bearer {site.read_token}"}),
    ]
    for path, headers in forms:
        answer = client.get(path, headers=headers)
        assert answer.status_code == 200, (path, headers)
        assert answer.json()[0]["sgv"] == 140


def test_roles_limit_what_a_token_may_do(client: TestClient, site: Site, engine: Engine) -> None:
    read = {"api-secret": site.read_token}
    upload = {"api-secret": site.upload_token}
    assert client.post("/api/v1/entries", json=[_sgv(5, 100)], headers=read).status_code == 403
    assert client.post("/api/v1/entries", json=[_sgv(5, 100)], headers=upload).status_code == 200
    assert client.get("/api/v1/entries.json", headers=upload).status_code == 403
    assert client.get("/api/v1/entries.json", headers=read).status_code == 200
    assert client.get("/api/v1/experiments/test", headers=site.headers).json() == {"status": "ok"}
    assert client.get("/api/v1/experiments/test", headers=read).status_code == 401
    verify = client.get("/api/v1/verifyauth", headers=read).json()["message"]
    assert (verify["canRead"], verify["canWrite"], verify["message"]) == (True, False, "OK")


def test_jwt_from_the_authorization_request_reads_until_the_token_is_revoked(
    client: TestClient, site: Site, engine: Engine
) -> None:
    client.post("/api/v1/entries", json=[_sgv(5, 150)], headers=site.headers).raise_for_status()
    issued = client.get(f"/api/v2/authorization/request/{site.admin_token}")
    assert issued.status_code == 200
    claims = issued.json()
    assert claims["exp"] - claims["iat"] == 8 * 3600
    bearer = {"Authorization": f"Bearer {claims['token']}"}
    assert client.get("/api/v1/entries.json", headers=bearer).json()[0]["sgv"] == 150
    assert client.get("/api/v2/authorization/request/not-a-token").status_code == 401
    with session_scope(engine) as session:
        patient = session.get(Patient, site.patient_id)
        assert patient is not None
        revoke_api_token(session, site.admin_id, patient=patient)
    assert client.get("/api/v1/entries.json", headers=bearer).status_code == 401
    tampered = claims["token"][:-2] + ("AA" if not claims["token"].endswith("AA") else "BB")
    assert (
        client.get("/api/v1/entries.json", headers={"Authorization": f"Bearer {tampered}"}).status_code == 401
    )


def test_a_bad_document_refuses_the_request_and_stores_nothing(
    client: TestClient, site: Site, engine: Engine
) -> None:
    bad = [_sgv(10, 120), {"type": "sgv", "sgv": 5000, "date": int(NOW.timestamp() * 1000)}]
    answer = client.post("/api/v1/entries", json=bad, headers=site.headers)
    assert answer.status_code == 400
    assert "document 1" in answer.json()["description"]
    assert _count(engine, NightscoutDocument) == 0
    assert _count(engine, Record) == 0
    assert client.post("/api/v1/entries", content=b"{not json", headers=site.headers).status_code == 400
    assert _count(engine, NightscoutDocument) == 0


def test_file_imports_are_served_and_api_data_reaches_every_upload_list(
    client: TestClient, site: Site, engine: Engine, app_settings: Settings
) -> None:
    name, data = clarity_bytes(days=1)
    with session_scope(engine) as session:
        patient = session.get(Patient, site.patient_id)
        assert patient is not None
        import_files(
            session,
            settings=app_settings,
            patient=patient,
            files=[IncomingFile(name, data)],
            timezone=None,
            actor="test",
        )
        first, last = session.execute(select(func.min(Record.time_ms), func.max(Record.time_ms))).one()
    window = {"find[date][$gte]": str(first), "find[date][$lte]": str(last), "count": "100000"}
    served = client.get("/api/v1/entries/sgv.json", params=window, headers=site.headers).json()
    with session_scope(engine) as session:
        readings = session.scalar(select(func.count()).select_from(Record).where(Record.type == "cbg"))
    assert len(served) == readings
    assert all(doc["_id"].startswith("ffffffff") for doc in served)
    # Deleting a file's record through Nightscout is not possible: the upload is removed instead.
    assert client.delete(f"/api/v1/entries/{served[0]['_id']}", headers=site.headers).json()["n"] == 0
    client.post("/api/v1/entries", json=[_sgv(5, 99)], headers=site.headers).raise_for_status()
    with session_scope(engine) as session:
        api = session.scalar(select(Upload).where(Upload.format == "nightscout_api"))
        assert api is not None
        assert api.counts == {"cbg": 1}
        remove_upload(session, settings=app_settings, upload_id=api.id, actor="test")
    assert _count(engine, NightscoutDocument) == 0


def test_profiles_and_device_status(client: TestClient, site: Site, engine: Engine) -> None:
    profile = {
        "defaultProfile": "Default",
        "startDate": (NOW - dt.timedelta(days=1)).isoformat().replace("+00:00", "Z"),
        "units": "mg/dl",
        "store": {
            "Default": {
                "dia": "5",
                "timezone": "America/New_York",
                "units": "mg/dl",
                "carbratio": [{"time": "00:00", "value": "10", "timeAsSeconds": 0}],
                "sens": [{"time": "00:00", "value": "40", "timeAsSeconds": 0}],
                "basal": [{"time": "00:00", "value": "0.8", "timeAsSeconds": 0}],
                "target_low": [{"time": "00:00", "value": "100", "timeAsSeconds": 0}],
                "target_high": [{"time": "00:00", "value": "120", "timeAsSeconds": 0}],
            }
        },
    }
    posted = client.post("/api/v1/profile.json", json=profile, headers=site.headers)
    assert posted.status_code == 200
    current = client.get("/api/v1/profile/current", headers=site.headers).json()
    assert current["_id"] == posted.json()[0]["_id"]
    assert current["store"]["Default"]["dia"] == "5"
    with session_scope(engine) as session:
        assert (
            session.scalar(select(func.count()).select_from(Record).where(Record.type == "pumpSettings")) == 1
        )
    status = {"device": "openaps://phone", "openaps": {"iob": {"iob": 1.2}}, "uploader": {"battery": 80}}
    client.post("/api/v1/devicestatus", json=status, headers=site.headers).raise_for_status()
    client.post("/api/v1/devicestatus", json=status, headers=site.headers).raise_for_status()
    found = client.get("/api/v1/devicestatus.json?count=5", headers=site.headers).json()
    assert len(found) == 2  # device status is never merged
    assert found[0]["uploader"]["battery"] == 80


def test_one_patients_credential_never_reaches_another(
    client: TestClient, site: Site, engine: Engine
) -> None:
    other = Site(engine, "other@example.org")
    client.post("/api/v1/entries", json=[_sgv(5, 180)], headers=other.headers).raise_for_status()
    assert client.get("/api/v1/entries.json", headers=site.headers).json() == []
    stored = client.get("/api/v1/entries.json", headers=other.headers).json()
    hijack = dict(stored[0], sgv=40)
    answer = client.put("/api/v1/entries", json=hijack, headers=site.headers)
    assert answer.status_code == 409
    assert client.get("/api/v1/entries.json", headers=other.headers).json()[0]["sgv"] == 180


def test_followers_read_pebble_and_properties(client: TestClient, site: Site) -> None:
    client.post(
        "/api/v1/entries", json=[_sgv(10, 100), _sgv(5, 108)], headers=site.headers
    ).raise_for_status()
    status = {
        "device": "openaps://phone",
        "openaps": {"iob": {"iob": 1.25}, "suggested": {"COB": 12}},
        "uploader": {"battery": 71},
    }
    client.post("/api/v1/devicestatus", json=status, headers=site.headers).raise_for_status()
    assert client.get("/pebble").status_code == 401
    watch = client.get("/pebble?count=2&units=mmol", headers=site.headers).json()
    first = watch["bgs"][0]
    assert first["sgv"] == "6.0"  # 108 mg/dL in mmol/L
    assert (first["trend"], first["direction"], first["battery"], first["iob"], first["cob"]) == (
        4,
        "Flat",
        "71",
        "1.25",
        12,
    )
    assert len(watch["bgs"]) == 2
    props = client.get("/api/v2/properties/bgnow,delta,upbat", headers=site.headers).json()
    assert set(props) == {"bgnow", "delta", "upbat"}
    assert props["bgnow"]["last"] == 108
    assert props["delta"]["mgdl"] == 8.0
    assert props["upbat"]["level"] == 71
    assert client.get("/api/v2/properties", headers={"api-secret": site.upload_token}).status_code == 403


def test_a_document_moved_onto_another_ones_identity_replaces_it_and_its_records(
    client: TestClient, site: Site, engine: Engine
) -> None:
    first = (NOW - dt.timedelta(hours=2)).isoformat().replace("+00:00", "Z")
    second = (NOW - dt.timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    a, b = client.post(
        "/api/v1/treatments",
        json=[
            {"eventType": "Correction Bolus", "created_at": first, "insulin": 1},
            {"eventType": "Correction Bolus", "created_at": second, "insulin": 2},
        ],
        headers=site.headers,
    ).json()
    moved = {"_id": a["_id"], "eventType": "Correction Bolus", "created_at": second, "insulin": 3}
    assert client.put("/api/v1/treatments", json=moved, headers=site.headers).status_code == 200
    with session_scope(engine) as session:
        assert session.scalars(select(Record.value).where(Record.type == "bolus")).all() == [3.0]
        assert session.scalars(select(NightscoutDocument.id)).all() == [a["_id"]]
    assert b["_id"] not in {
        doc["_id"] for doc in client.get("/api/v1/treatments", headers=site.headers).json()
    }

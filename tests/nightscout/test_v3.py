"""The Nightscout API v3 as AndroidAPS (NSClientV3) and AAPSClient call it (research/nightscout.md §1.10).

The calls and fields are those of AndroidAPS's ``core/nssdk`` (``NightscoutRemoteService``,
``NSAuthInterceptor``): a JWT from ``/api/v2/authorization/request/<token>`` sent as Bearer with a
``Date`` header of epoch ms on every call, refreshed once after a 401 or 403; documents created
with ``date`` (ms), ``app`` and ``utcOffset``; reads by ``history/<lastModified>`` and searches
with ``date$gt``, ``sort$desc=date`` and ``limit``. Both databases; what is stored is read back
with SQLAlchemy (tests/nightscout/fixtures/site.py), not only through the API.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Engine, select

from glucoshare.accounts.models import Patient
from glucoshare.accounts.sessions import revoke_api_token
from glucoshare.audit.models import AuditEvent
from glucoshare.config import Settings
from glucoshare.db.session import session_scope
from glucoshare.ingest.nightscout_mapping import iso_utc
from glucoshare.nightscout import v3
from glucoshare.nightscout.access import Presented, authenticate, issue_jwt
from glucoshare.nightscout.models import NightscoutDocument
from glucoshare.vault.keyfile import KeyRing
from glucoshare.web.app import create_app
from tests.nightscout.fixtures.site import Site, document_counts, make_site, records_of
from tests.web.conftest import BASE_URL

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
NOW_MS = int(NOW.timestamp() * 1000)
PHONE = "Samsung SM-G970F"
PUMP = "DanaRS-12345"
Response = Any  # the test client's responses (httpx2's)


@pytest.fixture
def client(settings: Settings, engine: Engine) -> Iterator[TestClient]:
    """The app on the test database, called in-process (``client`` of tests/web/conftest.py)."""
    with TestClient(create_app(settings, engine), base_url=BASE_URL) as http:
        yield http


@pytest.fixture
def site(engine: Engine) -> Site:
    return make_site(engine, "aaps@example.org", "Europe/Prague")


class Phone:
    """AndroidAPS's NSClientV3: an access token in its settings, a JWT it refreshes on 401/403."""

    def __init__(self, client: TestClient, token: str) -> None:
        self.client = client
        self.token = token
        self.jwt = ""  # AndroidAPS starts without one and asks after the first 401
        self.refreshes = 0

    def _send(self, method: str, path: str, **kwargs: Any) -> Response:
        headers = {
            "Date": str(int(dt.datetime.now(dt.UTC).timestamp() * 1000)),
            "Authorization": f"Bearer {self.jwt}",
            **kwargs.pop("headers", {}),
        }
        return self.client.request(method, f"/api/v3/{path}", headers=headers, **kwargs)

    def call(self, method: str, path: str, **kwargs: Any) -> Response:
        answer = self._send(method, path, **dict(kwargs))
        if answer.status_code in (401, 403):
            refreshed = self.client.get(f"/api/v2/authorization/request/{self.token}")
            if refreshed.status_code != 200:
                return refreshed
            self.jwt = refreshed.json()["token"]
            self.refreshes += 1
            answer = self._send(method, path, **dict(kwargs))
        return answer

    def get(self, path: str, **kwargs: Any) -> Response:
        return self.call("GET", path, **kwargs)

    def post(self, path: str, body: object) -> Response:
        return self.call("POST", path, json=body)


def _jwt(client: TestClient, token: str) -> dict[str, str]:
    answer = client.get(f"/api/v2/authorization/request/{token}")
    assert answer.status_code == 200
    return {"Authorization": f"Bearer {answer.json()['token']}"}


def _sgv(minutes_ago: int, value: int) -> dict[str, Any]:
    """An sgv as AndroidAPS uploads it (RemoteEntry; no identifier: the server calculates it)."""
    return {
        "type": "sgv",
        "sgv": value,
        "date": NOW_MS - minutes_ago * 60_000,
        "device": "AndroidAPS-DexcomG6",
        "direction": "Flat",
        "utcOffset": 60,
        "isValid": True,
        "units": "mg/dl",
        "app": "AAPS",
    }


def _bolus(minutes_ago: int, insulin: float) -> dict[str, Any]:
    return {
        "eventType": "Correction Bolus",
        "date": NOW_MS - minutes_ago * 60_000,
        "device": PUMP,
        "insulin": insulin,
        "type": "NORMAL",
        "isSMB": False,
        "pumpId": 4100 + minutes_ago,
        "pumpType": "DANA_RS",
        "pumpSerial": "12345",
        "utcOffset": 60,
        "isValid": True,
        "app": "AAPS",
    }


def _profile() -> dict[str, Any]:
    schedule = [{"time": "00:00", "timeAsSeconds": 0, "value": 0.8}]
    return {
        "date": NOW_MS - 86_400_000,
        "defaultProfile": "Default",
        "units": "mg/dl",
        "store": {
            "Default": {
                "dia": 5,
                "timezone": "Europe/Prague",
                "units": "mg/dl",
                "carbratio": [{"time": "00:00", "timeAsSeconds": 0, "value": 10}],
                "sens": [{"time": "00:00", "timeAsSeconds": 0, "value": 40}],
                "basal": schedule,
                "target_low": [{"time": "00:00", "timeAsSeconds": 0, "value": 100}],
                "target_high": [{"time": "00:00", "timeAsSeconds": 0, "value": 110}],
            }
        },
        "app": "AAPS",
    }


def _device_status(minutes_ago: int) -> dict[str, Any]:
    at = NOW - dt.timedelta(minutes=minutes_ago)
    return {
        "date": int(at.timestamp() * 1000),
        "created_at": iso_utc(int(at.timestamp() * 1000)),
        "device": f"openaps://{PHONE}",
        "pump": {"reservoir": 120.5, "battery": {"percent": 75}, "clock": at.isoformat()},
        "openaps": {"iob": {"iob": 1.25, "basaliob": 0.1}, "suggested": {"bg": 120, "eventualBG": 110}},
        "uploaderBattery": 80,
        "isCharging": False,
        "app": "AAPS",
    }


def _result(answer: Response) -> Any:
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["status"] == 200
    return body["result"]


def _rows(engine: Engine, patient_id: str) -> list[NightscoutDocument]:
    with session_scope(engine) as session:
        return list(
            session.scalars(
                select(NightscoutDocument)
                .where(NightscoutDocument.patient_id == patient_id)
                .order_by(NightscoutDocument.seq)
            )
        )


# -- the AndroidAPS flow -----------------------------------------------------------------------------


def test_androidaps_uploads_once_and_reads_back(client: TestClient, site: Site, engine: Engine) -> None:
    phone = Phone(client, site.admin_token)
    status = phone.get("status")
    assert phone.refreshes == 1  # no JWT yet: 401, then the authorization request, then the call again
    info = _result(status)
    assert info["version"].startswith("15.")
    assert info["apiVersion"] == v3.API_VERSION
    assert info["apiPermissions"] == dict.fromkeys(v3.COLLECTIONS, "crud")
    assert _result(phone.get("lastModified"))["collections"] == {}

    created: list[dict[str, Any]] = []
    for minutes_ago, value in ((10, 110), (5, 115), (0, 121)):
        answer = phone.post("entries", _sgv(minutes_ago, value))
        assert answer.status_code == 201, answer.text
        created.append(answer.json())
    first = created[0]
    assert first["status"] == 201
    assert first["identifier"] == v3.calculate_identifier(_sgv(10, 110))
    assert isinstance(first["lastModified"], int)
    bolus = phone.post("treatments", _bolus(20, 1.5))
    assert bolus.status_code == 201
    assert bolus.headers["Location"] == f"/api/v3/treatments/{bolus.json()['identifier']}"
    assert phone.post("devicestatus", _device_status(1)).status_code == 201
    assert phone.post("profile", _profile()).status_code == 201
    assert document_counts(engine, site.patient_id) == {
        "entries": 3,
        "treatments": 1,
        "devicestatus": 1,
        "profile": 1,
    }
    assert [r.value for r in records_of(engine, site.patient_id, "cbg")] == [110, 115, 121]
    assert [r.value for r in records_of(engine, site.patient_id, "bolus")] == [1.5]
    assert len(records_of(engine, site.patient_id, "pumpSettings")) == 1

    # AndroidAPS uploads again after a lost answer: the same identifier, nothing added.
    again = phone.post("entries", _sgv(10, 110))
    assert again.status_code == 200
    assert again.json()["isDeduplication"] is True
    assert again.json()["identifier"] == first["identifier"]
    assert "deduplicatedIdentifier" not in again.json()
    assert phone.post("treatments", _bolus(20, 1.5)).json()["isDeduplication"] is True
    assert phone.post("devicestatus", _device_status(1)).status_code == 200
    assert document_counts(engine, site.patient_id)["entries"] == 3
    assert len(records_of(engine, site.patient_id, "cbg")) == 3

    modified = _result(phone.get("lastModified"))["collections"]
    assert set(modified) == {"entries", "treatments", "devicestatus", "profile"}

    # getSgvsNewerThan, getSgvs, getLastProfile
    newer = _result(
        phone.get("entries", params={"sort": "date", "date$gt": str(NOW_MS - 7 * 60_000), "limit": "10"})
    )
    assert [doc["sgv"] for doc in newer] == [115, 121]
    newest = _result(phone.get("entries?sort$desc=date&type=sgv&limit=2"))
    assert [doc["sgv"] for doc in newest] == [121, 115]
    doc = newest[0]
    assert doc["identifier"] == created[2]["identifier"]
    assert doc["isValid"] is True
    assert doc["srvCreated"] <= doc["srvModified"]
    assert doc["app"] == "AAPS"
    assert "_id" not in doc
    profile = _result(phone.get("profile?sort$desc=date&limit=1"))
    assert profile[0]["store"]["Default"]["dia"] == 5
    treatments = _result(
        phone.get("treatments", params={"sort": "created_at", "created_at$gt": iso_utc(NOW_MS - 3_600_000)})
    )
    assert [t["insulin"] for t in treatments] == [1.5]
    assert treatments[0]["pumpId"] == 4120
    one = _result(phone.get(f"treatments/{bolus.json()['identifier']}"))
    assert one["identifier"] == bolus.json()["identifier"]
    assert one["created_at"] == iso_utc(NOW_MS - 20 * 60_000)


def test_history_since_last_modified_lists_changes_and_deletions(
    client: TestClient, site: Site, engine: Engine
) -> None:
    phone = Phone(client, site.admin_token)
    start = phone.post("entries", _sgv(15, 100)).json()["lastModified"]
    everything = phone.get("entries/history/0")
    assert [doc["sgv"] for doc in _result(everything)] == [100]
    assert everything.headers["ETag"] == f'W/"{start}"'
    assert everything.headers["Last-Modified"] == email.utils.formatdate(start / 1000, usegmt=True)
    second = phone.post("entries", _sgv(10, 105)).json()
    third = phone.post("entries", _sgv(5, 110)).json()
    changed = _result(phone.get(f"entries/history/{start}", params={"limit": "1000"}))
    assert [doc["sgv"] for doc in changed] == [105, 110]
    assert [doc["srvModified"] for doc in changed] == sorted(doc["srvModified"] for doc in changed)

    # AndroidAPS marks a reading invalid: DELETE (soft). HISTORY shows it, SEARCH and READ do not.
    deleted = phone.call("DELETE", f"entries/{second['identifier']}")
    assert deleted.json() == {"status": 200}
    since_third = _result(phone.get(f"entries/history/{third['lastModified']}"))
    assert [(doc["sgv"], doc["isValid"]) for doc in since_third] == [(105, False)]
    assert [doc["sgv"] for doc in _result(phone.get("entries?sort$desc=date"))] == [110, 100]
    gone = phone.get(f"entries/{second['identifier']}")
    assert gone.status_code == 410
    assert gone.json()["status"] == 410
    assert [r.value for r in records_of(engine, site.patient_id, "cbg")] == [100, 110]
    assert document_counts(engine, site.patient_id)["entries"] == 3  # the document stays for HISTORY

    # By the request's Last-Modified header (whole seconds, at or after).
    header = email.utils.formatdate(third["lastModified"] / 1000, usegmt=True)
    by_header = _result(phone.get("entries/history", headers={"Last-Modified": header}))
    assert {doc["sgv"] for doc in by_header} >= {105, 110}
    assert phone.get("entries/history").status_code == 400
    assert phone.get("entries/history/yesterday").json()["message"] == v3.MSG_BAD_LAST_MODIFIED

    permanent = phone.call("DELETE", f"entries/{second['identifier']}?permanent=true")
    assert permanent.status_code == 200
    assert document_counts(engine, site.patient_id)["entries"] == 2
    assert [doc["sgv"] for doc in _result(phone.get("entries/history/0"))] == [100, 110]
    assert phone.call("DELETE", f"entries/{second['identifier']}").status_code == 404


def test_history_limit_never_splits_one_millisecond(client: TestClient, site: Site) -> None:
    batch = [dict(_sgv(minutes, 100 + minutes), identifier=f"x-{minutes}") for minutes in range(6)]
    client.post("/api/v1/entries", json=batch, headers=site.headers).raise_for_status()  # one instant
    phone = Phone(client, site.admin_token)
    page = _result(phone.get("entries/history/0", params={"limit": "2"}))
    assert len(page) == 6
    assert len({doc["srvModified"] for doc in page}) == 1
    after = _result(phone.get(f"entries/history/{page[-1]['srvModified']}", params={"limit": "2"}))
    assert after == []


def test_update_patch_and_their_rules(client: TestClient, site: Site, engine: Engine) -> None:
    phone = Phone(client, site.admin_token)
    body = _bolus(30, 2.0)
    upserted = phone.call("PUT", "treatments/aaps-bolus-1", json=body)
    assert upserted.status_code == 201
    assert upserted.json()["identifier"] == "aaps-bolus-1"
    replaced = phone.call("PUT", "treatments/aaps-bolus-1", json=dict(body, insulin=2.5, notes="typo"))
    assert replaced.status_code == 200
    assert replaced.json()["status"] == 200
    stored = _result(phone.get("treatments/aaps-bolus-1"))
    assert (stored["insulin"], stored["notes"]) == (2.5, "typo")
    assert [r.value for r in records_of(engine, site.patient_id, "bolus")] == [2.5]

    # AndroidAPS's updateTreatment: PATCH without date and utcOffset; fields not sent are kept.
    patch = {key: value for key, value in body.items() if key not in ("date", "utcOffset", "app")}
    patch.update(identifier="aaps-bolus-1", insulin=3.0)
    patched = phone.call("PATCH", "treatments/aaps-bolus-1", json=patch)
    assert patched.json() == {"status": 200}
    assert "Last-Modified" in patched.headers
    stored = _result(phone.get("treatments/aaps-bolus-1"))
    assert (stored["insulin"], stored["notes"], stored["app"]) == (3.0, "typo", "AAPS")
    assert [r.value for r in records_of(engine, site.patient_id, "bolus")] == [3.0]

    moved = phone.call("PATCH", "treatments/aaps-bolus-1", json={"date": NOW_MS})
    assert moved.status_code == 400
    assert moved.json()["message"] == "Field date cannot be modified by the client"
    renamed = phone.call("PUT", "treatments/aaps-bolus-1", json=dict(body, eventType="Meal Bolus"))
    assert renamed.json()["message"] == "Field eventType cannot be modified by the client"
    assert phone.call("PATCH", "treatments/nothing-here", json={"notes": "x"}).status_code == 404
    stale = email.utils.formatdate((NOW_MS - 3_600_000) / 1000, usegmt=True)
    refused = phone.call("PUT", "treatments/aaps-bolus-1", json=body, headers={"If-Unmodified-Since": stale})
    assert refused.status_code == 412
    fresh = email.utils.formatdate(stored["srvModified"] / 1000 + 5, usegmt=True)
    assert phone.get("treatments/aaps-bolus-1", headers={"If-Modified-Since": fresh}).status_code == 304

    phone.call("DELETE", "treatments/aaps-bolus-1").raise_for_status()
    assert records_of(engine, site.patient_id, "bolus") == []  # a deleted treatment counts nowhere
    assert phone.call("PATCH", "treatments/aaps-bolus-1", json={"notes": "x"}).status_code == 410
    assert phone.call("PUT", "treatments/aaps-bolus-1", json=body).status_code == 410
    revived = phone.post("treatments", dict(body, identifier="aaps-bolus-1", insulin=1.0))
    assert revived.status_code == 200
    assert revived.json()["isDeduplication"] is True
    assert [r.value for r in records_of(engine, site.patient_id, "bolus")] == [1.0]
    assert _result(phone.get("treatments/aaps-bolus-1"))["isValid"] is True


# -- one truth with API v1 ----------------------------------------------------------------------------


def test_v1_and_v3_serve_the_same_documents(client: TestClient, site: Site, engine: Engine) -> None:
    at = iso_utc(NOW_MS - 40 * 60_000)
    loop = {"eventType": "Carb Correction", "created_at": at, "carbs": 30, "syncIdentifier": "loop-1"}
    posted = client.post("/api/v1/treatments", json=[loop], headers=site.headers).json()[0]
    phone = Phone(client, site.read_token)
    found = _result(phone.get("treatments", params={"carbs$gte": "30"}))
    assert len(found) == 1
    assert found[0]["identifier"] == posted["_id"]  # no identifier field: the _id is the identifier
    assert found[0]["date"] == NOW_MS - 40 * 60_000
    assert _result(phone.get(f"treatments/{posted['_id']}"))["syncIdentifier"] == "loop-1"

    writer = Phone(client, site.admin_token)
    created = writer.post("treatments", _bolus(25, 0.7)).json()
    v1 = client.get("/api/v1/treatments.json?find[insulin][$gte]=0.5", headers=site.headers).json()
    assert len(v1) == 1
    assert v1[0]["identifier"] == created["identifier"]
    assert v1[0]["insulin"] == 0.7
    assert _result(writer.get(f"treatments/{v1[0]['_id']}"))["identifier"] == created["identifier"]
    assert [r.value for r in records_of(engine, site.patient_id, "bolus")] == [0.7]

    # A v1 reader changes it by _id (xDrip+'s PUT); v3 reads the change, one document, one record.
    client.put("/api/v1/treatments", json=dict(v1[0], insulin=0.9), headers=site.headers).raise_for_status()
    assert _result(writer.get(f"treatments/{created['identifier']}"))["insulin"] == 0.9
    assert [r.value for r in records_of(engine, site.patient_id, "bolus")] == [0.9]

    # v3's soft delete: v1 readers no longer see the document (a follower must not show a deleted
    # treatment), v3's history keeps it; no records.
    writer.call("DELETE", f"treatments/{created['identifier']}").raise_for_status()
    marked = client.get("/api/v1/treatments.json?find[insulin][$gte]=0.5", headers=site.headers).json()
    assert marked == []
    assert records_of(engine, site.patient_id, "bolus") == []
    client.delete(f"/api/v1/treatments/{posted['_id']}", headers=site.headers).raise_for_status()
    assert phone.get(f"treatments/{posted['_id']}").status_code == 404


def test_a_create_that_matches_a_v1_document_deduplicates_as_nightscout(
    client: TestClient, site: Site, engine: Engine
) -> None:
    at_ms = NOW_MS - 50 * 60_000
    v1 = {
        "eventType": "Correction Bolus",
        "created_at": iso_utc(at_ms),
        "insulin": 1.0,
        "device": PUMP,
        "app": "AAPS",
        "utcOffset": 60,
    }
    stored = client.post("/api/v1/treatments", json=[v1], headers=site.headers).json()[0]
    phone = Phone(client, site.admin_token)
    body = {key: v1[key] for key in ("eventType", "insulin", "device", "app", "utcOffset")}
    answer = phone.post("treatments", dict(body, date=at_ms, insulin=1.2))
    assert answer.status_code == 200
    reply = answer.json()
    assert reply["isDeduplication"] is True
    assert reply["deduplicatedIdentifier"] == stored["_id"]
    assert reply["identifier"] == v3.calculate_identifier(dict(body, date=at_ms))
    assert document_counts(engine, site.patient_id) == {"treatments": 1}
    assert [r.value for r in records_of(engine, site.patient_id, "bolus")] == [1.2]
    assert client.get("/api/v1/treatments", headers=site.headers).json()[0]["_id"] == stored["_id"]

    # xDrip+ uploaded this reading through v1 first; AndroidAPS's copy may not take it over.
    xdrip = {"type": "sgv", "sgv": 140, "date": at_ms, "device": "xDrip-DexcomG6", "utcOffset": 60}
    client.post("/api/v1/entries", json=[xdrip], headers=site.headers).raise_for_status()
    refused = phone.post("entries", dict(_sgv(50, 140), device="xDrip-DexcomG6"))
    assert refused.status_code == 400
    assert refused.json()["message"] == "Field app cannot be modified by the client"
    assert [r.value for r in records_of(engine, site.patient_id, "cbg")] == [140]


def test_food_and_settings_are_kept_as_sent(client: TestClient, site: Site, engine: Engine) -> None:
    phone = Phone(client, site.admin_token)
    food = {"date": NOW_MS, "app": "AAPS", "type": "food", "name": "Apple", "carbs": 15, "portion": 1}
    made = phone.post("food", food)
    assert made.status_code == 201
    listed = _result(phone.get("food", params={"limit": "10"}))
    assert [(f["name"], f["carbs"]) for f in listed] == [("Apple", 15)]
    settings = {"date": NOW_MS, "app": "AAPS", "key": "aaps", "value": {"units": "mg/dl"}}
    saved = phone.post("settings", settings)
    assert saved.status_code == 201
    identifier = saved.json()["identifier"]
    assert _result(phone.get(f"settings/{identifier}"))["value"] == {"units": "mg/dl"}
    assert _result(phone.get("settings"))[0]["key"] == "aaps"
    assert phone.call("PATCH", f"settings/{identifier}", json={"value": {"units": "mmol"}}).status_code == 200
    assert _result(phone.get(f"settings/{identifier}"))["value"] == {"units": "mmol"}
    reader = Phone(client, site.read_token)
    assert reader.get("settings").status_code == 403  # Nightscout: searching settings needs admin
    assert reader.get(f"settings/{identifier}").status_code == 200
    assert document_counts(engine, site.patient_id) == {"food": 1, "settings": 1}
    assert records_of(engine, site.patient_id, "food") == []


# -- credentials and permissions --------------------------------------------------------------------------


def _events(engine: Engine, action: str) -> list[AuditEvent]:
    with session_scope(engine) as session:
        return list(session.scalars(select(AuditEvent).where(AuditEvent.action == action)))


def test_credentials_and_permissions(
    client: TestClient, site: Site, engine: Engine, keyring: KeyRing
) -> None:
    missing = client.get("/api/v3/entries")
    assert missing.status_code == 401
    assert missing.json()["message"] == "Missing or bad access token or JWT"
    assert client.get("/api/v3/version").json()["result"]["apiVersion"] == v3.API_VERSION
    as_token = client.get("/api/v3/entries", headers={"Authorization": f"Bearer {site.admin_token}"})
    assert as_token.status_code == 401  # an access token goes to the authorization request, not here
    assert as_token.json()["message"] == "Bad access token or JWT"
    assert (
        client.get("/api/v3/entries", headers={"api-secret": site.headers["api-secret"]}).status_code == 401
    )

    read = _jwt(client, site.read_token)
    refused = client.post("/api/v3/entries", json=_sgv(5, 100), headers=read)
    assert refused.status_code == 403
    assert refused.json()["message"] == "Missing permission api:entries:create"
    assert document_counts(engine, site.patient_id) == {}
    assert [event.outcome for event in _events(engine, "accounts:access:denied")] == ["denied"]
    assert _result(client.get("/api/v3/status", headers=read))["apiPermissions"] == dict.fromkeys(
        v3.COLLECTIONS, "r"
    )

    upload = _jwt(client, site.upload_token)
    assert client.post("/api/v3/entries", json=_sgv(5, 100), headers=upload).status_code == 201
    assert client.get("/api/v3/entries", headers=upload).status_code == 403
    assert client.get("/api/v3/lastModified", headers=upload).json()["result"]["collections"] == {}
    assert [doc["sgv"] for doc in _result(client.get("/api/v3/entries", headers=read))] == [100]
    assert _events(engine, "nightscout:document:write")
    reads = _events(engine, "records:data:read")
    assert reads
    assert reads[-1].details is not None
    assert reads[-1].details["api"] == "nightscout-v3"

    # An expired JWT answers 401; AndroidAPS asks again and goes on. A revoked token ends it.
    with session_scope(engine) as session:
        caller = authenticate(session, keyring, Presented(query_token=site.admin_token))
        old = issue_jwt(keyring, caller, NOW - dt.timedelta(hours=9))["token"]
    phone = Phone(client, site.admin_token)
    phone.jwt = old
    assert phone.get("entries").status_code == 200
    assert phone.refreshes == 1
    with session_scope(engine) as session:
        patient = session.get(Patient, site.patient_id)
        assert patient is not None
        token_id = caller.token.id
        revoke_api_token(session, token_id, patient=patient)
    assert phone.get("entries").status_code == 401


def test_one_patients_jwt_never_reaches_another(client: TestClient, site: Site, engine: Engine) -> None:
    other = make_site(engine, "other@example.org")
    mine = Phone(client, site.admin_token)
    theirs = Phone(client, other.admin_token)
    identifier = theirs.post("treatments", _bolus(5, 4.0)).json()["identifier"]
    assert mine.get(f"treatments/{identifier}").status_code == 404
    assert mine.call("DELETE", f"treatments/{identifier}").status_code == 404
    assert _result(mine.get("treatments")) == []
    assert _result(theirs.get(f"treatments/{identifier}"))["insulin"] == 4.0


# -- bad input ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"date": None}, v3.MSG_BAD_DATE),
        ({"date": "yesterday"}, v3.MSG_BAD_DATE),
        ({"date": 1}, v3.MSG_BAD_DATE),
        ({"app": None}, v3.MSG_BAD_APP),
        ({"app": "  "}, v3.MSG_BAD_APP),
        ({"utcOffset": 5000}, v3.MSG_BAD_UTC_OFFSET),
        ({"utcOffset": "60"}, v3.MSG_BAD_UTC_OFFSET),
        ({"identifier": 7}, v3.MSG_BAD_IDENTIFIER),
    ],
)
def test_a_bad_document_is_refused_naming_its_field(
    client: TestClient, site: Site, engine: Engine, change: dict[str, Any], message: str
) -> None:
    phone = Phone(client, site.admin_token)
    body = {key: value for key, value in _sgv(5, 120).items() if change.get(key, 0) is not None}
    body.update({key: value for key, value in change.items() if value is not None})
    answer = phone.post("entries", body)
    assert answer.status_code == 400
    assert answer.json()["status"] == 400
    assert answer.json()["message"] == message
    assert _rows(engine, site.patient_id) == []


def test_bodies_and_paths_that_are_refused(client: TestClient, site: Site, engine: Engine) -> None:
    phone = Phone(client, site.admin_token)
    assert phone.post("entries", [_sgv(5, 120)]).json()["message"] == v3.MSG_BAD_BODY
    assert phone.post("entries", {}).json()["message"] == v3.MSG_BAD_BODY
    broken = phone.call("POST", "entries", content=b"{not json", headers={"Content-Type": "application/json"})
    assert broken.json()["message"] == v3.MSG_BAD_BODY
    too_high = phone.post("entries", _sgv(5, 5000))
    assert too_high.status_code == 400
    assert "sgv" in too_high.json()["message"]
    assert "5000" not in too_high.text  # the value itself is never echoed
    assert phone.get("activity").status_code == 404
    assert phone.get("entries/a/b/c").json()["message"] == "Bad operation or collection"
    assert phone.get("entries?sort=date&sort$desc=date").status_code == 400
    assert phone.get("entries?limit=0").status_code == 400
    assert phone.get("entries?date$near=1").status_code == 400
    assert _rows(engine, site.patient_id) == []


def test_search_filters_sorts_pages_and_projects(client: TestClient, site: Site) -> None:
    phone = Phone(client, site.admin_token)
    for minutes_ago, value in ((20, 150), (15, 90), (10, 130), (5, 70)):
        phone.post("entries", _sgv(minutes_ago, value)).raise_for_status()
    by_value = _result(phone.get("entries?sort=sgv&limit=3"))
    assert [doc["sgv"] for doc in by_value] == [70, 90, 130]
    page = _result(phone.get("entries?sort$desc=date&skip=1&limit=2&fields=sgv"))
    assert [doc["sgv"] for doc in page] == [130, 90]
    assert set(page[0]) == {"sgv", "identifier", "srvCreated", "created_at", "date"}
    low = _result(phone.get("entries", params={"sgv$lt": "100", "sort": "date"}))
    assert [doc["sgv"] for doc in low] == [90, 70]
    chosen = _result(phone.get("entries", params={"sgv$in": "70|150"}))
    assert sorted(doc["sgv"] for doc in chosen) == [70, 150]
    iso_window = _result(phone.get("entries", params={"date$gte": iso_utc(NOW_MS - 12 * 60_000)}))
    assert [doc["sgv"] for doc in iso_window] == [70, 130]
    with_suffix = _result(phone.get("entries.json?limit=1"))
    assert [doc["sgv"] for doc in with_suffix] == [70]


# -- pure functions ------------------------------------------------------------------------------------------


def test_the_identifier_is_nightscouts() -> None:
    # lib/api3/doc/tutorial.md: this document was created with this identifier.
    doc = {
        "date": 1613057404186,
        "device": "Samsung XCover 4-861536030196001",
        "eventType": "Correction Bolus",
    }
    assert v3.calculate_identifier(doc) == "5b0f7124-475f-5db0-824c-a73c5eea0975"
    assert v3.calculate_identifier({"date": 1613057404186}) == str(
        uuid.uuid5(v3.IDENTIFIER_NAMESPACE, "undefined_1613057404186")
    )


@given(
    st.one_of(st.none(), st.text(max_size=30)),
    st.integers(v3.MIN_TIMESTAMP_MS + 1, 4_000_000_000_000),
    st.one_of(st.none(), st.sampled_from(["", "Meal Bolus", "Temp Basal"])),
    st.dictionaries(st.sampled_from(["insulin", "carbs", "app", "notes"]), st.integers(0, 50), max_size=3),
)
def test_the_identifier_depends_on_device_date_and_event_only(
    device: str | None, date: int, event: str | None, extra: dict[str, int]
) -> None:
    doc: dict[str, Any] = {"date": date, **({} if device is None else {"device": device})}
    if event is not None:
        doc["eventType"] = event
    identifier = v3.calculate_identifier(doc)
    assert uuid.UUID(identifier).version == 5
    assert v3.calculate_identifier({**doc, **extra}) == identifier
    assert v3.calculate_identifier({**doc, "date": date + 1}) != identifier
    if event:
        assert v3.calculate_identifier({**doc, "eventType": event + "x"}) != identifier


@given(st.integers(v3.MIN_TIMESTAMP_MS // 1000 + 1, 4_000_000_000))
def test_dates_in_seconds_ms_and_iso_are_one_instant(seconds: int) -> None:
    ms = seconds * 1000
    assert v3.parse_moment(ms) == (ms, None)
    assert v3.parse_moment(seconds) == (ms, None)
    assert v3.parse_moment(str(ms)) == (ms, None)
    assert v3.parse_moment(iso_utc(ms)) == (ms, 0)
    berlin = dt.datetime.fromtimestamp(seconds, dt.timezone(dt.timedelta(hours=2)))
    assert v3.parse_moment(berlin.isoformat()) == (ms, 120)


@given(st.one_of(st.none(), st.booleans(), st.integers(-(10**6), 999), st.sampled_from(["", "soon", "0"])))
def test_what_is_no_date(value: object) -> None:
    assert v3.parse_moment(value) is None


def test_an_entry_is_found_by_its_identifier_through_the_index(
    client: TestClient, site: Site, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    entry = {"type": "sgv", "sgv": 131, "date": NOW_MS - 10 * 60_000, "identifier": "xdrip-entry-7"}
    posted = client.post("/api/v1/entries", json=[entry], headers=site.headers).json()[0]
    with session_scope(engine) as session:
        row = session.scalar(select(NightscoutDocument).where(NightscoutDocument.id == posted["_id"]))
        assert row is not None
        assert row.identifier == "xdrip-entry-7"
    monkeypatch.setattr("glucoshare.nightscout.service.MAX_SCAN", 0)  # no scanning: the index alone
    phone = Phone(client, site.read_token)
    assert _result(phone.get("entries/xdrip-entry-7"))["sgv"] == 131

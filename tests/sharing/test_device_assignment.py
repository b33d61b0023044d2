"""Device assignment (the RocheDiabetes Care Platform flow) over HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from glucoshare.config import Settings
from glucoshare.db.session import session_scope
from glucoshare.simulator import simulate
from glucoshare.simulator.writers.carelink import write_carelink
from glucoshare.web.app import create_app
from tests.ingest.helpers import profile
from tests.kept import kept_places, sealed_bytes
from tests.web.conftest import BASE_URL, Person, clarity_bytes, make_person


@pytest.fixture
def api(app_settings: Settings, engine: Engine) -> Iterator[TestClient]:
    with TestClient(create_app(app_settings, engine), base_url=BASE_URL) as http:
        yield http


def _pump_export(seed: int = 3, start: dt.date = dt.date(2025, 6, 2)) -> tuple[str, bytes]:
    timeline = simulate(profile(seed=seed, therapy="pump", cgm="guardian4"), start=start, days=2)
    export = write_carelink(timeline)
    return export.file_name, export.data


def _world(api: TestClient, engine: Engine) -> tuple[Person, dict[str, str], str, str]:
    doc = make_person(engine, "doc@example.org", "clinician", totp=True)
    clinic = api.post("/v1/clinics", headers=doc.headers, json={"name": "Roche Clinic"}).json()
    base = f"/v1/clinics/{clinic['id']}"
    first = api.post(
        f"{base}/patients", headers=doc.headers, json={"name": "Anna Berg", "birthdate": "1970-01-01"}
    )
    second = api.post(
        f"{base}/patients", headers=doc.headers, json={"name": "Ben Lund", "birthdate": "1980-02-02"}
    )
    return doc, clinic, first.json()["patient"]["id"], second.json()["patient"]["id"]


def test_an_unassigned_device_is_held_confirmed_by_serial_and_then_goes_to_its_patient(
    api: TestClient, engine: Engine
) -> None:
    doc, clinic, anna, _ = _world(api, engine)
    base = f"/v1/clinics/{clinic['id']}"
    name, data = _pump_export()
    held = api.post(f"{base}/uploads", headers=doc.headers, files={"files": (name, data)})
    assert held.status_code == 201, held.text
    result = held.json()[0]
    assert result["outcome"] == "pending"
    pending = result["pending"]
    assert pending["serial"]
    assert pending["manufacturer"] == "Medtronic"
    assert pending["records"] > 0
    assert pending["first"] < pending["last"]
    assert [p["id"] for p in api.get(f"{base}/pending-uploads", headers=doc.headers).json()] == [
        pending["id"]
    ]
    assert api.get(f"/v1/patients/{anna}/uploads", headers=doc.headers).json() == []  # nothing stored yet
    held_place = f"pending:{clinic['id']}:{pending['id']}"
    with session_scope(engine) as session:
        held_file = sealed_bytes(session, held_place)
    assert held_file is not None
    assert data[:100] not in held_file  # sealed with the clinic's data key
    assign = f"{base}/pending-uploads/{pending['id']}/assign"
    wrong = api.post(assign, headers=doc.headers, json={"patient_id": anna, "serial": "NOT-IT"})
    assert wrong.status_code == 400
    stranger = make_person(engine, "stranger@example.org", "patient", patient=True)
    elsewhere = api.post(
        assign, headers=doc.headers, json={"patient_id": stranger.patient_id, "serial": pending["serial"]}
    )
    assert elsewhere.status_code == 404  # not a patient of this clinic
    done = api.post(
        assign, headers=doc.headers, json={"patient_id": anna, "serial": pending["serial"].lower()}
    )
    assert done.status_code == 201, done.text
    assert done.json()[0]["new"] > 0
    assert held_place not in kept_places(engine)
    assert api.get(f"{base}/pending-uploads", headers=doc.headers).json() == []
    assert len(api.get(f"/v1/patients/{anna}/uploads", headers=doc.headers).json()) == 1
    later_name, later = _pump_export(seed=3, start=dt.date(2025, 6, 4))  # the same pump, two days on
    direct = api.post(f"{base}/uploads", headers=doc.headers, files={"files": (later_name, later)}).json()[0]
    assert direct["outcome"] == "imported"
    assert direct["patient_id"] == anna
    assert len(api.get(f"/v1/patients/{anna}/uploads", headers=doc.headers).json()) == 2


def test_a_device_of_a_patient_who_does_not_share_is_refused(api: TestClient, engine: Engine) -> None:
    doc, clinic, _, _ = _world(api, engine)
    kim = make_person(engine, "kim@example.org", "patient", patient=True)
    name, data = _pump_export(seed=5)
    own = api.post(
        f"/v1/patients/{kim.patient_id}/uploads", headers=kim.headers, files={"files": (name, data)}
    )
    assert own.status_code == 201
    refused = api.post(
        f"/v1/clinics/{clinic['id']}/uploads", headers=doc.headers, files={"files": (name, data)}
    )
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "device_elsewhere"


def test_a_device_without_serial_is_held_and_can_be_discarded(api: TestClient, engine: Engine) -> None:
    doc, clinic, anna, _ = _world(api, engine)
    base = f"/v1/clinics/{clinic['id']}"
    name, data = clarity_bytes(seed=4)
    first = api.post(f"{base}/uploads", headers=doc.headers, files={"files": (name, data)}).json()[0]
    assert first["outcome"] == "pending"
    assert first["pending"]["serial"] is None
    assert (
        api.delete(f"{base}/pending-uploads/{first['pending']['id']}", headers=doc.headers).status_code == 204
    )
    second = api.post(f"{base}/uploads", headers=doc.headers, files={"files": (name, data)}).json()[0]
    assign = f"{base}/pending-uploads/{second['pending']['id']}/assign"
    assert api.post(assign, headers=doc.headers, json={"patient_id": anna}).status_code == 201


def test_a_device_moves_with_its_data_to_another_patient(api: TestClient, engine: Engine) -> None:
    doc, clinic, anna, ben = _world(api, engine)
    base = f"/v1/clinics/{clinic['id']}"
    name, data = _pump_export(seed=6)
    pending = api.post(f"{base}/uploads", headers=doc.headers, files={"files": (name, data)}).json()[0][
        "pending"
    ]
    api.post(
        f"{base}/pending-uploads/{pending['id']}/assign",
        headers=doc.headers,
        json={"patient_id": anna, "serial": pending["serial"]},
    )
    upload = api.get(f"/v1/patients/{anna}/uploads", headers=doc.headers).json()[0]
    devices = api.get(f"/v1/patients/{anna}/devices", headers=doc.headers).json()
    assert [d["serial"] for d in devices] == [pending["serial"]]
    device_id = devices[0]["id"]
    moved = api.post(f"{base}/devices/{device_id}/reassign", headers=doc.headers, json={"patient_id": ben})
    assert moved.status_code == 200, moved.text
    assert moved.json() == {"device_id": device_id, "patient_id": ben}
    assert api.get(f"/v1/patients/{anna}/uploads", headers=doc.headers).json() == []
    ben_uploads = api.get(f"/v1/patients/{ben}/uploads", headers=doc.headers)
    assert ben_uploads.status_code == 200, ben_uploads.text
    assert [u["id"] for u in ben_uploads.json()] == [upload["id"]]
    stats = api.get(f"/v1/patients/{ben}/stats", headers=doc.headers).json()
    assert stats["readings"] > 0
    again = api.post(f"{base}/devices/{device_id}/reassign", headers=doc.headers, json={"patient_id": ben})
    assert again.status_code == 400
    log = api.get(f"{base}/patients", headers=doc.headers, params={"search": "Ben"}).json()
    assert log["total"] == 1


def test_an_unassigned_device_waits_again_and_its_data_leaves_the_patient(
    api: TestClient, engine: Engine
) -> None:
    doc, clinic, anna, ben = _world(api, engine)
    base = f"/v1/clinics/{clinic['id']}"
    name, data = _pump_export(seed=7)
    pending = api.post(f"{base}/uploads", headers=doc.headers, files={"files": (name, data)}).json()[0][
        "pending"
    ]
    api.post(
        f"{base}/pending-uploads/{pending['id']}/assign",
        headers=doc.headers,
        json={"patient_id": anna, "serial": pending["serial"]},
    )
    device_id = api.get(f"/v1/patients/{anna}/devices", headers=doc.headers).json()[0]["id"]
    held = api.post(f"{base}/devices/{device_id}/unassign", headers=doc.headers)
    assert held.status_code == 200, held.text
    assert [h["serial"] for h in held.json()] == [pending["serial"]]
    assert api.get(f"/v1/patients/{anna}/uploads", headers=doc.headers).json() == []
    assert api.get(f"/v1/patients/{anna}/devices", headers=doc.headers).json() == []
    assert api.get(f"/v1/patients/{anna}/stats", headers=doc.headers).json()["readings"] == 0
    again = held.json()[0]["id"]
    done = api.post(
        f"{base}/pending-uploads/{again}/assign",
        headers=doc.headers,
        json={"patient_id": ben, "serial": pending["serial"]},
    )
    assert done.status_code == 201, done.text
    assert api.get(f"/v1/patients/{ben}/stats", headers=doc.headers).json()["readings"] > 0
    newest = api.get(
        f"{base}/patients", headers=doc.headers, params={"sort": "added", "descending": True}
    ).json()
    assert [p["name"] for p in newest["patients"]] == ["Ben Lund", "Anna Berg"]

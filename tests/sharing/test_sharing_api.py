"""Sharing with clinics and care partners, invitations and clinic-created accounts, over HTTP.

Every test runs on SQLite and PostgreSQL; mail goes through a real SMTP server on 127.0.0.1.
"""

from __future__ import annotations

import datetime as dt

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from glucoshare.config import Settings
from glucoshare.db.session import session_scope
from glucoshare.sharing.models import Invitation
from tests.mailbox import Inbox, link_token
from tests.web.conftest import PASSWORD, Person, clarity_bytes, make_person


@pytest.fixture
def api(mail_client: TestClient) -> TestClient:
    return mail_client


def _clinic(api: TestClient, admin: Person, name: str = "Sunrise Clinic") -> dict[str, str]:
    response = api.post(
        "/v1/clinics", headers=admin.headers, json={"name": name, "patient_tags": ["pump", "T1"]}
    )
    assert response.status_code == 201, response.text
    return response.json()


def _upload(api: TestClient, who: Person, patient_id: str, seed: int = 1):
    name, data = clarity_bytes(seed=seed)
    return api.post(f"/v1/patients/{patient_id}/uploads", headers=who.headers, files={"files": (name, data)})


def test_a_patient_shares_by_code_typed_any_way_and_revoking_works_on_the_next_request(
    api: TestClient, engine: Engine
) -> None:
    kim = make_person(engine, "kim@example.org", "patient", patient=True)
    doc = make_person(engine, "doc@example.org", "clinician", totp=True)
    clinic = _clinic(api, doc)
    assert _upload(api, kim, str(kim.patient_id)).status_code == 201
    stats = f"/v1/patients/{kim.patient_id}/stats?days=14"
    assert api.get(stats, headers=doc.headers).status_code == 404  # not shared yet
    typed = " " + clinic["share_code"].lower().replace("-", " ") + " "
    shared = api.post("/v1/shares", headers=kim.headers, json={"clinic_code": typed})
    assert shared.status_code == 201, shared.text
    assert shared.json()["permissions"] == ["view", "upload", "note"]
    assert api.get(stats, headers=doc.headers).status_code == 200  # at once
    listing = api.get(f"/v1/clinics/{clinic['id']}/patients", headers=doc.headers).json()
    assert [p["name"] for p in listing["patients"]] == ["Kim"]
    grants = api.get("/v1/shares", headers=kim.headers).json()
    assert [(g["grantee"], g["name"]) for g in grants] == [("clinic", "Sunrise Clinic")]
    assert api.delete(f"/v1/shares/{grants[0]['id']}", headers=kim.headers).status_code == 204
    assert api.get(stats, headers=doc.headers).status_code == 404  # the very next request
    assert api.get(f"/v1/clinics/{clinic['id']}/patients", headers=doc.headers).json()["total"] == 0
    assert (
        api.post("/v1/shares", headers=kim.headers, json={"clinic_code": "ABCD-EFGH-JKLM"}).status_code == 404
    )
    log = api.get("/v1/account/access-log", headers=kim.headers).json()
    actions = {e["action"] for e in log}
    assert {"sharing:share:grant", "sharing:share:revoke", "summaries:stats:read"} <= actions


def test_the_clinic_can_stop_sharing_too_and_a_rotated_code_stops_working(
    api: TestClient, engine: Engine
) -> None:
    kim = make_person(engine, "kim@example.org", "patient", patient=True)
    doc = make_person(engine, "doc@example.org", "clinician", totp=True)
    clinic = _clinic(api, doc)
    share = api.post("/v1/shares", headers=kim.headers, json={"clinic_code": clinic["share_code"]}).json()
    assert api.delete(f"/v1/shares/{share['id']}", headers=doc.headers).status_code == 204
    rotated = api.post(f"/v1/clinics/{clinic['id']}/share-code", headers=doc.headers).json()
    assert rotated["share_code"] != clinic["share_code"]
    old = api.post("/v1/shares", headers=kim.headers, json={"clinic_code": clinic["share_code"]})
    assert old.status_code == 404
    new = api.post("/v1/shares", headers=kim.headers, json={"clinic_code": rotated["share_code"]})
    assert new.status_code == 201  # sharing again after a revocation


def test_care_partners_get_what_the_patient_grants_read_only_by_default(
    api: TestClient, engine: Engine, mail: tuple[Settings, Inbox]
) -> None:
    _, inbox = mail
    kim = make_person(engine, "kim@example.org", "patient", patient=True)
    mum = make_person(engine, "mum@example.org", "carepartner")
    sent = api.post("/v1/shares/invitations", headers=kim.headers, json={"email": "Mum@example.org"})
    assert sent.status_code == 201, sent.text
    assert sent.json()["permissions"] == ["view"]
    token = link_token(inbox.to("mum@example.org")[0], "/invitations/accept")
    stranger = make_person(engine, "someone@example.org", "carepartner")
    forwarded = api.post("/v1/invitations/accept", headers=stranger.headers, json={"token": token})
    assert forwarded.status_code == 401  # for the invited address only
    waiting = api.get("/v1/invitations", headers=mum.headers).json()["received"]
    assert [w["kind"] for w in waiting] == ["carepartner"]
    accepted = api.post("/v1/invitations/accept", headers=mum.headers, json={"token": token})
    assert accepted.status_code == 200, accepted.text
    share = accepted.json()["share"]
    assert api.post("/v1/invitations/accept", headers=mum.headers, json={"token": token}).status_code == 401
    assert api.get(f"/v1/patients/{kim.patient_id}", headers=mum.headers).status_code == 200
    assert _upload(api, mum, str(kim.patient_id)).status_code == 404  # view only
    more = api.patch(
        f"/v1/shares/{share['id']}", headers=kim.headers, json={"permissions": ["view", "upload"]}
    )
    assert more.status_code == 200
    assert _upload(api, mum, str(kim.patient_id)).status_code == 201
    assert [p["id"] for p in api.get("/v1/patients", headers=mum.headers).json()] == [kim.patient_id]
    assert api.delete(f"/v1/shares/{share['id']}", headers=mum.headers).status_code == 204  # either side
    assert api.get(f"/v1/patients/{kim.patient_id}", headers=mum.headers).status_code == 404


def test_invitations_expire_after_7_days_and_can_be_resent_or_withdrawn(
    api: TestClient, engine: Engine, mail: tuple[Settings, Inbox]
) -> None:
    _, inbox = mail
    kim = make_person(engine, "kim@example.org", "patient", patient=True)
    mum = make_person(engine, "mum@example.org", "carepartner")
    invitation = api.post(
        "/v1/shares/invitations", headers=kim.headers, json={"email": "mum@example.org"}
    ).json()
    first = link_token(inbox.to("mum@example.org")[0], "/invitations/accept")
    with session_scope(engine) as session:
        row = session.get(Invitation, invitation["id"])
        assert row is not None
        row.expires_at = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)  # 7 days have passed
    assert api.post("/v1/invitations/accept", headers=mum.headers, json={"token": first}).status_code == 401
    assert api.get("/v1/invitations", headers=kim.headers).json()["sent"][0]["status"] == "expired"
    resent = api.post(f"/v1/invitations/{invitation['id']}/resend", headers=kim.headers)
    assert resent.status_code == 200
    assert resent.json()["status"] == "pending"
    second = link_token(inbox.to("mum@example.org")[1], "/invitations/accept")
    assert api.post("/v1/invitations/accept", headers=mum.headers, json={"token": first}).status_code == 401
    assert api.delete(f"/v1/invitations/{invitation['id']}", headers=kim.headers).status_code == 204
    assert api.post("/v1/invitations/accept", headers=mum.headers, json={"token": second}).status_code == 401


def test_a_printed_clinic_invitation_is_accepted_by_its_code(api: TestClient, engine: Engine) -> None:
    kim = make_person(engine, "kim@example.org", "patient", patient=True)
    doc = make_person(engine, "doc@example.org", "clinician", totp=True)
    clinic = _clinic(api, doc)
    printed = api.post(f"/v1/clinics/{clinic['id']}/invitations", headers=doc.headers, json={})
    assert printed.status_code == 201
    code = printed.json()["code"]
    assert code is not None
    accepted = api.post(
        "/v1/invitations/accept", headers=kim.headers, json={"code": code.lower().replace("-", " ")}
    )
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["clinic_id"] == clinic["id"]
    assert api.get(f"/v1/patients/{kim.patient_id}", headers=doc.headers).status_code == 200
    reused = api.post("/v1/invitations/accept", headers=kim.headers, json={"code": code})
    assert reused.status_code == 401


def test_admins_invite_and_remove_clinicians_members_cannot(
    api: TestClient, engine: Engine, mail: tuple[Settings, Inbox]
) -> None:
    _, inbox = mail
    doc = make_person(engine, "doc@example.org", "clinician", totp=True)
    nurse = make_person(engine, "nurse@example.org", "clinician", totp=True)
    clinic = _clinic(api, doc)
    invited = api.post(
        f"/v1/clinics/{clinic['id']}/members", headers=doc.headers, json={"email": "nurse@example.org"}
    )
    assert invited.status_code == 201
    token = link_token(inbox.to("nurse@example.org")[0], "/invitations/accept")
    assert api.get(f"/v1/clinics/{clinic['id']}", headers=nurse.headers).status_code == 404
    joined = api.post("/v1/invitations/accept", headers=nurse.headers, json={"token": token})
    assert joined.json() == {"kind": "clinician", "share": None, "clinic_id": clinic["id"]}
    assert api.get(f"/v1/clinics/{clinic['id']}", headers=nurse.headers).json()["role"] == "member"
    people = api.get(f"/v1/clinics/{clinic['id']}/members", headers=nurse.headers).json()
    assert {(m["email"], m["role"]) for m in people} == {
        ("doc@example.org", "admin"),
        ("nurse@example.org", "member"),
    }
    me = next(m for m in people if m["email"] == "doc@example.org")
    assert (
        api.delete(f"/v1/clinics/{clinic['id']}/members/{me['id']}", headers=nurse.headers).status_code == 403
    )
    assert (
        api.delete(f"/v1/clinics/{clinic['id']}/members/{me['id']}", headers=doc.headers).status_code == 400
    )
    them = next(m for m in people if m["email"] == "nurse@example.org")
    assert (
        api.delete(f"/v1/clinics/{clinic['id']}/members/{them['id']}", headers=doc.headers).status_code == 204
    )
    assert api.get(f"/v1/clinics/{clinic['id']}", headers=nurse.headers).status_code == 404


def test_a_clinic_created_account_is_claimed_with_the_birth_date_and_the_clinic_keeps_access(
    api: TestClient, engine: Engine, mail: tuple[Settings, Inbox]
) -> None:
    _, inbox = mail
    doc = make_person(engine, "doc@example.org", "clinician", totp=True)
    clinic = _clinic(api, doc)
    created = api.post(
        f"/v1/clinics/{clinic['id']}/patients",
        headers=doc.headers,
        json={
            "name": "Lee Young",
            "birthdate": "2012-06-30",
            "mrn": "mrn 42".replace(" ", ""),
            "email": "lee@example.org",
        },
    )
    assert created.status_code == 201, created.text
    patient_id = created.json()["patient"]["id"]
    assert created.json()["mrn"] == "MRN42"
    assert _upload(api, doc, patient_id).status_code == 201  # the clinic uploads for them
    clash = api.post(
        f"/v1/clinics/{clinic['id']}/patients",
        headers=doc.headers,
        json={"name": "X", "birthdate": "2000-01-01", "mrn": "mrn42"},
    )
    assert clash.status_code == 409
    token = link_token(inbox.to("lee@example.org")[0], "/claim")
    wrong = api.post("/v1/auth/claim", json={"token": token, "birthdate": "2012-06-29", "password": PASSWORD})
    assert wrong.status_code == 401
    claimed = api.post(
        "/v1/auth/claim", json={"token": token, "birthdate": "2012-06-30", "password": PASSWORD}
    )
    assert claimed.status_code == 200, claimed.text
    assert (
        api.post(
            "/v1/auth/claim", json={"token": token, "birthdate": "2012-06-30", "password": PASSWORD}
        ).status_code
        == 401
    )
    login = api.post("/v1/auth/login", json={"email": "lee@example.org", "password": PASSWORD})
    assert login.status_code == 200
    lee = {"Authorization": f"Bearer {login.json()['token']}"}
    assert api.get(f"/v1/patients/{patient_id}/uploads", headers=lee).json()  # their data is theirs
    assert api.get(f"/v1/patients/{patient_id}/stats", headers=doc.headers).status_code == 200  # kept
    grants = api.get("/v1/shares", headers=lee).json()
    assert [(g["name"], g["custodian"]) for g in grants] == [("Sunrise Clinic", False)]
    again = api.post(
        f"/v1/clinics/{clinic['id']}/patients/{patient_id}/claim-link",
        headers=doc.headers,
        json={"email": "x@example.org"},
    )
    assert again.status_code == 400  # the patient controls the account now
    assert api.delete(f"/v1/shares/{grants[0]['id']}", headers=lee).status_code == 204
    assert api.get(f"/v1/patients/{patient_id}/stats", headers=doc.headers).status_code == 404


def test_the_clinic_patient_list_searches_filters_tags_and_sorts(api: TestClient, engine: Engine) -> None:
    doc = make_person(engine, "doc@example.org", "clinician", totp=True)
    clinic = _clinic(api, doc)
    base = f"/v1/clinics/{clinic['id']}/patients"
    for name, born, mrn in (
        ("Ada Stone", "1980-01-02", "A1"),
        ("Ben Rivers", "1975-03-04", "B2"),
        ("Cy Ada", "1990-05-06", None),
    ):
        body = {"name": name, "birthdate": born} | ({"mrn": mrn} if mrn else {})
        assert api.post(base, headers=doc.headers, json=body).status_code == 201
    listing = api.get(base, headers=doc.headers, params={"sort": "name"}).json()
    assert [p["name"] for p in listing["patients"]] == ["Ada Stone", "Ben Rivers", "Cy Ada"]
    assert all(
        p["custodial"] and p["upload_reminder_due"] and p["category"] == "no_data"
        for p in listing["patients"]
    )
    assert [
        p["name"]
        for p in api.get(base, headers=doc.headers, params={"search": "ada", "sort": "name"}).json()[
            "patients"
        ]
    ] == ["Ada Stone", "Cy Ada"]
    assert [
        p["name"] for p in api.get(base, headers=doc.headers, params={"search": "b2"}).json()["patients"]
    ] == ["Ben Rivers"]
    assert [
        p["name"]
        for p in api.get(base, headers=doc.headers, params={"search": "1990-05-06"}).json()["patients"]
    ] == ["Cy Ada"]
    ben = next(p for p in listing["patients"] if p["name"] == "Ben Rivers")
    tagged = api.patch(f"{base}/{ben['patient_id']}", headers=doc.headers, json={"tags": ["pump"]})
    assert tagged.status_code == 200
    assert (
        api.patch(f"{base}/{ben['patient_id']}", headers=doc.headers, json={"tags": ["unknown"]}).status_code
        == 400
    )
    assert [
        p["name"] for p in api.get(base, headers=doc.headers, params={"tag": "pump"}).json()["patients"]
    ] == ["Ben Rivers"]
    assert api.post(f"{base}/{ben['patient_id']}/reviewed", headers=doc.headers).status_code == 204
    reviewed = api.get(base, headers=doc.headers, params={"search": "ben"}).json()["patients"][0]
    assert reviewed["last_reviewed_by"] == doc.user_id
    assert reviewed["last_reviewed_at"] is not None
    desc = api.get(base, headers=doc.headers, params={"sort": "name", "descending": True, "limit": 1}).json()
    assert desc["total"] == 3
    assert [p["name"] for p in desc["patients"]] == ["Cy Ada"]
    assert api.get(base, headers=doc.headers, params={"days": 5}).status_code == 400


def test_a_printed_invitation_is_a_pdf_with_the_code_and_plain_instructions(
    api: TestClient, engine: Engine
) -> None:
    import io  # noqa: PLC0415

    from pypdf import PdfReader  # noqa: PLC0415

    doc = make_person(engine, "doc@example.org", "clinician", totp=True)
    clinic = _clinic(api, doc)
    api.patch(f"/v1/clinics/{clinic['id']}", headers=doc.headers, json={"phone": "+49 30 555 0100"})
    invitation = api.post(f"/v1/clinics/{clinic['id']}/invitations", headers=doc.headers, json={}).json()
    response = api.get(f"/v1/clinics/{clinic['id']}/invitations/{invitation['id']}/pdf", headers=doc.headers)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/pdf"
    reader = PdfReader(io.BytesIO(response.content))
    assert len(reader.pages) == 1
    text = " ".join(reader.pages[0].extract_text().split())  # lines wrap where the page wraps them
    assert invitation["code"] in text
    assert "Sunrise Clinic" in text
    assert "+49 30 555 0100" in text
    assert "Enter an invitation code" in text
    outsider = make_person(engine, "other@example.org", "clinician", totp=True)
    refused = api.get(
        f"/v1/clinics/{clinic['id']}/invitations/{invitation['id']}/pdf", headers=outsider.headers
    )
    assert refused.status_code == 404


def test_upload_reminders_go_by_mail_once_a_day(
    api: TestClient, engine: Engine, mail: tuple[Settings, Inbox]
) -> None:
    _, inbox = mail
    kim = make_person(engine, "kim@example.org", "patient", patient=True)
    doc = make_person(engine, "doc@example.org", "clinician", totp=True)
    clinic = _clinic(api, doc)
    api.post("/v1/shares", headers=kim.headers, json={"clinic_code": clinic["share_code"]})
    listing = api.get(f"/v1/clinics/{clinic['id']}/patients", headers=doc.headers).json()
    assert listing["patients"][0]["upload_reminder_due"] is True  # no data at all yet
    url = f"/v1/clinics/{clinic['id']}/patients/{kim.patient_id}/reminder"
    assert api.post(url, headers=doc.headers).json() == {"sent": True}
    assert "upload" in inbox.to("kim@example.org")[0]["Subject"]
    again = api.post(url, headers=doc.headers)
    assert again.status_code == 400
    assert again.json()["error"]["code"] == "reminder_too_soon"
    kept = api.post(
        f"/v1/clinics/{clinic['id']}/patients",
        headers=doc.headers,
        json={"name": "No Mail", "birthdate": "2001-01-01"},
    ).json()
    no_address = api.post(
        f"/v1/clinics/{clinic['id']}/patients/{kept['patient']['id']}/reminder", headers=doc.headers
    )
    assert no_address.json() == {"sent": False}

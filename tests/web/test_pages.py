"""The web app's pages over HTTP: who sees what, friendly errors, and pages that obey the CSP."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from glucoshare.config import Settings
from glucoshare.web.deps import SESSION_COOKIE
from tests.mailbox import Inbox
from tests.web.conftest import PASSWORD, Person, clarity_bytes, make_person


def _as(client: TestClient, person: Person) -> TestClient:
    client.cookies.clear()
    client.cookies.set(SESSION_COOKIE, person.token)
    return client


def _csrf(page: str) -> str:
    match = re.search(r'<meta name="csrf-token" content="([0-9a-f]+)">', page)
    assert match is not None
    return match.group(1)


@pytest.fixture
def owner(client: TestClient, engine: Engine) -> Person:
    person = make_person(engine, "ada@example.org", "patient", patient=True)
    name, data = clarity_bytes(seed=3, days=3)
    uploaded = client.post(
        f"/v1/patients/{person.patient_id}/uploads", headers=person.headers, files={"files": (name, data)}
    )
    assert uploaded.status_code == 201, uploaded.text
    return person


def test_without_a_session_pages_send_to_the_sign_in_page(client: TestClient, owner: Person) -> None:
    client.cookies.clear()
    response = client.get(f"/patients/{owner.patient_id}", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == f"/signin?next=%2Fpatients%2F{owner.patient_id}"
    assert client.get("/", follow_redirects=False).headers["location"] == "/signin"
    page = client.get("/signin?next=/patients/x")
    assert page.status_code == 200
    assert 'data-then="/patients/x"' in page.text
    assert 'data-then="/"' in client.get("/signin?next=//evil.example").text


def test_the_patient_sees_their_dashboard_reports_and_sharing(client: TestClient, owner: Person) -> None:
    _as(client, owner)
    start = client.get("/", follow_redirects=False)
    assert start.headers["location"] == f"/patients/{owner.patient_id}"
    page = client.get(f"/patients/{owner.patient_id}")
    assert page.status_code == 200
    assert "Latest reading" in page.text
    assert "mg/dL" in page.text
    assert "Upload device exports" in page.text
    assert _csrf(page.text)
    report = client.get(f"/patients/{owner.patient_id}/reports/agp")
    assert report.status_code == 200
    assert "AGP Report" in report.text
    assert "Download PDF" in report.text
    assert f"/v1/patients/{owner.patient_id}/reports/agp?format=pdf" in report.text
    overlay = client.get(f"/patients/{owner.patient_id}/reports/overlay", params={"units": "mmol/L"})
    assert "mmol/L" in overlay.text
    sharing = client.get(f"/patients/{owner.patient_id}/sharing")
    assert "Share with a clinic" in sharing.text
    assert "Nobody but you can see your data." in sharing.text


def test_pages_carry_no_inline_script_or_style(client: TestClient, owner: Person) -> None:
    _as(client, owner)
    for path in (f"/patients/{owner.patient_id}", f"/patients/{owner.patient_id}/reports/daily", "/signin"):
        page = client.get(path)
        assert page.status_code == 200
        assert "<style" not in page.text
        assert re.search(r"<script(?![^>]*\bsrc=)", page.text) is None, path
        assert re.search(r"\son[a-z]+=", page.text) is None, path  # no event-handler attributes
        assert "script-src 'self'" in page.headers["content-security-policy"]
    for asset in ("/static/ui/app.js", "/static/ui/app.css", "/static/ui/vendor/htmx-2.0.11.min.js"):
        assert client.get(asset).status_code == 200


def test_someone_without_access_gets_the_not_found_page(
    client: TestClient, owner: Person, engine: Engine
) -> None:
    stranger = make_person(engine, "eve@example.org", "patient", patient=True)
    _as(client, stranger)
    for path in (
        f"/patients/{owner.patient_id}",
        f"/patients/{owner.patient_id}/reports/agp",
        f"/patients/{owner.patient_id}/sharing",
    ):
        page = client.get(path)
        assert page.status_code == 404
        assert page.headers["content-type"].startswith("text/html")
        assert "Not found" in page.text
        assert "Ada" not in page.text
        assert "Traceback" not in page.text


def test_the_clinician_sees_the_shared_patient_until_the_patient_revokes(
    client: TestClient, owner: Person, engine: Engine
) -> None:
    doc = make_person(engine, "doc@example.org", "clinician", totp=True)
    clinic = client.post("/v1/clinics", headers=doc.headers, json={"name": "Sunrise Clinic"}).json()
    _as(client, doc)
    listing = client.get(f"/clinics/{clinic['id']}")
    assert listing.status_code == 200
    assert clinic["share_code"] in listing.text
    assert "0 patients" in listing.text
    # The patient shares from their sharing page (the page's form posts to the API with the CSRF token).
    _as(client, owner)
    sharing = client.get(f"/patients/{owner.patient_id}/sharing")
    shared = client.post(
        "/v1/shares",
        headers={"X-CSRF-Token": _csrf(sharing.text)},
        json={"clinic_code": clinic["share_code"]},
    )
    assert shared.status_code == 201, shared.text
    assert "Sunrise Clinic" in client.get(f"/patients/{owner.patient_id}/sharing").text
    _as(client, doc)
    listing = client.get(f"/clinics/{clinic['id']}", params={"search": "ada"})
    assert "1 patients" in listing.text
    assert f"/patients/{owner.patient_id}" in listing.text
    assert client.get(f"/patients/{owner.patient_id}").status_code == 200
    # Revoked: the clinician's very next page view is refused.
    _as(client, owner)
    page = client.get(f"/patients/{owner.patient_id}/sharing")
    revoked = client.delete(f"/v1/shares/{shared.json()['id']}", headers={"X-CSRF-Token": _csrf(page.text)})
    assert revoked.status_code == 204
    _as(client, doc)
    assert client.get(f"/patients/{owner.patient_id}").status_code == 404


def test_a_form_change_without_the_csrf_token_is_refused(client: TestClient, owner: Person) -> None:
    _as(client, owner)
    response = client.post("/v1/shares", json={"clinic_code": "AAAA-BBBB-CCCC"})
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "csrf_failed"


def test_an_unknown_page_is_a_friendly_not_found(client: TestClient) -> None:
    page = client.get("/no/such/page")
    assert page.status_code == 404
    assert "Not found" in page.text
    assert page.headers["content-type"].startswith("text/html")
    api = client.get("/v1/no/such/route")
    assert api.status_code == 404
    assert api.json()["error"]["code"] == "not_found"


def test_sign_up_confirm_the_address_and_sign_in(
    mail_client: TestClient, mail: tuple[Settings, Inbox]
) -> None:
    page = mail_client.get("/signup")
    assert page.status_code == 200
    assert 'data-api="/v1/auth/signup"' in page.text
    assert "Europe/Berlin" in page.text
    response = mail_client.post(
        "/v1/auth/signup",
        json={
            "email": "new@example.org",
            "name": "New Person",
            "password": PASSWORD,
            "timezone": "Europe/Berlin",
        },
    )
    assert response.status_code == 202
    (message,) = mail[1].to("new@example.org")
    body = message.get_payload(decode=True).decode()  # type: ignore[union-attr]
    match = re.search(r"/verify-email/([\w-]+)", body)
    assert match is not None
    confirm = mail_client.get(f"/verify-email/{match.group(1)}")
    assert confirm.status_code == 200
    assert f'value="{match.group(1)}"' in confirm.text
    assert 'data-api="/v1/auth/verify-email"' in confirm.text
    assert mail_client.post("/v1/auth/verify-email", json={"token": match.group(1)}).status_code == 200
    signed_in = mail_client.post("/v1/auth/login", json={"email": "new@example.org", "password": PASSWORD})
    assert signed_in.status_code == 200
    start = mail_client.get("/", follow_redirects=False)
    assert start.headers["location"].startswith("/patients/")


@pytest.mark.parametrize(
    ("path", "text"),
    [
        ("/reset-password", "Send me a link"),
        ("/reset-password/sent", "Check your e-mail"),
        ("/reset-password/sometoken", "Choose a new password"),
        ("/claim?token=sometoken", "Take over my account"),
        ("/account/email/confirm?token=sometoken", "Confirm the new e-mail address"),
        ("/signup/sent", "Check your e-mail"),
    ],
)
def test_the_pages_of_e_mailed_links_ask_before_acting(client: TestClient, path: str, text: str) -> None:
    client.cookies.clear()
    page = client.get(path)
    assert page.status_code == 200
    assert text in page.text


def test_security_page_and_a_clinician_without_second_factor(client: TestClient, engine: Engine) -> None:
    doc = make_person(engine, "doc@example.org", "clinician")  # no second factor yet
    _as(client, doc)
    clinic_less = client.get("/clinics/anything", follow_redirects=False)
    assert clinic_less.status_code == 303
    assert clinic_less.headers["location"] == "/account/security"
    page = client.get("/account/security")
    assert "Clinicians sign in with a second factor" in page.text
    assert 'data-api="/v1/account/second-factor"' in page.text
    assert "(this one)" in page.text


def test_invitation_links_need_a_session_first(client: TestClient, owner: Person) -> None:
    client.cookies.clear()
    response = client.get("/invitations/accept?token=abc", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/signin?next=")
    _as(client, owner)
    page = client.get("/invitations/accept?token=abc")
    assert 'data-api="/v1/invitations/accept"' in page.text
    assert (
        client.get("/upload", follow_redirects=False).headers["location"]
        == f"/patients/{owner.patient_id}#upload"
    )


def test_the_account_page_saves_settings_and_shows_who_accessed_the_data(
    client: TestClient, owner: Person, engine: Engine
) -> None:
    _as(client, owner)
    page = client.get("/account")
    assert page.status_code == 200
    assert "Who accessed my data" in page.text
    assert "uploaded a file" in page.text  # the fixture's upload, named in words
    assert "Ada" in page.text
    saved = client.patch(
        "/v1/account",
        headers={"X-CSRF-Token": _csrf(page.text)},
        json={
            "display_units": "mmol/L",
            "target_scheme": "custom",
            "target_low_mgdl": "72",
            "target_high_mgdl": "160",
        },
    )
    assert saved.status_code == 200, saved.text
    again = client.get("/account")
    assert 'value="72.0"' in again.text
    assert "<option selected>mmol/L</option>" in again.text
    assert "mmol/L" in client.get(f"/patients/{owner.patient_id}").text
    assert 'href="/v1/account/export"' in again.text


def test_care_partners_are_invited_with_chosen_permissions(
    mail_client: TestClient, mail: tuple[Settings, Inbox], engine: Engine
) -> None:
    owner = make_person(engine, "ada@example.org", "patient", patient=True)
    _as(mail_client, owner)
    page = mail_client.get(f"/patients/{owner.patient_id}/sharing")
    assert 'name="permissions" value="view" checked' in page.text
    invited = mail_client.post(
        "/v1/shares/invitations",
        headers={"X-CSRF-Token": _csrf(page.text)},
        json={"email": "carer@example.org", "permissions": ["view", "upload"]},
    )
    assert invited.status_code == 201, invited.text
    listed = mail_client.get(f"/patients/{owner.patient_id}/sharing")
    assert "carer@example.org · pending" in listed.text
    assert mail[1].to("carer@example.org")


def test_every_guide_says_truly_whether_glucoshare_reads_its_files() -> None:
    from glucoshare.ingest.registry import importers  # noqa: PLC0415
    from glucoshare.web.ui.help import GUIDES  # noqa: PLC0415

    readable = {importer.format for importer in importers()}
    for guide in GUIDES:
        assert guide.formats, guide.slug
        assert guide.supported == all(f in readable for f in guide.formats), guide.slug


def test_help_pages_and_the_clinic_handout(client: TestClient, owner: Person, engine: Engine) -> None:
    client.cookies.clear()
    index = client.get("/help")
    assert index.status_code == 200
    for slug in ("dexcom-clarity", "libreview", "carelink", "tandem-source", "glooko", "mysugr", "xdrip"):
        assert f'href="/help/{slug}"' in index.text
        assert client.get(f"/help/{slug}").status_code == 200
    assert "does not read" not in client.get("/help/glooko").text
    other = client.get("/help/other-devices")
    assert 'href="/help/glucoshare-template.csv"' in other.text
    template = client.get("/help/glucoshare-template.csv")
    assert template.status_code == 200
    assert template.headers["content-type"].startswith("text/csv")
    assert "attachment" in template.headers["content-disposition"]
    assert client.get("/help/unknown").status_code == 404
    handout = client.get("/help/handout")
    assert "Before your visit" in handout.text
    assert "with the code your clinic gives you" in handout.text
    doc = make_person(engine, "doc@example.org", "clinician", totp=True)
    clinic = client.post("/v1/clinics", headers=doc.headers, json={"name": "Sunrise"}).json()
    _as(client, doc)
    with_code = client.get("/help/handout", params={"clinic": clinic["id"]})
    assert clinic["share_code"] in with_code.text
    _as(client, owner)
    assert client.get("/help/handout", params={"clinic": clinic["id"]}).status_code == 404
    assert 'href="/help"' in client.get(f"/patients/{owner.patient_id}").text


def test_only_clinic_admins_manage_members_and_the_share_code(client: TestClient, engine: Engine) -> None:
    admin = make_person(engine, "doc@example.org", "clinician", totp=True)
    nurse = make_person(engine, "nurse@example.org", "clinician", totp=True)
    clinic = client.post("/v1/clinics", headers=admin.headers, json={"name": "Sunrise"}).json()
    from glucoshare.accounts.models import User  # noqa: PLC0415
    from glucoshare.db.session import session_scope  # noqa: PLC0415
    from glucoshare.sharing.models import Clinic  # noqa: PLC0415
    from glucoshare.sharing.service import add_member  # noqa: PLC0415

    with session_scope(engine) as session:
        held, user = session.get(Clinic, clinic["id"]), session.get(User, nurse.user_id)
        assert held is not None
        assert user is not None
        add_member(session, held, user, "member", actor="test")
    _as(client, admin)
    page = client.get(f"/clinics/{clinic['id']}")
    assert "Invite a clinician" in page.text
    assert "Make a new share code" in page.text
    assert "Nurse" in page.text
    _as(client, nurse)
    page = client.get(f"/clinics/{clinic['id']}")
    assert page.status_code == 200
    assert "Invite a clinician" not in page.text
    assert "Make a new share code" not in page.text


def test_a_printed_clinic_invitation_is_accepted_by_its_code(
    client: TestClient, owner: Person, engine: Engine
) -> None:
    doc = make_person(engine, "doc@example.org", "clinician", totp=True)
    clinic = client.post("/v1/clinics", headers=doc.headers, json={"name": "Sunrise Clinic"}).json()
    printed = client.post(f"/v1/clinics/{clinic['id']}/invitations", headers=doc.headers, json={}).json()
    _as(client, owner)
    page = client.get(f"/patients/{owner.patient_id}/sharing")
    assert "The code on the printed invitation" in page.text
    accepted = client.post(
        "/v1/invitations/accept",
        headers={"X-CSRF-Token": _csrf(page.text)},
        json={"code": printed["code"].lower()},
    )
    assert accepted.status_code == 200, accepted.text
    assert "Sunrise Clinic" in client.get(f"/patients/{owner.patient_id}/sharing").text
    dashboard = client.get(f"/patients/{owner.patient_id}")
    assert "Last upload" in dashboard.text
    assert "Dexcom" in dashboard.text
    report = client.get(f"/patients/{owner.patient_id}/reports/agp")
    assert "data-print" in report.text


def test_the_clinic_list_filters_by_tag_and_category(
    client: TestClient, owner: Person, engine: Engine
) -> None:
    doc = make_person(engine, "doc@example.org", "clinician", totp=True)
    clinic = client.post(
        "/v1/clinics", headers=doc.headers, json={"name": "Sunrise Clinic", "patient_tags": ["pump", "T1"]}
    ).json()
    assert client.post(
        "/v1/shares", headers=owner.headers, json={"clinic_code": clinic["share_code"]}
    ).is_success
    tagged = client.patch(
        f"/v1/clinics/{clinic['id']}/patients/{owner.patient_id}",
        headers=doc.headers,
        json={"tags": ["pump"]},
    )
    assert tagged.status_code == 200, tagged.text
    _as(client, doc)
    page = client.get(f"/clinics/{clinic['id']}", params={"tag": "pump"})
    assert "1 patients" in page.text
    assert '<span class="badge">pump</span>' in page.text
    assert "0 patients" in client.get(f"/clinics/{clinic['id']}", params={"tag": "T1"}).text
    no_data = client.get(f"/clinics/{clinic['id']}", params={"category": "no_data"})
    assert "1 patients" in no_data.text  # the fixture's data are from 2025: nothing recent
    assert "0 patients" in client.get(f"/clinics/{clinic['id']}", params={"category": "very_low"}).text
    assert "1 patients" in client.get(f"/clinics/{clinic['id']}", params={"tag": "", "category": ""}).text


def test_page_titles_are_plain_text(client: TestClient, owner: Person, engine: Engine) -> None:
    doc = make_person(engine, "doc@example.org", "clinician", totp=True)
    clinic = client.post("/v1/clinics", headers=doc.headers, json={"name": "Sunrise Clinic"}).json()
    _as(client, doc)
    pages = {f"/clinics/{clinic['id']}": "Sunrise Clinic · Glucoshare"}
    for path, title in pages.items():
        match = re.search(r"<title>(.*?)</title>", client.get(path).text, re.DOTALL)
        assert match is not None
        assert match.group(1) == title
    _as(client, owner)
    for path in (f"/patients/{owner.patient_id}", "/account", "/account/security", "/help", "/signin"):
        match = re.search(r"<title>(.*?)</title>", client.get(path).text, re.DOTALL)
        assert match is not None
        assert "<" not in match.group(1)
        assert match.group(1).endswith("· Glucoshare")

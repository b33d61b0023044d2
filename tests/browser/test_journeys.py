"""Journeys through the web app in a real browser (Debian's Chromium, driven by Playwright).

A patient signs up (confirming the address from the e-mail), uploads a Clarity export, sees the AGP
and shares with a clinic code; the clinician signs in with the second factor and finds the patient
in triage; the patient revokes and the clinician's next page view is denied. Also: a clinic's
e-mailed invitation, a clinic-made account claimed, two-step sign-in, and a diary entry.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from glucoshare.accounts.totp import code_at
from tests.browser.conftest import LiveServer, screenshot
from tests.mailbox import Inbox
from tests.web.conftest import PASSWORD, clarity_bytes, make_person

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1440, "height": 900}


def _sign_in(page: Any, server: LiveServer, email: str, code: str | None = None) -> None:
    page.goto(f"{server.url}/signin")
    page.get_by_label("E-mail address").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    if code is not None:
        page.get_by_label("Code from your authenticator app").fill(code)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/signin" not in url)


def test_sign_up_upload_share_with_a_clinic_and_revoke(
    chromium: Any,
    live_server: LiveServer,
    engine: Engine,
    inbox: Inbox,
    tmp_path: Path,
) -> None:
    doctor = make_person(engine, "doc@example.org", "clinician", totp=True)
    assert doctor.totp_secret is not None
    name, data = clarity_bytes(seed=4, days=3)
    export = tmp_path / name
    export.write_bytes(data)

    phone = chromium.new_context(viewport=PHONE)
    page = phone.new_page()
    page.goto(f"{live_server.url}/signup")
    page.get_by_label("Your name").fill("Ada")
    page.get_by_label("E-mail address").fill("ada@example.org")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    page.get_by_role("heading", name="Check your e-mail").wait_for()
    page.goto(_mailed_link(inbox, "ada@example.org", "/verify-email/"))
    page.get_by_role("button", name="Confirm my address").click()
    page.wait_for_url(lambda url: "/signin" in url)
    _sign_in(page, live_server, "ada@example.org")
    assert "/patients/" in page.url
    patient_id = page.url.rsplit("/", 1)[-1]
    page.get_by_label("Export files").set_input_files(str(export))
    page.get_by_role("button", name="Upload").click()
    # A background import: on SQLite it has run when the answer comes; on PostgreSQL the page
    # says it waits for a worker, and follows the import until the worker has run it.
    page.get_by_text(re.compile("new,|Waiting for its turn to be imported")).wait_for()
    live_server.run_jobs()
    page.get_by_text("new,").wait_for()
    assert "already here" in page.locator(".results").inner_text()
    page.get_by_role("link", name="Show the updated figures").click()
    page.get_by_role("heading", name="Time in range").wait_for()
    screenshot(page, "patient-dashboard-390")
    page.get_by_role("link", name="AGP Report: Continuous Glucose Monitoring").first.click()
    page.get_by_role("heading", name="Ambulatory glucose profile (AGP)").wait_for()
    screenshot(page, "agp-report-390")

    desk = chromium.new_context(viewport=DESKTOP)
    clinician = desk.new_page()
    _sign_in(clinician, live_server, "doc@example.org", code_at(doctor.totp_secret, time.time()))
    clinician.goto(f"{live_server.url}/")
    # A clinician without a clinic yet sees the people shared with them; make the clinic by API.
    response = clinician.request.post(
        f"{live_server.url}/v1/clinics",
        data={"name": "Sunrise Clinic"},
        headers={"X-CSRF-Token": clinician.locator('meta[name="csrf-token"]').get_attribute("content")},
    )
    assert response.status == 201, response.text()
    clinic = response.json()

    page.goto(f"{live_server.url}/patients/{patient_id}/sharing")
    page.get_by_label("The clinic's share code").fill(clinic["share_code"].lower().replace("-", " "))
    page.get_by_role("button", name="Share").click()
    page.get_by_role("heading", name=re.compile("Sunrise Clinic")).wait_for()
    screenshot(page, "sharing-390")

    clinician.goto(f"{live_server.url}/clinics/{clinic['id']}")
    clinician.get_by_role("link", name="Ada").wait_for()
    screenshot(clinician, "clinic-triage-1440")
    clinician.get_by_role("link", name="Ada").click()
    clinician.get_by_role("heading", name="Latest reading").wait_for()

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Stop sharing").click()
    page.get_by_text("Nobody but you can see your data.").wait_for()

    clinician.reload()
    clinician.get_by_role("heading", name="Not found").wait_for()
    assert "Ada" not in clinician.locator("main").inner_text()
    phone.close()
    desk.close()


def test_a_wrong_password_is_said_plainly(chromium: Any, live_server: LiveServer, engine: Engine) -> None:
    make_person(engine, "ada@example.org", "patient", patient=True)
    context = chromium.new_context(viewport=DESKTOP)
    page = context.new_page()
    page.goto(f"{live_server.url}/signin")
    page.get_by_label("E-mail address").fill("ada@example.org")
    page.get_by_label("Password").fill("not the password at all")
    page.get_by_role("button", name="Sign in").click()
    alert = page.get_by_role("alert")
    alert.wait_for()
    assert alert.inner_text().strip()
    assert "/signin" in page.url
    screenshot(page, "signin-error-1440")
    context.close()


def test_two_step_sign_in_set_up_and_used_with_a_recovery_code(
    chromium: Any,
    live_server: LiveServer,
    engine: Engine,
) -> None:
    patient = make_person(engine, "ada@example.org", "patient", patient=True)
    context = chromium.new_context(viewport=PHONE)
    page = context.new_page()
    _sign_in(page, live_server, "ada@example.org")
    page.get_by_role("link", name="Security").click()
    page.get_by_role("button", name="Set up two-step sign-in").click()
    page.get_by_role("heading", name="Scan this code with your authenticator app").wait_for()
    assert page.locator(".qr svg").count() == 1
    secret = page.locator('code[data-field="secret"]').inner_text().strip()
    page.get_by_label("The six-digit code the app shows now").fill(code_at(secret, time.time()))
    page.get_by_role("button", name="Turn on").click()
    page.get_by_role("heading", name="Your recovery codes").wait_for()
    codes = page.locator('ul[data-field="recovery_codes"] li').all_inner_texts()
    assert len(codes) == 10
    screenshot(page, "security-recovery-codes-390")
    page.get_by_role("button", name="Sign out", exact=True).click()
    page.wait_for_url(f"{live_server.url}/signin")
    # The password alone is not enough any more; a recovery code is.
    page.get_by_label("E-mail address").fill("ada@example.org")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("alert").wait_for()
    _sign_in(page, live_server, "ada@example.org", codes[0])
    assert page.url.endswith(f"/patients/{patient.patient_id}")
    context.close()


def _mailed_link(inbox: Inbox, address: str, path: str) -> str:
    """The first link to ``path`` in the latest e-mail to ``address`` (waits for it a little)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        messages = inbox.to(address)
        if messages:
            body = messages[-1].get_payload(decode=True).decode()  # type: ignore[union-attr]
            match = re.search(r"https?://\S*" + re.escape(path) + r"\S*", body)
            assert match is not None, body
            return match.group(0)
        time.sleep(0.1)
    raise AssertionError(f"no e-mail to {address}")


def _clinic_of(page: Any, server: LiveServer, name: str) -> dict[str, str]:
    token = page.locator('meta[name="csrf-token"]').get_attribute("content")
    response = page.request.post(
        f"{server.url}/v1/clinics", data={"name": name}, headers={"X-CSRF-Token": token}
    )
    assert response.status == 201, response.text()
    clinic: dict[str, str] = response.json()
    return clinic


def test_the_clinic_invites_by_e_mail_and_the_patient_accepts(
    chromium: Any,
    live_server: LiveServer,
    engine: Engine,
    inbox: Inbox,
) -> None:
    make_person(engine, "ada@example.org", "patient", patient=True)
    doctor = make_person(engine, "doc@example.org", "clinician", totp=True)
    assert doctor.totp_secret is not None
    desk = chromium.new_context(viewport=DESKTOP)
    clinician = desk.new_page()
    _sign_in(clinician, live_server, "doc@example.org", code_at(doctor.totp_secret, time.time()))
    clinic = _clinic_of(clinician, live_server, "Sunrise Clinic")
    clinician.goto(f"{live_server.url}/clinics/{clinic['id']}")
    clinician.get_by_label("Their e-mail address").fill("ada@example.org")
    clinician.get_by_role("button", name="Invite the patient").click()
    clinician.get_by_role("heading", name="Invitation made").wait_for()
    link = _mailed_link(inbox, "ada@example.org", "/invitations/accept")

    phone = chromium.new_context(viewport=PHONE)
    page = phone.new_page()
    page.goto(link)  # not signed in yet: the sign-in page brings the patient back to the invitation
    page.get_by_label("E-mail address").fill("ada@example.org")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name="Accept the invitation").wait_for()
    page.get_by_role("button", name="Accept").click()
    page.wait_for_url(lambda url: "/invitations/" not in url)
    page.get_by_role("link", name="Sharing").click()
    page.get_by_role("heading", name=re.compile("Sunrise Clinic")).wait_for()
    clinician.reload()
    clinician.get_by_role("link", name="Ada").wait_for()
    phone.close()
    desk.close()


def test_the_clinic_creates_a_patient_assigns_a_device_and_the_patient_claims(
    chromium: Any,
    live_server: LiveServer,
    engine: Engine,
    inbox: Inbox,
    tmp_path: Path,
) -> None:
    doctor = make_person(engine, "doc@example.org", "clinician", totp=True)
    assert doctor.totp_secret is not None
    name, data = clarity_bytes(seed=8, days=3)
    export = tmp_path / name
    export.write_bytes(data)
    desk = chromium.new_context(viewport=DESKTOP)
    clinician = desk.new_page()
    _sign_in(clinician, live_server, "doc@example.org", code_at(doctor.totp_secret, time.time()))
    clinic = _clinic_of(clinician, live_server, "Sunrise Clinic")
    clinician.goto(f"{live_server.url}/clinics/{clinic['id']}")
    clinician.get_by_label("Name", exact=True).fill("Kim Kept")
    clinician.get_by_label("Birth date", exact=True).fill("2011-04-05")
    clinician.locator("#new-email").fill("kim@example.org")
    clinician.get_by_role("button", name="Create").click()
    clinician.get_by_role("link", name="Kim Kept").wait_for()
    clinician.get_by_label("Export files of a patient's device").set_input_files(str(export))
    clinician.get_by_role("button", name="Upload").click()
    clinician.get_by_text("waits below until you assign it").wait_for()
    clinician.reload()
    clinician.get_by_role("heading", name="Devices waiting for a patient").wait_for()
    screenshot(clinician, "clinic-assignment-1440")
    clinician.get_by_label("Patient", exact=True).select_option(label="Kim Kept, born 2011-04-05")
    clinician.get_by_role("button", name="Assign to this patient").click()
    clinician.get_by_role("heading", name="Devices waiting for a patient").wait_for(state="detached")

    link = _mailed_link(inbox, "kim@example.org", "/claim")
    phone = chromium.new_context(viewport=PHONE)
    page = phone.new_page()
    page.goto(link)
    page.get_by_label("Your birth date").fill("2011-04-05")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Take over my account").click()
    page.wait_for_url(lambda url: "/signin" in url)
    _sign_in(page, live_server, "kim@example.org")
    page.get_by_role("heading", name="Kim Kept").wait_for()
    assert "Dexcom" in page.locator("main").inner_text()
    phone.close()
    desk.close()


def test_a_diary_entry_appears_in_the_daily_view(
    chromium: Any, live_server: LiveServer, engine: Engine
) -> None:
    patient = make_person(engine, "ada@example.org", "patient", patient=True)
    context = chromium.new_context(viewport=DESKTOP)
    page = context.new_page()
    _sign_in(page, live_server, "ada@example.org")
    page.get_by_label("When").fill("2026-11-20T07:30")
    page.get_by_label("Glucose", exact=True).fill("142")
    page.get_by_label("Meal insulin (units)").fill("4")
    page.get_by_label("Carbohydrate (g)").fill("45")
    page.get_by_label("Note").fill("porridge before school")
    page.get_by_role("button", name="Add to the diary").click()
    page.get_by_role("cell", name="glucoshare_diary").wait_for()
    page.goto(f"{live_server.url}/patients/{patient.patient_id}/reports/daily?from=2026-11-20&to=2026-11-20")
    table = page.locator("main table").last
    table.get_by_text("manual reading 142 mg/dL").wait_for()
    assert "rapid insulin (pen) 4.00 U" in table.inner_text()
    assert "45 g carbohydrate" in table.inner_text()
    assert "note: porridge before school" in table.inner_text()
    screenshot(page, "daily-diary-1440")
    context.close()


def test_a_refused_upload_says_why_and_stores_nothing(
    chromium: Any, live_server: LiveServer, engine: Engine, tmp_path: Path
) -> None:
    """The background import fails in the worker; the page follows it and shows the API's words."""
    person = make_person(engine, "rita@example.org", "patient", patient=True)
    shopping = tmp_path / "shopping-list.txt"
    shopping.write_text("milk\nbread\napples\n")
    phone = chromium.new_context(viewport=PHONE)
    page = phone.new_page()
    _sign_in(page, live_server, "rita@example.org")
    page.goto(f"{live_server.url}/patients/{person.patient_id}")
    page.get_by_label("Export files").set_input_files(str(shopping))
    page.get_by_role("button", name="Upload").click()
    page.get_by_text(re.compile("unrecognised format|Waiting for its turn to be imported")).wait_for()
    live_server.run_jobs()
    alert = page.locator("#upload [role=alert]")
    alert.get_by_text("shopping-list.txt: unrecognised format").wait_for()
    assert page.locator("#upload .results").inner_text() == ""
    page.reload()
    assert "Nothing uploaded yet." in page.locator("main").inner_text()
    phone.close()

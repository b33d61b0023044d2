"""The reports over HTTP and the command line: HTML pages, PDF downloads, sending, ``glucoshare report``."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from typer.testing import CliRunner

from glucoshare.accounts.models import Patient
from glucoshare.cli import app
from glucoshare.config import Settings
from glucoshare.db.session import session_scope
from tests.mailbox import Inbox
from tests.reports.helpers import cgm_patient, import_cgm, pdf_text
from tests.web.conftest import Person, make_person

runner = CliRunner()


@pytest.fixture
def api(mail_client: TestClient) -> TestClient:
    return mail_client


@pytest.fixture
def owner(engine: Engine, app_settings: Settings) -> Person:
    """A patient with an account and 15 days of simulated CGM data."""
    person = make_person(engine, "ada@example.org", "patient", patient=True)
    with session_scope(engine) as session:
        patient = session.get(Patient, person.patient_id)
        assert patient is not None
        import_cgm(session, app_settings, patient)
    return person


@pytest.fixture
def cli_patient(cli_env: Settings, engine: Engine) -> str:
    """A patient with simulated CGM data, for in-process runs of the command line."""
    with session_scope(engine) as session:
        return cgm_patient(session, cli_env, email="cli@example.org").email


def test_the_report_page_is_html_with_its_styles_linked(api: TestClient, owner: Person) -> None:
    response = api.get(f"/v1/patients/{owner.patient_id}/reports/agp", headers=owner.headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["cache-control"] == "no-store"
    page = response.text
    assert '<link rel="stylesheet" href="/static/reports/report.css">' in page
    assert "<style" not in page  # the Content-Security-Policy forbids inline styles
    assert "Time in ranges" in page
    sheet = api.get("/static/reports/report.css")
    assert sheet.status_code == 200
    assert ".report" in sheet.text


def test_the_pdf_download_holds_the_report(api: TestClient, owner: Person, tmp_path: Path) -> None:
    response = api.get(
        f"/v1/patients/{owner.patient_id}/reports/overlay",
        headers=owner.headers,
        params={"format": "pdf", "days": 7, "weekdays": [5, 6], "units": "mmol/L"},
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/pdf"
    disposition = response.headers["content-disposition"]
    assert disposition.startswith('attachment; filename="glucoshare-overlay-')
    assert "ada" not in disposition.lower()
    text = pdf_text(response.content, tmp_path)
    assert "Trends by time of day" in text
    assert "mmol/L" in text
    assert "Only Sat, Sun are included." in text


def test_bad_report_options_are_clear_errors(api: TestClient, owner: Person) -> None:
    base = f"/v1/patients/{owner.patient_id}/reports"
    unknown = api.get(f"{base}/nonsense", headers=owner.headers)
    assert unknown.status_code == 422
    weekday = api.get(f"{base}/overlay", headers=owner.headers, params={"weekdays": 9})
    assert weekday.status_code == 400
    assert weekday.json()["error"]["code"] == "invalid_report"
    unit = api.get(f"{base}/agp", headers=owner.headers, params={"units": "mg"})
    assert unit.status_code == 422


def test_sending_a_report_tells_the_clinic_with_a_link_and_no_health_data(
    api: TestClient, owner: Person, engine: Engine, mail: tuple[Settings, Inbox]
) -> None:
    doc = make_person(engine, "doc@example.org", "clinician", totp=True)
    nurse = make_person(engine, "nurse@example.org", "clinician", totp=True)
    clinic = api.post("/v1/clinics", headers=doc.headers, json={"name": "Sunrise Clinic"}).json()
    with session_scope(engine) as session:
        from glucoshare.accounts.models import User  # noqa: PLC0415
        from glucoshare.sharing.models import Clinic  # noqa: PLC0415
        from glucoshare.sharing.service import add_member  # noqa: PLC0415

        held = session.get(Clinic, clinic["id"])
        user = session.get(User, nurse.user_id)
        assert held is not None
        assert user is not None
        add_member(session, held, user, "member", actor="test")
    share = api.post("/v1/shares", headers=owner.headers, json={"clinic_code": clinic["share_code"]}).json()
    sent = api.post(
        f"/v1/patients/{owner.patient_id}/reports/agp/send",
        headers=owner.headers,
        json={"share_id": share["id"], "days": 14},
    )
    assert sent.status_code == 202, sent.text
    assert sent.json() == {"recipients": 2}
    _, inbox = mail
    for address in ("doc@example.org", "nurse@example.org"):
        (message,) = inbox.to(address)
        body = message.get_payload(decode=True).decode()  # type: ignore[union-attr]
        assert f"/patients/{owner.patient_id}/reports/agp?from=" in body
        assert "/v1/" not in body  # the web page with its navigation, not the bare API document
        assert "Ada" not in body
        assert "mg/dL" not in body
        assert message.get_content_type() == "text/plain"
        assert not message.is_multipart()  # never an attachment
    nurse_view = api.get(f"/v1/patients/{owner.patient_id}/reports/agp", headers=nurse.headers)
    assert nurse_view.status_code == 200
    link = urlsplit(next(word for word in body.split() if "/reports/agp?" in word))
    api.cookies.clear()
    opened = api.get(f"{link.path}?{link.query}", follow_redirects=False)
    assert opened.status_code == 303  # not signed in: to the sign-in page, and back here afterwards
    assert opened.headers["location"].startswith("/signin?next=%2Fpatients%2F")


def test_a_report_cannot_go_to_someone_without_access(api: TestClient, owner: Person, engine: Engine) -> None:
    other = make_person(engine, "other@example.org", "patient", patient=True)
    doc = make_person(engine, "doc@example.org", "clinician", totp=True)
    clinic = api.post("/v1/clinics", headers=doc.headers, json={"name": "Elsewhere"}).json()
    foreign = api.post("/v1/shares", headers=other.headers, json={"clinic_code": clinic["share_code"]}).json()
    response = api.post(
        f"/v1/patients/{owner.patient_id}/reports/agp/send",
        headers=owner.headers,
        json={"share_id": foreign["id"]},
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_recipient"
    mine = api.post("/v1/shares", headers=owner.headers, json={"clinic_code": clinic["share_code"]}).json()
    assert api.delete(f"/v1/shares/{mine['id']}", headers=owner.headers).status_code == 204
    revoked = api.post(
        f"/v1/patients/{owner.patient_id}/reports/agp/send",
        headers=owner.headers,
        json={"share_id": mine["id"]},
    )
    assert revoked.status_code == 400


def test_the_report_command_writes_a_private_pdf(cli_patient: str, tmp_path: Path) -> None:
    out = tmp_path / "reports" / "agp.pdf"
    result = runner.invoke(app, ["report", "agp", "--patient", cli_patient, "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["report"] == "agp"
    assert document["out"] == str(out)
    assert out.read_bytes().startswith(b"%PDF")
    assert out.stat().st_mode & 0o777 == 0o600
    html = tmp_path / "daily.html"
    result = runner.invoke(
        app,
        ["report", "daily", "--patient", cli_patient, "--days", "2", "--format", "html", "--out", str(html)],
    )
    assert result.exit_code == 0, result.output
    assert "<style>" in html.read_text()  # a file opened on its own carries its styles


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["overlay", "--weekdays", "someday"], "is not a weekday"),
        (["agp", "--days", "0"], "--days"),
        (["agp", "--from", "2026-13-01"], "--from"),
        (["nonsense"], "nonsense"),
    ],
)
def test_the_report_command_refuses_bad_input(
    cli_patient: str, tmp_path: Path, arguments: list[str], message: str
) -> None:
    out = tmp_path / "x.pdf"
    result = runner.invoke(app, ["report", *arguments, "--patient", cli_patient, "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert not out.exists()


def test_the_report_command_refuses_a_folder(cli_patient: str, tmp_path: Path) -> None:
    result = runner.invoke(app, ["report", "agp", "--patient", cli_patient, "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "is a directory" in result.stderr

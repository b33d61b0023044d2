"""Reports rendered in the background: queued, rendered once (by a worker on PostgreSQL, before the
answer on SQLite), kept sealed, and every read of the patient's data audited."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select, text

from glucoshare.audit.models import AuditEvent
from glucoshare.config import Settings
from glucoshare.db.session import session_scope
from glucoshare.web.app import create_app
from tests.queue import run_queued_jobs
from tests.web.conftest import BASE_URL, Person, clarity_bytes, make_person


def _with_data(client: TestClient, person: Person) -> None:
    name, data = clarity_bytes(seed=3, days=3)
    stored = client.post(
        f"/v1/patients/{person.patient_id}/uploads", headers=person.headers, files={"files": (name, data)}
    )
    assert stored.status_code == 201, stored.text


def _report_reads(engine: Engine, patient_id: str | None) -> int:
    with session_scope(engine) as session:
        count = session.scalar(
            select(func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.patient_id == patient_id, AuditEvent.action == "reports:report:read")
        )
    return int(count or 0)


def test_a_report_is_rendered_once_kept_sealed_and_its_reads_audited(
    engine: Engine, settings: Settings
) -> None:
    kim = make_person(engine, "kim@example.org", "patient", patient=True)
    with TestClient(create_app(settings, engine), base_url=BASE_URL) as client:
        _with_data(client, kim)
        asked = client.post(f"/v1/patients/{kim.patient_id}/reports/agp/renders?days=3", headers=kim.headers)
        assert asked.status_code == 202, asked.text
        render = asked.json()
        status_path = f"/v1/patients/{kim.patient_id}/renders/{render['id']}"
        if engine.dialect.name == "postgresql":  # a worker renders it
            assert render["state"] == "queued"
            assert render["pdf"] is None
            assert client.get(f"{status_path}/pdf", headers=kim.headers).status_code == 404
            assert _report_reads(engine, kim.patient_id) == 0  # nothing read before the worker runs
            run_queued_jobs(engine, settings)
        done = client.get(status_path, headers=kim.headers).json()
        assert done["state"] == "done"
        assert done["kind"] == "agp"
        assert done["pdf"] == f"{status_path}/pdf"
        pdf = client.get(done["pdf"], headers=kim.headers)
    assert pdf.status_code == 200
    assert pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF-")
    assert len(pdf.content) == done["size_bytes"]
    with engine.connect() as conn:
        sealed = conn.execute(text("SELECT pdf_sealed FROM report_renders")).scalar_one()
    assert not sealed.startswith(b"%PDF")  # kept sealed with the patient's data key
    assert _report_reads(engine, kim.patient_id) == 2  # the rendering and the download


def test_a_report_that_cannot_be_made_ends_failed_with_its_reason(engine: Engine, settings: Settings) -> None:
    kim = make_person(engine, "kim@example.org", "patient", patient=True)
    with TestClient(create_app(settings, engine), base_url=BASE_URL) as client:
        _with_data(client, kim)
        asked = client.post(
            f"/v1/patients/{kim.patient_id}/reports/overlay/renders?weekdays=9", headers=kim.headers
        )
        assert asked.status_code == 202, asked.text
        run_queued_jobs(engine, settings)
        failed = client.get(
            f"/v1/patients/{kim.patient_id}/renders/{asked.json()['id']}", headers=kim.headers
        )
    body = failed.json()
    assert body["state"] == "failed"
    assert body["error_code"] == "invalid_report"
    assert "weekdays" in body["error_message"]
    assert body["pdf"] is None


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_someone_without_access_finds_no_render(engine: Engine, settings: Settings) -> None:
    kim = make_person(engine, "kim@example.org", "patient", patient=True)
    eve = make_person(engine, "eve@example.org", "patient", patient=True)
    with TestClient(create_app(settings, engine), base_url=BASE_URL) as client:
        _with_data(client, kim)
        render_id = client.post(
            f"/v1/patients/{kim.patient_id}/reports/agp/renders", headers=kim.headers
        ).json()["id"]
        run_queued_jobs(engine, settings)
        for path in (f"/renders/{render_id}", f"/renders/{render_id}/pdf"):
            assert client.get(f"/v1/patients/{kim.patient_id}{path}", headers=eve.headers).status_code == 404
            assert client.get(f"/v1/patients/{eve.patient_id}{path}", headers=eve.headers).status_code == 404

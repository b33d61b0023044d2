"""Schemathesis over ``/openapi.json``: generated requests to every operation, signed in as a patient,
never get a server error, and every JSON error has the one error shape."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import Case
from sqlalchemy import Engine

from glucoshare.config import Settings
from glucoshare.web.app import create_app
from tests.web.conftest import make_person

SESSION_ENDING = {
    ("DELETE", "/v1/account"),
    ("DELETE", "/v1/account/sessions/{session_id}"),
    ("POST", "/v1/auth/logout"),
}
"""Operations run without credentials: signed in, they could end the session the run uses."""


def test_no_operation_answers_with_a_server_error(app_settings: Settings, engine: Engine) -> None:
    person = make_person(engine, "fuzz@example.org", "patient", patient=True)
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(app_settings, engine))
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20
    for operation in operations:
        signed_in = (operation.method.upper(), operation.path) not in SESSION_ENDING
        _fuzz(operation, person.headers if signed_in else {})


def _fuzz(operation: schemathesis.APIOperation, headers: dict[str, str]) -> None:
    @given(case=operation.as_strategy())
    @settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def check(case: Case) -> None:
        response = case.call(headers=headers)
        assert response.status_code < 500, (case.method, case.path, response.status_code, response.text[:300])
        content_type = response.headers.get("content-type") or [""]
        if isinstance(content_type, list):  # schemathesis keeps every value of a header
            content_type = content_type[0]
        if response.status_code >= 400 and content_type.startswith("application/json"):
            assert set(response.json()) == {"error"}, response.text[:300]

    check()

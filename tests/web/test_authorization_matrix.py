"""Every route × every kind of caller: who may do what (ASVS 5.0 chapter 8).

A route that is not in MATRIX fails the suite, so no route ships without a decision on who may
call it. ``ok`` means the route's success status; a number means that exact status.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from glucoshare.config import Settings
from glucoshare.web.app import create_app
from tests.web.conftest import PASSWORD, Person, clarity_bytes, make_person, make_token

ROLES = ("anonymous", "read", "upload", "nightscout", "foreign", "other", "clinician", "carepartner", "owner")
"""Callers: app tokens before people, the owner last (some routes delete what later callers need)."""

OK = "ok"


@dataclasses.dataclass
class World:
    owner: Person
    other: Person
    clinician: Person
    carepartner: Person
    tokens: dict[str, tuple[str, str]]  # role -> (id, token)
    upload_ids: dict[str, str] = dataclasses.field(default_factory=dict)
    """An upload of the owner for each role that may delete one (the owner's for the others)."""

    def person(self, role: str) -> Person | None:
        return getattr(self, role) if role in {"owner", "other", "clinician", "carepartner"} else None

    def headers(self, role: str) -> dict[str, str]:
        person = self.person(role)
        if person is not None:
            return person.headers
        if role in self.tokens:
            return {"Authorization": f"Bearer {self.tokens[role][1]}"}
        return {}


Body = Callable[[World, str], dict[str, Any] | None]


def _none(_w: World, _role: str) -> None:
    return None


def _reauth(w: World, role: str) -> dict[str, Any]:
    person = w.person(role)
    return {"password": PASSWORD, "totp": person.code() if person and person.totp_secret else None}


PERSON_OK = {"other": OK, "clinician": OK, "carepartner": OK, "owner": OK}
"""Everyone with an account acts on their own account."""
TOKENS_REFUSED = {"read": 403, "upload": 403, "nightscout": 403, "foreign": 403}
"""App tokens may not act as a person."""
PATIENT_ONLY = {"other": OK, "clinician": 404, "carepartner": 404, "owner": OK}
"""Only accounts with patient data have tokens and an access log."""
READERS = {"read": OK, "nightscout": OK, "owner": OK}
UPLOADERS = {"upload": OK, "nightscout": OK, "owner": OK}


@dataclasses.dataclass(frozen=True)
class Case:
    expect: dict[str, str | int]
    """Per role; roles left out get ``default``."""
    default: str | int
    body: Body = _none
    files: bool = False
    needs_upload: bool = False


def _public(status: str | int, body: Body = _none) -> Case:
    return Case(expect={}, default=status, body=body)


def _person(expect: dict[str, str | int], body: Body = _none) -> Case:
    return Case(expect={"anonymous": 401, **TOKENS_REFUSED, **expect}, default=OK, body=body)


def _patient(allowed: dict[str, str | int], **kwargs: Any) -> Case:
    return Case(expect={"anonymous": 401, **allowed}, default=404, **kwargs)


MATRIX: dict[tuple[str, str], Case] = {
    ("GET", "/health"): _public(OK),
    ("GET", "/docs"): _public(OK),
    ("POST", "/v1/auth/login"): _public(
        401, lambda w, r: {"email": "nobody@example.org", "password": "wrong"}
    ),
    ("POST", "/v1/auth/logout"): Case(
        expect={"anonymous": 401, "read": 401, "upload": 401, "nightscout": 401, "foreign": 401}, default=OK
    ),
    ("POST", "/v1/auth/signup"): _public(
        OK, lambda w, r: {"email": f"new-{r}@example.org", "name": "New", "password": PASSWORD}
    ),
    ("POST", "/v1/auth/verify-email"): _public(401, lambda w, r: {"token": "not-a-link"}),
    ("POST", "/v1/auth/password-reset"): _public(OK, lambda w, r: {"email": "nobody@example.org"}),
    ("POST", "/v1/auth/password-reset/confirm"): _public(
        401, lambda w, r: {"token": "not-a-link", "password": PASSWORD + " again"}
    ),
    ("POST", "/v1/auth/email-change/confirm"): _public(401, lambda w, r: {"token": "not-a-link"}),
    ("GET", "/v1/account"): _person({}),
    ("PATCH", "/v1/account"): _person({}, lambda w, r: {"name": "Renamed"}),
    ("DELETE", "/v1/account"): _person({}, _reauth),
    ("GET", "/v1/account/export"): _person({}),
    ("POST", "/v1/account/password"): _person(
        {}, lambda w, r: {"current_password": PASSWORD, "new_password": "another long personal passphrase"}
    ),
    ("POST", "/v1/account/email"): _person(
        {}, lambda w, r: {"new_email": f"moved-{r}@example.org", **_reauth(w, r)}
    ),
    ("POST", "/v1/account/second-factor"): _person({}),
    ("POST", "/v1/account/second-factor/confirm"): _person(
        {}, lambda w, r: {"secret": "JBSWY3DPEHPK3PXPJBSWY3DP", "code": _code("JBSWY3DPEHPK3PXPJBSWY3DP")}
    ),
    ("DELETE", "/v1/account/second-factor"): _person(
        {"other": 401, "carepartner": 401, "owner": 401, "clinician": 403}, _reauth
    ),
    ("GET", "/v1/account/sessions"): _person({}),
    ("DELETE", "/v1/account/sessions"): _person({}),
    ("DELETE", "/v1/account/sessions/{session_id}"): _person({}),
    ("GET", "/v1/account/tokens"): _person(PATIENT_ONLY),
    ("POST", "/v1/account/tokens"): _person(PATIENT_ONLY, lambda w, r: {"kind": "read"}),
    ("DELETE", "/v1/account/tokens/{token_id}"): _person(
        {"other": 404, "clinician": 404, "carepartner": 404}
    ),
    ("GET", "/v1/account/access-log"): _person(PATIENT_ONLY),
    ("GET", "/v1/patients"): Case(expect={"anonymous": 401}, default=OK),
    ("GET", "/v1/patients/{patient_id}"): _patient(READERS),
    ("GET", "/v1/patients/{patient_id}/stats"): _patient(READERS),
    ("GET", "/v1/patients/{patient_id}/uploads"): _patient(READERS),
    ("POST", "/v1/patients/{patient_id}/uploads"): _patient(UPLOADERS, files=True),
    ("DELETE", "/v1/patients/{patient_id}/uploads/{upload_id}"): _patient(UPLOADERS, needs_upload=True),
}


def _code(secret: str) -> str:
    import time  # noqa: PLC0415

    from glucoshare.accounts.totp import code_at  # noqa: PLC0415

    return code_at(secret, time.time())


def _routes(settings: Settings, engine: Engine) -> set[tuple[str, str]]:
    """Every operation of the OpenAPI document, and the app's own routes kept out of it."""
    app = create_app(settings, engine)
    documented = {
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        for method in operations
        if method in {"get", "post", "put", "patch", "delete"}
    }
    undocumented = {
        (method, route.path)
        for route in app.routes
        if isinstance(route, APIRoute) and not route.include_in_schema
        for method in route.methods
    }
    return documented | undocumented


def test_every_route_has_a_matrix_entry(app_settings: Settings, engine: Engine) -> None:
    routes = _routes(app_settings, engine)
    assert routes - set(MATRIX) == set(), "routes without an authorization decision"
    assert set(MATRIX) - routes == set(), "matrix entries for routes that do not exist"


def _world(engine: Engine, *, with_upload: bool, client: TestClient) -> World:
    owner = make_person(engine, "owner@example.org", "patient", patient=True)
    other = make_person(engine, "other@example.org", "patient", patient=True)
    world = World(
        owner=owner,
        other=other,
        clinician=make_person(engine, "doc@example.org", "clinician", totp=True),
        carepartner=make_person(engine, "carer@example.org", "carepartner"),
        tokens={
            "read": make_token(engine, str(owner.patient_id), "read"),
            "upload": make_token(engine, str(owner.patient_id), "upload"),
            "nightscout": make_token(engine, str(owner.patient_id), "nightscout"),
            "foreign": make_token(engine, str(other.patient_id), "nightscout"),
        },
    )
    if with_upload:
        for seed, role in enumerate(("upload", "nightscout", "owner"), start=1):
            name, data = clarity_bytes(seed=seed)
            response = client.post(
                f"/v1/patients/{owner.patient_id}/uploads",
                headers=owner.headers,
                files={"files": (name, data)},
            )
            assert response.status_code == 201, response.text
            world.upload_ids[role] = response.json()[0]["id"]
    return world


def _path(template: str, world: World, role: str) -> str:
    person = world.person(role)
    return template.format(
        patient_id=world.owner.patient_id,
        upload_id=world.upload_ids.get(role, world.upload_ids.get("owner")),
        session_id=person.session_id if person else "0" * 32,
        token_id=world.tokens["read"][0],
    )


@pytest.mark.parametrize(("method", "path"), sorted(MATRIX), ids=lambda v: v)
def test_route_answers_each_caller_as_decided(
    method: str, path: str, app_settings: Settings, engine: Engine, client: TestClient
) -> None:
    case = MATRIX[(method, path)]
    world = _world(engine, with_upload=case.needs_upload, client=client)
    seen = {}
    for role in ROLES:
        expected = case.expect.get(role, case.default)
        kwargs: dict[str, Any] = {"headers": world.headers(role)}
        body = case.body(world, role)
        if body is not None:
            kwargs["json"] = body
        if case.files:
            name, data = clarity_bytes(seed=ROLES.index(role) + 10)
            kwargs["files"] = {"files": (name, data)}
        client.cookies.clear()
        response = client.request(method, _path(path, world, role), **kwargs)
        seen[role] = response.status_code
        if expected == OK:
            assert 200 <= response.status_code < 300, (role, response.status_code, response.text)
        else:
            assert response.status_code == expected, (role, response.status_code, response.text)
        if response.status_code >= 400:
            assert set(response.json()) == {"error"}, response.text
    assert seen

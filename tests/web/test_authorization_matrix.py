"""Every route × every kind of caller: who may do what (ASVS 5.0 chapter 8).

A route that is not in MATRIX fails the suite, so no route ships without a decision on who may
call it. ``ok`` means the route's success status; a number means that exact status.

The world: ``owner`` is a patient who shares with clinic A (``clinician`` is its admin, ``member`` a
member; view, note and upload), with ``carepartner`` (view) and ``carer_up`` (view and upload), and
with clinic C (no members who call). ``outsider`` is the admin of clinic B, which has no share.
``other`` is another patient. App tokens: ``read``, ``upload``, ``nightscout`` of the owner and
``foreign`` (a nightscout token of ``other``). Clinic A also holds a ``custodial`` patient it created.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from glucoshare.accounts.models import Patient, User
from glucoshare.config import Settings
from glucoshare.db.session import session_scope
from glucoshare.sharing.models import Clinic
from glucoshare.sharing.schemas import ClinicCreate, CustodialPatientCreate
from glucoshare.sharing.service import (
    add_member,
    create_clinic,
    create_custodial_patient,
    grant,
    invite_care_partner,
    invite_patient,
    share_with_clinic,
)
from glucoshare.web.app import create_app
from tests.queue import run_queued_jobs
from tests.web.conftest import PASSWORD, Person, clarity_bytes, make_person, make_token

PEOPLE = ("other", "clinician", "member", "outsider", "carepartner", "carer_up", "owner")
TOKENS = ("read", "upload", "nightscout", "foreign")
ROLES = ("anonymous", *TOKENS, *PEOPLE)
"""Callers: app tokens before people, the owner last (some routes delete what later callers need)."""

OK = "ok"


@dataclasses.dataclass
class World:
    people: dict[str, Person]
    tokens: dict[str, tuple[str, str]]  # role -> (id, token)
    clinic_a: str
    clinic_a_code: str
    clinic_b_code: str
    extra_member_id: str
    custodial_id: str
    shares: dict[str, str]
    """Share ids: ``clinic_a``, ``clinic_c``, ``carepartner``, ``carer_up``."""
    invitation_id: str
    clinic_invitation_id: str
    upload_ids: dict[str, str] = dataclasses.field(default_factory=dict)
    """An upload of the owner for each role that may delete one (the owner's for the others)."""
    pending_id: str = "0" * 32
    device_id: str = "0" * 32
    dataset_ids: dict[str, str] = dataclasses.field(default_factory=dict)
    import_id: str = "0" * 32
    render_id: str = "0" * 32

    def person(self, role: str) -> Person | None:
        return self.people.get(role)

    def headers(self, role: str) -> dict[str, str]:
        person = self.person(role)
        if person is not None:
            return person.headers
        if role in self.tokens:
            return {"Authorization": f"Bearer {self.tokens[role][1]}"}
        return {}


Body = Callable[[World, str], dict[str, Any] | list[Any] | None]


def _none(_w: World, _role: str) -> None:
    return None


def _reauth(w: World, role: str) -> dict[str, Any]:
    person = w.person(role)
    return {"password": PASSWORD, "totp": person.code() if person and person.totp_secret else None}


TOKENS_REFUSED: dict[str, str | int] = dict.fromkeys(TOKENS, 403)
"""App tokens may not act as a person."""
NOT_PATIENTS: dict[str, str | int] = dict.fromkeys(
    ("clinician", "member", "outsider", "carepartner", "carer_up"), 404
)
"""Accounts without patient data of their own."""
VIEWERS: dict[str, str | int] = dict.fromkeys(
    ("read", "nightscout", "clinician", "member", "carepartner", "carer_up", "owner"), OK
)
UPLOADERS: dict[str, str | int] = dict.fromkeys(
    ("upload", "nightscout", "clinician", "member", "carer_up", "owner"), OK
)
NIGHTSCOUT_READERS: dict[str, str | int] = {"read": OK, "upload": 403, "nightscout": OK, "foreign": OK}
"""The Nightscout API knows app credentials only (a person's session is no credential there);
the foreign token reads and writes its own patient's data."""
NIGHTSCOUT_WRITERS: dict[str, str | int] = {"read": 403, "upload": OK, "nightscout": OK, "foreign": OK}
_DEVICE = {"manufacturer": "Dexcom", "model": "G7", "serial": "MATRIX1"}
_READING = {"type": "cbg", "time": "2026-03-01T08:00:00Z", "value": 120, "unit": "mg/dL"}
_ENTRY = {"type": "sgv", "sgv": 120, "date": 1_772_352_000_000, "device": "xDrip-DexcomG7"}
_NOTE = {"eventType": "Note", "notes": "matrix", "created_at": "2026-03-01T08:00:00Z"}
CLINIC_A: dict[str, str | int] = {"clinician": OK, "member": OK}
CLINIC_A_ADMIN: dict[str, str | int] = {"clinician": OK, "member": 403}


@dataclasses.dataclass(frozen=True)
class Case:
    expect: dict[str, str | int]
    """Per role; roles left out get ``default``."""
    default: str | int
    body: Body = _none
    files: bool = False
    needs_upload: bool = False
    patient: str = "owner"
    """Whose id fills ``{patient_id}``: ``owner`` or ``custodial``."""
    needs_pending: bool = False
    """Clinic A holds an upload of an unassigned device (``{pending_id}``)."""
    clinic_invitation: bool = False
    """``{invitation_id}`` is clinic A's printed invitation (else the owner's care-partner invitation)."""
    rest: str = ""
    """What fills ``{rest:path}`` (the Nightscout API's paths, with a query string)."""
    needs_dataset: bool = False
    """The owner has an open data set for each role that may upload (``{dataset_id}``)."""
    needs_import: bool = False
    """The owner has a background import (``{import_id}``)."""
    needs_render: bool = False
    """The owner has a report rendered in the background (``{render_id}``)."""


def _public(status: str | int, body: Body = _none, rest: str = "") -> Case:
    return Case(expect={}, default=status, body=body, rest=rest)


def _person(expect: dict[str, str | int], body: Body = _none) -> Case:
    return Case(expect={"anonymous": 401, **TOKENS_REFUSED, **expect}, default=OK, body=body)


def _restricted(allowed: dict[str, str | int], body: Body = _none, **kwargs: Any) -> Case:
    """Anonymous 401, app tokens 403 (unless allowed), everyone else 404 unless allowed."""
    return Case(expect={"anonymous": 401, **TOKENS_REFUSED, **allowed}, default=404, body=body, **kwargs)


def _patient(allowed: dict[str, str | int], **kwargs: Any) -> Case:
    return Case(expect={"anonymous": 401, **allowed}, default=404, **kwargs)


def _nightscout(allowed: dict[str, str | int], rest: str, body: Body = _none) -> Case:
    return Case(expect={"anonymous": 401, **allowed}, default=401, body=body, rest=rest)


def _code(secret: str) -> str:
    import time  # noqa: PLC0415

    from glucoshare.accounts.totp import code_at  # noqa: PLC0415

    return code_at(secret, time.time())


MATRIX: dict[tuple[str, str], Case] = {
    ("GET", "/health"): _public(OK),
    ("GET", "/docs"): _public(OK),
    ("POST", "/v1/auth/login"): Case(  # one client address: its 11th and 12th failures are throttled
        expect={"carer_up": 429, "owner": 429},
        default=401,
        body=lambda w, r: {"email": f"nobody-{r}@example.org", "password": "wrong"},
    ),
    ("POST", "/v1/auth/logout"): Case(expect={"anonymous": 401, **dict.fromkeys(TOKENS, 401)}, default=OK),
    ("POST", "/v1/auth/signup"): _public(
        OK, lambda w, r: {"email": f"new-{r}@example.org", "name": "New", "password": PASSWORD}
    ),
    ("POST", "/v1/auth/verify-email"): _public(401, lambda w, r: {"token": "not-a-link"}),
    ("POST", "/v1/auth/password-reset"): _public(OK, lambda w, r: {"email": "nobody@example.org"}),
    ("POST", "/v1/auth/password-reset/confirm"): _public(
        401, lambda w, r: {"token": "not-a-link", "password": PASSWORD + " again"}
    ),
    ("POST", "/v1/auth/email-change/confirm"): _public(401, lambda w, r: {"token": "not-a-link"}),
    ("POST", "/v1/auth/claim"): _public(
        401, lambda w, r: {"token": "not-a-link", "birthdate": "1990-01-01", "password": PASSWORD}
    ),
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
        {
            **dict.fromkeys(("other", "carepartner", "carer_up", "owner"), 401),
            **dict.fromkeys(("clinician", "member", "outsider"), 403),
        },
        _reauth,
    ),
    ("GET", "/v1/account/sessions"): _person({}),
    ("DELETE", "/v1/account/sessions"): _person({}),
    ("DELETE", "/v1/account/sessions/{session_id}"): _person({}),
    ("GET", "/v1/account/tokens"): _person(NOT_PATIENTS),
    ("POST", "/v1/account/tokens"): _person(NOT_PATIENTS, lambda w, r: {"kind": "read"}),
    ("DELETE", "/v1/account/tokens/{token_id}"): _person({**NOT_PATIENTS, "other": 404}),
    ("GET", "/v1/account/access-log"): _person(NOT_PATIENTS),
    ("GET", "/v1/patients"): Case(expect={"anonymous": 401}, default=OK),
    ("GET", "/v1/patients/{patient_id}"): _patient(VIEWERS),
    ("GET", "/v1/patients/{patient_id}/stats"): _patient(VIEWERS),
    ("GET", "/v1/patients/{patient_id}/uploads"): _patient(VIEWERS),
    ("GET", "/v1/patients/{patient_id}/devices"): _patient(VIEWERS),
    ("GET", "/v1/patients/{patient_id}/reports/{kind}"): _patient(VIEWERS),
    ("POST", "/v1/patients/{patient_id}/reports/{kind}/renders"): _patient(VIEWERS, needs_upload=True),
    ("GET", "/v1/patients/{patient_id}/renders/{render_id}"): _patient(VIEWERS, needs_render=True),
    ("GET", "/v1/patients/{patient_id}/renders/{render_id}/pdf"): _patient(VIEWERS, needs_render=True),
    ("POST", "/v1/patients/{patient_id}/reports/{kind}/send"): _patient(
        VIEWERS, body=lambda w, r: {"share_id": w.shares["clinic_a"]}
    ),
    ("POST", "/v1/patients/{patient_id}/uploads"): _patient(UPLOADERS, files=True),
    ("POST", "/v1/patients/{patient_id}/imports"): _patient(UPLOADERS, files=True),
    ("GET", "/v1/patients/{patient_id}/imports/{import_id}"): _patient(VIEWERS, needs_import=True),
    # upload API
    ("POST", "/v1/datasets"): _patient(
        {**UPLOADERS, "foreign": 404},
        body=lambda w, r: {"device": _DEVICE, "patient_id": w.people["owner"].patient_id},
    ),
    ("GET", "/v1/datasets/{dataset_id}"): _patient(UPLOADERS, needs_dataset=True),
    ("POST", "/v1/datasets/{dataset_id}/records"): _patient(
        UPLOADERS, body=lambda w, r: {"records": [_READING]}, needs_dataset=True
    ),
    ("POST", "/v1/datasets/{dataset_id}/close"): _patient(UPLOADERS, needs_dataset=True),
    ("DELETE", "/v1/datasets/{dataset_id}"): _patient(UPLOADERS, needs_dataset=True),
    # Nightscout API
    ("GET", "/api/v1/{rest:path}"): _nightscout(NIGHTSCOUT_READERS, "entries.json?count=5"),
    ("POST", "/api/v1/{rest:path}"): _nightscout(NIGHTSCOUT_WRITERS, "entries.json", lambda w, r: [_ENTRY]),
    ("PUT", "/api/v1/{rest:path}"): _nightscout(NIGHTSCOUT_WRITERS, "treatments", lambda w, r: _NOTE),
    ("PATCH", "/api/v1/{rest:path}"): _nightscout(NIGHTSCOUT_WRITERS, "treatments/", lambda w, r: _NOTE),
    ("DELETE", "/api/v1/{rest:path}"): _nightscout(
        NIGHTSCOUT_WRITERS, "treatments.json?find[eventType]=Note"
    ),
    # API v3 takes a JWT only (from the authorization request): an access token as Bearer is refused
    ("GET", "/api/v3/{rest:path}"): _public(OK, rest="version"),
    ("POST", "/api/v3/{rest:path}"): _nightscout({}, "treatments", lambda w, r: _NOTE),
    ("PUT", "/api/v3/{rest:path}"): _nightscout({}, "treatments/abc", lambda w, r: _NOTE),
    ("PATCH", "/api/v3/{rest:path}"): _nightscout({}, "treatments/abc", lambda w, r: _NOTE),
    ("DELETE", "/api/v3/{rest:path}"): _nightscout({}, "treatments/abc"),
    ("GET", "/pebble"): _nightscout(NIGHTSCOUT_READERS, ""),
    ("GET", "/api/v2/properties"): _nightscout(NIGHTSCOUT_READERS, ""),
    ("GET", "/api/v2/properties/{names}"): _nightscout(NIGHTSCOUT_READERS, ""),
    ("GET", "/api/v2/authorization/request/{token}"): Case(expect=dict.fromkeys(TOKENS, OK), default=401),
    ("POST", "/v1/patients/{patient_id}/diary"): _patient(
        UPLOADERS, body=lambda w, r: {"time": "2026-11-20T08:15", "carbs_g": 10 + ROLES.index(r)}
    ),
    ("DELETE", "/v1/patients/{patient_id}/uploads/{upload_id}"): _patient(UPLOADERS, needs_upload=True),
    # sharing
    ("POST", "/v1/shares"): _person(NOT_PATIENTS, lambda w, r: {"clinic_code": w.clinic_b_code.lower()}),
    ("GET", "/v1/shares"): _person({}),
    ("PATCH", "/v1/shares/{share_id}"): _restricted({"owner": OK}, lambda w, r: {"permissions": ["view"]}),
    ("DELETE", "/v1/shares/{share_id}"): _restricted(
        {"carepartner": OK, "carer_up": OK, "clinician": OK, "owner": OK}
    ),
    ("POST", "/v1/shares/invitations"): _person(
        NOT_PATIENTS, lambda w, r: {"email": f"friend-{r}@example.org"}
    ),
    ("GET", "/v1/invitations"): _person({}),
    ("POST", "/v1/invitations/accept"): _person(
        dict.fromkeys(PEOPLE, 401), lambda w, r: {"token": "not-a-link"}
    ),
    ("POST", "/v1/invitations/{invitation_id}/resend"): _restricted({"owner": OK}),
    ("DELETE", "/v1/invitations/{invitation_id}"): _restricted({"owner": OK}),
    # clinics
    ("POST", "/v1/clinics"): _person(
        dict.fromkeys(("other", "carepartner", "carer_up", "owner"), 400),
        lambda w, r: {"name": f"Clinic of {r}"},
    ),
    ("GET", "/v1/clinics"): _person({}),
    ("GET", "/v1/clinics/{clinic_id}"): _restricted(CLINIC_A),
    ("PATCH", "/v1/clinics/{clinic_id}"): _restricted(CLINIC_A_ADMIN, lambda w, r: {"phone": "+49 30 1234"}),
    ("POST", "/v1/clinics/{clinic_id}/share-code"): _restricted(CLINIC_A_ADMIN),
    ("GET", "/v1/clinics/{clinic_id}/members"): _restricted(CLINIC_A),
    ("POST", "/v1/clinics/{clinic_id}/members"): _restricted(
        CLINIC_A_ADMIN, lambda w, r: {"email": f"new-doc-{r}@example.org", "role": "member"}
    ),
    ("DELETE", "/v1/clinics/{clinic_id}/members/{member_id}"): _restricted({"member": 403, "clinician": OK}),
    ("POST", "/v1/clinics/{clinic_id}/invitations"): _restricted(CLINIC_A, lambda w, r: {"email": None}),
    ("GET", "/v1/clinics/{clinic_id}/invitations"): _restricted(CLINIC_A),
    ("GET", "/v1/clinics/{clinic_id}/invitations/{invitation_id}/pdf"): _restricted(
        CLINIC_A, clinic_invitation=True
    ),
    ("POST", "/v1/clinics/{clinic_id}/uploads"): _restricted(CLINIC_A, files=True),
    ("GET", "/v1/clinics/{clinic_id}/pending-uploads"): _restricted(CLINIC_A),
    ("POST", "/v1/clinics/{clinic_id}/pending-uploads/{pending_id}/assign"): _restricted(
        {"clinician": OK, "member": 404},  # assigned by the admin already: no longer waiting
        lambda w, r: {"patient_id": w.custodial_id},
        needs_pending=True,
    ),
    ("DELETE", "/v1/clinics/{clinic_id}/pending-uploads/{pending_id}"): _restricted(
        {"clinician": OK, "member": 404}, needs_pending=True
    ),
    ("POST", "/v1/clinics/{clinic_id}/devices/{device_id}/reassign"): _restricted(
        {"clinician": OK, "member": 400},  # moved by the admin already: it is the target's now
        lambda w, r: {"patient_id": w.custodial_id},
        needs_upload=True,
    ),
    ("POST", "/v1/clinics/{clinic_id}/devices/{device_id}/unassign"): _restricted(
        {"clinician": OK, "member": 404},  # unassigned by the admin already: the device is gone
        needs_upload=True,
    ),
    ("POST", "/v1/clinics/{clinic_id}/patients/{patient_id}/reminder"): _restricted(
        {"clinician": OK, "member": 400}  # the second reminder within a day is refused
    ),
    ("GET", "/v1/clinics/{clinic_id}/patients"): _restricted(CLINIC_A),
    ("POST", "/v1/clinics/{clinic_id}/patients"): _restricted(
        CLINIC_A, lambda w, r: {"name": f"New Patient {r}", "birthdate": "1990-02-03"}
    ),
    ("PATCH", "/v1/clinics/{clinic_id}/patients/{patient_id}"): _restricted(
        CLINIC_A, lambda w, r: {"tags": []}
    ),
    ("POST", "/v1/clinics/{clinic_id}/patients/{patient_id}/reviewed"): _restricted(CLINIC_A),
    ("POST", "/v1/clinics/{clinic_id}/patients/{patient_id}/claim-link"): _restricted(
        CLINIC_A, lambda w, r: {"email": f"claim-{r}@example.org"}, patient="custodial"
    ),
}


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
        for route in _api_routes(app.routes)
        if not route.include_in_schema
        for method in route.methods
    }
    return documented | undocumented


def _api_routes(routes: list[Any]) -> list[APIRoute]:
    """Every API route, also those of included routers (the web pages have their own tests).

    The Nightscout API is kept out of the OpenAPI document (one route per version takes every
    path), so it is found here.
    """
    found: list[APIRoute] = []
    for route in routes:
        if isinstance(route, APIRoute) and route.path.startswith(
            ("/api/", "/pebble", "/health", "/docs", "/v1/")
        ):
            found.append(route)
        inner = getattr(route, "original_router", None)
        if inner is not None:
            found.extend(_api_routes(inner.routes))
    return found


def test_every_route_has_a_matrix_entry(app_settings: Settings, engine: Engine) -> None:
    routes = _routes(app_settings, engine)
    assert routes - set(MATRIX) == set(), "routes without an authorization decision"
    assert set(MATRIX) - routes == set(), "matrix entries for routes that do not exist"


def _world(
    engine: Engine, settings: Settings, *, with_upload: bool, with_pending: bool, client: TestClient
) -> World:
    people = {
        "owner": make_person(engine, "owner@example.org", "patient", patient=True),
        "other": make_person(engine, "other@example.org", "patient", patient=True),
        "clinician": make_person(engine, "doc@example.org", "clinician", totp=True),
        "member": make_person(engine, "nurse@example.org", "clinician", totp=True),
        "outsider": make_person(engine, "elsewhere@example.org", "clinician", totp=True),
        "carepartner": make_person(engine, "carer@example.org", "carepartner"),
        "carer_up": make_person(engine, "parent@example.org", "carepartner"),
    }
    extra = make_person(engine, "extra@example.org", "clinician", totp=True)
    with session_scope(engine) as session:
        user = {role: session.get(User, p.user_id) for role, p in people.items()}
        owner = session.get(Patient, people["owner"].patient_id)
        assert owner is not None
        clinic_a = create_clinic(
            session, ClinicCreate(name="Clinic A"), founder=user["clinician"], actor="test"
        )
        add_member(session, clinic_a, user["member"], "member", actor="test")  # type: ignore[arg-type]
        extra_member = add_member(session, clinic_a, session.get(User, extra.user_id), "member", actor="test")  # type: ignore[arg-type]
        clinic_b = create_clinic(
            session, ClinicCreate(name="Clinic B"), founder=user["outsider"], actor="test"
        )
        clinic_c = session.get(
            Clinic, create_clinic(session, ClinicCreate(name="C"), founder=user["clinician"], actor="t").id
        )
        assert clinic_c is not None
        shares = {
            "clinic_a": share_with_clinic(session, owner, clinic_a.share_code, None, actor="test").id,
            "clinic_c": share_with_clinic(session, owner, clinic_c.share_code, None, actor="test").id,
            "carepartner": grant(
                session, owner, user=user["carepartner"], permissions=["view"], actor="t"
            ).id,
            "carer_up": grant(
                session, owner, user=user["carer_up"], permissions=["view", "upload"], actor="t"
            ).id,
        }
        # clinic C's only member leaves, so that the clinician reaches the owner through clinic A only
        from glucoshare.sharing.models import ClinicMember  # noqa: PLC0415

        session.query(ClinicMember).filter(ClinicMember.clinic_id == clinic_c.id).delete()
        custodial, _ = create_custodial_patient(
            session,
            settings,
            clinic_a,
            CustodialPatientCreate(name="Kept Patient", birthdate=dt.date(2010, 4, 5)),
            actor="test",
        )
        invitation = invite_care_partner(session, settings, owner, "friend@example.org", None, actor="test")
        printed = invite_patient(session, settings, clinic_a, None, actor="test")
        world = World(
            people=people,
            tokens={},
            clinic_a=clinic_a.id,
            clinic_a_code=clinic_a.share_code,
            clinic_b_code=clinic_b.share_code,
            extra_member_id=extra_member.id,
            custodial_id=custodial.id,
            shares=shares,
            invitation_id=invitation.id,
            clinic_invitation_id=printed.id,
        )
    world.tokens = {
        "read": make_token(engine, str(people["owner"].patient_id), "read"),
        "upload": make_token(engine, str(people["owner"].patient_id), "upload"),
        "nightscout": make_token(engine, str(people["owner"].patient_id), "nightscout"),
        "foreign": make_token(engine, str(people["other"].patient_id), "nightscout"),
    }
    if with_upload:
        roles = ("upload", "nightscout", "clinician", "member", "carer_up", "owner")
        for seed, role in enumerate(roles, start=1):
            name, data = clarity_bytes(seed=seed)
            response = client.post(
                f"/v1/patients/{world.people['owner'].patient_id}/uploads",
                headers=world.people["owner"].headers,
                files={"files": (name, data)},
            )
            assert response.status_code == 201, response.text
            world.upload_ids[role] = response.json()[0]["id"]
        devices = client.get(
            f"/v1/patients/{world.people['owner'].patient_id}/devices", headers=world.people["owner"].headers
        )
        world.device_id = devices.json()[0]["id"]
    if with_pending:
        name, data = clarity_bytes(seed=99)
        held = client.post(
            f"/v1/clinics/{world.clinic_a}/uploads",
            headers=world.people["clinician"].headers,
            files={"files": (name, data)},
        )
        assert held.status_code == 201, held.text
        world.pending_id = held.json()[0]["pending"]["id"]
    return world


SHARE_OF_ROLE = {
    "carepartner": "carepartner",
    "carer_up": "carer_up",
    "clinician": "clinic_a",
    "owner": "clinic_c",
}


def _path(template: str, world: World, role: str, case: Case) -> str:
    person = world.person(role)
    patient = world.people["owner"].patient_id if case.patient == "owner" else world.custodial_id
    token = world.tokens[role][1] if role in world.tokens else "not-a-token"
    return template.replace("{rest:path}", case.rest).format(
        token=token,
        names="bgnow,delta",
        dataset_id=world.dataset_ids.get(role, world.dataset_ids.get("owner", "0" * 32)),
        patient_id=patient,
        upload_id=world.upload_ids.get(role, world.upload_ids.get("owner")),
        import_id=world.import_id,
        render_id=world.render_id,
        session_id=person.session_id if person else "0" * 32,
        token_id=world.tokens["read"][0],
        clinic_id=world.clinic_a,
        pending_id=world.pending_id,
        device_id=world.device_id,
        member_id=world.extra_member_id,
        share_id=world.shares[SHARE_OF_ROLE.get(role, "clinic_a")],
        invitation_id=world.clinic_invitation_id if case.clinic_invitation else world.invitation_id,
        kind="agp",
    )


@pytest.mark.parametrize(("method", "path"), sorted(MATRIX), ids=lambda v: v)
def test_route_answers_each_caller_as_decided(
    method: str, path: str, app_settings: Settings, engine: Engine, client: TestClient
) -> None:
    case = MATRIX[(method, path)]
    world = _world(
        engine,
        app_settings,
        with_upload=case.needs_upload or case.needs_render,
        with_pending=case.needs_pending,
        client=client,
    )
    if case.needs_dataset:
        owner = world.people["owner"]
        for role in ("owner", *(r for r in UPLOADERS if r != "owner")):
            opened = client.post(
                "/v1/datasets",
                json={"device": _DEVICE, "patient_id": owner.patient_id, "name": f"matrix-{role}"},
                headers=owner.headers,
            )
            assert opened.status_code == 201, opened.text
            world.dataset_ids[role] = opened.json()["id"]
    if case.needs_import:
        owner = world.people["owner"]
        name, data = clarity_bytes(seed=77)
        queued = client.post(
            f"/v1/patients/{owner.patient_id}/imports", headers=owner.headers, files={"files": (name, data)}
        )
        assert queued.status_code == 202, queued.text
        world.import_id = queued.json()["id"]
    if case.needs_render:
        owner = world.people["owner"]
        rendering = client.post(f"/v1/patients/{owner.patient_id}/reports/agp/renders", headers=owner.headers)
        assert rendering.status_code == 202, rendering.text
        world.render_id = rendering.json()["id"]
        run_queued_jobs(engine, app_settings)
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
        response = client.request(method, _path(path, world, role, case), **kwargs)
        if expected == OK:
            assert 200 <= response.status_code < 300, (role, response.status_code, response.text)
        else:
            assert response.status_code == expected, (role, response.status_code, response.text)
        if response.status_code >= 400 and path.startswith(
            ("/api/", "/pebble")
        ):  # Nightscout's shape, and ours
            keys = set(response.json())
            assert {"status", "message", "error"} <= keys <= {"status", "message", "description", "error"}
        elif response.status_code >= 400:
            assert set(response.json()) == {"error"}, response.text

"""The web app's pages: server-rendered HTML for patients, care partners and clinicians.

Pages read through the same services and the same permission service as the REST API (a caller
without access gets the "not found" page, as the API answers ``404``). Changes go to the REST API
from the page's small script (``static/app.js``) with the session cookie and its CSRF token, so
every rule of the API holds for the web app too. A page without a valid session sends the browser
to the sign-in page and back.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import zoneinfo
from typing import Annotated, Any, Literal
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from glucoshare.accounts.access import Principal, own_patient
from glucoshare.accounts.errors import PatientNotFoundError
from glucoshare.accounts.models import Patient, User
from glucoshare.accounts.roles import ROLES, token_roles
from glucoshare.accounts.sessions import active_sessions, list_api_tokens
from glucoshare.analytics.population import CATEGORIES
from glucoshare.audit.service import access_log, record_event
from glucoshare.audit.tags import AuditTag
from glucoshare.devices.service import list_devices
from glucoshare.errors import UnauthenticatedError
from glucoshare.records.models import Upload
from glucoshare.records.service import list_uploads
from glucoshare.records.vocabulary import mgdl_to_mmol
from glucoshare.reports.render import STYLESHEET, render_body
from glucoshare.reports.service import ReportOptions, build_report
from glucoshare.reports.units import Glucose, Unit, pct
from glucoshare.reports.views import REPORT_KINDS, TITLES, ReportKind
from glucoshare.sharing.access import accessible_patients, permissions_of
from glucoshare.sharing.assignment import pending_out, pending_uploads
from glucoshare.sharing.models import Clinic, ClinicMember, Invitation
from glucoshare.sharing.patient_list import clinic_patients
from glucoshare.sharing.service import grants_of, invitation_out, members, share_out
from glucoshare.summaries.data import latest_cgm
from glucoshare.summaries.service import patient_stats, resolve_period
from glucoshare.templating import templates
from glucoshare.web.deps import (
    SESSION_COOKIE,
    authenticate,
    csrf_token,
    own_patient_of,
    reach_patient,
    settings_of,
    unit_of_work,
)

router = APIRouter(include_in_schema=False)
PERMISSION_LABELS = (
    ("view", "see the data and reports"),
    ("upload", "upload device exports"),
    ("manage_devices", "manage devices"),
    ("note", "add notes"),
)


@dataclasses.dataclass(frozen=True, slots=True)
class Viewer:
    """Who looks at a page: the account, their own patient record (if any) and their clinics."""

    user: User
    patient_id: str | None
    clinics: list[Clinic]
    csrf: str


def render(
    request: Request,
    template: str,
    *,
    viewer: Viewer | None,
    status_code: int = 200,
    **context: Any,  # noqa: ANN401
) -> HTMLResponse:
    """A page of the web app."""
    html = (
        templates("glucoshare.web.ui")
        .get_template(template)
        .render(
            viewer=viewer,
            path=request.url.path,
            report_stylesheet=f"/static/reports/{STYLESHEET}",
            **context,
        )
    )
    return HTMLResponse(html, status_code=status_code)


def _signin_redirect(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/signin?next={quote(target, safe='')}", status_code=303)


def viewer_of(request: Request, session: Session) -> tuple[Principal, Viewer] | None:
    """The signed-in person of a browser request, or ``None`` (no session, or an ended one)."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie is None:
        return None
    try:
        principal = authenticate(request)
    except UnauthenticatedError:
        return None
    if principal.user is None:
        return None
    user = session.get(User, principal.user.id)
    if user is None:
        return None
    patient = own_patient(session, user)
    clinics = list(
        session.scalars(
            select(Clinic)
            .join(ClinicMember, ClinicMember.clinic_id == Clinic.id)
            .where(ClinicMember.user_id == user.id)
            .order_by(Clinic.name)
        )
    )
    return principal, Viewer(
        user, None if patient is None else patient.id, clinics, csrf_token(request, cookie)
    )


@router.get("/", response_class=HTMLResponse)
def start(request: Request) -> Response:
    """The start page: one's own data, the patients shared with one, or the clinic."""
    with unit_of_work(request) as session:
        found = viewer_of(request, session)
        if found is None:
            return RedirectResponse("/signin", status_code=303)
        principal, viewer = found
        if viewer.patient_id is not None:
            return RedirectResponse(f"/patients/{viewer.patient_id}", status_code=303)
        if viewer.clinics:
            return RedirectResponse(f"/clinics/{viewer.clinics[0].id}", status_code=303)
        patients = accessible_patients(session, principal)
        return render(request, "patients.html", viewer=viewer, patients=patients)


@router.get("/signin", response_class=HTMLResponse)
def signin(
    request: Request, next_: Annotated[str | None, Query(alias="next", max_length=500)] = None
) -> Response:
    """The sign-in form (e-mail, password and, when enrolled, the second factor)."""
    target = next_ if next_ and next_.startswith("/") and not next_.startswith("//") else "/"
    return render(request, "signin.html", viewer=None, next=target)


def _glucose_of(patient: Patient) -> Glucose:
    return Glucose("mmol/L" if patient.display_units == "mmol/L" else "mg/dL")


@router.get("/patients/{patient_id}", response_class=HTMLResponse)
def dashboard(request: Request, patient_id: str) -> Response:
    """A patient's dashboard: latest reading, the last 14 days in figures, devices and uploads."""
    with unit_of_work(request) as session:
        found = viewer_of(request, session)
        if found is None:
            return _signin_redirect(request)
        principal, viewer = found
        patient = reach_patient(request, session, principal, patient_id, "view")
        period = resolve_period(session, patient, days=14)
        stats = patient_stats(session, patient, period, actor=principal.actor)
        latest = latest_cgm(session, patient.id)
        devices = list_devices(session, patient.id)
        uploads = list_uploads(session, patient.id)
        last_upload = dict(
            session.execute(
                select(Upload.device_seq, func.max(Upload.created_at))
                .where(Upload.patient_id == patient.id, Upload.device_seq.is_not(None))
                .group_by(Upload.device_seq)
            ).all()
        )
        glucose = _glucose_of(patient)
        return render(
            request,
            "dashboard.html",
            viewer=viewer,
            patient=patient,
            permissions=sorted(permissions_of(session, principal, patient)),
            stats=stats,
            glucose=glucose,
            pct=pct,
            latest_at=None if latest is None else dt.datetime.fromtimestamp(latest[0] / 1000, dt.UTC),
            latest_value=None if latest is None else glucose.with_unit(latest[1]),
            devices=devices,
            last_upload=last_upload,
            uploads=uploads[:10],
            kinds=REPORT_KINDS,
            titles=TITLES,
        )


@router.get("/patients/{patient_id}/reports/{kind}", response_class=HTMLResponse)
def report_page(
    request: Request,
    patient_id: str,
    kind: ReportKind,
    *,
    days: Annotated[int | None, Query(ge=1, le=3660)] = None,
    from_: Annotated[dt.date | None, Query(alias="from")] = None,
    to: Annotated[dt.date | None, Query()] = None,
    units: Annotated[Unit | None, Query()] = None,
) -> Response:
    """One report of a patient, with its period and unit chosen on the page, and its PDF."""
    with unit_of_work(request) as session:
        found = viewer_of(request, session)
        if found is None:
            return _signin_redirect(request)
        principal, viewer = found
        patient = reach_patient(request, session, principal, patient_id, "view")
        period = resolve_period(session, patient, days=days, first=from_, last=to)
        report = build_report(
            session, patient, kind, period, actor=principal.actor, options=ReportOptions(unit=units)
        )
        query = f"from={period.first.isoformat()}&to={period.last.isoformat()}"
        if units is not None:
            query += f"&units={quote(units)}"
        return render(
            request,
            "report.html",
            viewer=viewer,
            patient=patient,
            kind=kind,
            kinds=REPORT_KINDS,
            titles=TITLES,
            body=render_body(report),
            first=period.first,
            last=period.last,
            unit=units or patient.display_units,
            pdf_url=f"/v1/patients/{patient.id}/reports/{kind}?format=pdf&{query}",
        )


@router.get("/patients/{patient_id}/sharing", response_class=HTMLResponse)
def sharing_page(request: Request, patient_id: str) -> Response:
    """Everyone with access to the patient's data, what they may do, and sharing with a clinic code."""
    with unit_of_work(request) as session:
        found = viewer_of(request, session)
        if found is None:
            return _signin_redirect(request)
        principal, viewer = found
        if viewer.patient_id != patient_id:
            reach_patient(request, session, principal, patient_id, "manage")
        patient = session.get(Patient, patient_id)
        if patient is None:
            raise PatientNotFoundError("no patient with this id")
        shares = [share_out(session, s) for s in grants_of(session, patient)]
        sent = [
            invitation_out(i)
            for i in session.scalars(
                select(Invitation)
                .where(Invitation.patient_id == patient.id, Invitation.kind == "carepartner")
                .order_by(Invitation.created_at.desc())
            )
        ]
        return render(
            request,
            "sharing.html",
            viewer=viewer,
            patient=patient,
            shares=shares,
            sent=sent,
            permissions=PERMISSION_LABELS,
        )


@router.get("/clinics/{clinic_id}", response_class=HTMLResponse)
def clinic_page(
    request: Request,
    clinic_id: str,
    *,
    search: Annotated[str | None, Query(max_length=100)] = None,
    tag: Annotated[str | None, Query(max_length=40)] = None,
    category: Annotated[str | None, Query(max_length=40)] = None,
    sort: Annotated[
        Literal["triage", "name", "last_data", "time_in_range", "time_below_range", "gmi", "added"], Query()
    ] = "triage",
) -> Response:
    """A clinic's patient list with the triage categories and search (members only)."""
    with unit_of_work(request) as session:
        found = viewer_of(request, session)
        if found is None:
            return _signin_redirect(request)
        principal, viewer = found
        if principal.must_enrol_second_factor:
            return RedirectResponse("/account/security", status_code=303)
        clinic = next((c for c in viewer.clinics if c.id == clinic_id), None)
        if clinic is None:
            raise PatientNotFoundError("no such clinic, or not yours")
        listing = clinic_patients(
            session, clinic, search=search, tag=tag or None, category=category or None, sort=sort, limit=100
        )
        held = [pending_out(p) for p in pending_uploads(session, clinic)]
        people = members(session, clinic)
        assignable = (
            clinic_patients(session, clinic, sort="added", descending=True, limit=500).patients
            if held
            else []
        )
        return render(
            request,
            "clinic.html",
            viewer=viewer,
            clinic=clinic,
            listing=listing,
            pending=held,
            assignable=assignable,
            members=people,
            is_admin=any(m.user_id == viewer.user.id and m.role == "admin" for m in people),
            search=search or "",
            tag=tag or "",
            category=category or "",
            categories=CATEGORIES,
            sort=sort,
            mmol=mgdl_to_mmol,
        )


def page_error(request: Request, status: int, message: str) -> Response:
    """The friendly page of an error on a web-app page (no stack trace, no internal detail).

    A page that needs a session sends the browser to the sign-in page instead.
    """
    if status == 401:  # noqa: PLR2004
        return _signin_redirect(request)
    titles = {404: "Not found", 403: "Not allowed", 422: "That did not work", 429: "Too many attempts"}
    return render(
        request,
        "error.html",
        viewer=None,
        status_code=status,
        status=status,
        title=titles.get(status, "Something went wrong" if status >= 500 else "That did not work"),  # noqa: PLR2004
        message=message if status < 500 else "The server could not finish this. Please try again.",  # noqa: PLR2004
    )


@dataclasses.dataclass(frozen=True, slots=True)
class Field:
    """One input of a token page's form."""

    name: str
    label: str
    type: str = "text"
    autocomplete: str = "off"
    optional: bool = False


def _message(request: Request, title: str, *lines: str, link: tuple[str, str] | None = None) -> HTMLResponse:
    return render(request, "message.html", viewer=None, title=title, lines=lines, link=link)


def _token_page(
    request: Request,
    *,
    title: str,
    lines: tuple[str, ...],
    api: str,
    token: str,
    button: str,
    then: str,
    fields: tuple[Field, ...] = (),
    viewer: Viewer | None = None,
) -> HTMLResponse:
    """A page that sends an e-mailed link's token to the API when the person confirms (never on GET)."""
    return render(
        request,
        "token.html",
        viewer=viewer,
        title=title,
        lines=lines,
        api=api,
        token=token,
        button=button,
        then=then,
        fields=fields,
    )


@router.get("/signup", response_class=HTMLResponse)
def signup(request: Request) -> Response:
    """Create a patient or care-partner account (an e-mail confirms the address)."""
    return render(request, "signup.html", viewer=None, zones=sorted(zoneinfo.available_timezones()))


@router.get("/signup/sent", response_class=HTMLResponse)
def signup_sent(request: Request) -> Response:
    """After signing up: look for the e-mail."""
    return _message(
        request,
        "Check your e-mail",
        "We sent a link to confirm your address. Open it to finish creating your account.",
        "No e-mail? Look in the spam folder, or sign up again in a few minutes.",
        link=("Sign in", "/signin"),
    )


@router.get("/verify-email/{token}", response_class=HTMLResponse)
def verify_email(request: Request, token: Annotated[str, Path(max_length=200)]) -> Response:
    """Confirm an e-mail address from the link in the sign-up e-mail."""
    return _token_page(
        request,
        title="Confirm your e-mail address",
        lines=("One click and your account is ready.",),
        api="/v1/auth/verify-email",
        token=token,
        button="Confirm my address",
        then="/signin",
    )


@router.get("/reset-password", response_class=HTMLResponse)
def reset_request(request: Request) -> Response:
    """Ask for a link to choose a new password."""
    return render(request, "reset.html", viewer=None)


@router.get("/reset-password/sent", response_class=HTMLResponse)
def reset_sent(request: Request) -> Response:
    """After asking for a reset link."""
    return _message(
        request,
        "Check your e-mail",
        "If an account uses that address, we sent it a link to choose a new password. It works for one hour.",
        link=("Sign in", "/signin"),
    )


@router.get("/reset-password/{token}", response_class=HTMLResponse)
def reset_confirm(request: Request, token: Annotated[str, Path(max_length=200)]) -> Response:
    """Choose a new password from the e-mailed link."""
    return _token_page(
        request,
        title="Choose a new password",
        lines=("Every other sign-in of your account ends when you change it.",),
        api="/v1/auth/password-reset/confirm",
        token=token,
        button="Save the new password",
        then="/signin",
        fields=(
            Field("password", "New password", "password", "new-password"),
            Field("totp", "Code from your authenticator app (if you use two-step sign-in)", optional=True),
        ),
    )


@router.get("/account/email/confirm", response_class=HTMLResponse)
def email_change_confirm(request: Request, token: Annotated[str, Query(max_length=200)]) -> Response:
    """Confirm a change of e-mail address (each of the two addresses gets a link)."""
    return _token_page(
        request,
        title="Confirm the new e-mail address",
        lines=("The change takes effect once both the old and the new address have confirmed it.",),
        api="/v1/auth/email-change/confirm",
        token=token,
        button="Confirm",
        then="/",
    )


@router.get("/claim", response_class=HTMLResponse)
def claim(request: Request, token: Annotated[str, Query(max_length=200)]) -> Response:
    """Take over the account a clinic made for you: confirm your birth date, choose a password."""
    return _token_page(
        request,
        title="Your Glucoshare account",
        lines=(
            (
                "Your clinic made this account for you. Confirm your birth date and choose a password: "
                "from then on you decide who sees your data, and your clinic keeps the access it has."
            ),
        ),
        api="/v1/auth/claim",
        token=token,
        button="Take over my account",
        then="/signin",
        fields=(
            Field("birthdate", "Your birth date", "date", "bday"),
            Field("password", "Password", "password", "new-password"),
        ),
    )


@router.get("/invitations/accept", response_class=HTMLResponse)
def accept_invitation(request: Request, token: Annotated[str, Query(max_length=200)]) -> Response:
    """Accept an invitation (to follow someone's data, to share with a clinic, to join a clinic)."""
    with unit_of_work(request) as session:
        found = viewer_of(request, session)
        if found is None:
            return _signin_redirect(request)
        return _token_page(
            request,
            title="Accept the invitation",
            lines=("Accepting starts the sharing the invitation describes; it can be stopped at any time.",),
            api="/v1/invitations/accept",
            token=token,
            button="Accept",
            then="/",
            viewer=found[1],
        )


@router.get("/upload", response_class=HTMLResponse)
def upload(request: Request) -> Response:
    """Where upload reminders point: one's own dashboard, at its upload form."""
    with unit_of_work(request) as session:
        found = viewer_of(request, session)
        if found is None:
            return _signin_redirect(request)
        if found[1].patient_id is None:
            return RedirectResponse("/", status_code=303)
        return RedirectResponse(f"/patients/{found[1].patient_id}#upload", status_code=303)


@router.get("/account/security", response_class=HTMLResponse)
def security(request: Request) -> Response:
    """Two-step sign-in, password and sessions."""
    with unit_of_work(request) as session:
        found = viewer_of(request, session)
        if found is None:
            return _signin_redirect(request)
        principal, viewer = found
        rows = active_sessions(session, viewer.user)
        return render(
            request,
            "security.html",
            viewer=viewer,
            has_second_factor=viewer.user.has_second_factor,
            must_enrol=principal.must_enrol_second_factor,
            sessions=[
                {
                    "id": row.id,
                    "created_at": row.created_at,
                    "last_seen_at": row.last_seen_at,
                    "user_agent": row.user_agent,
                    "current": row.id == principal.session_id,
                }
                for row in rows
            ],
        )


_ACTIONS = {
    "summaries:stats:read": "looked at the figures",
    "reports:report:read": "opened a report",
    "reports:report:send": "sent a report",
    "records:data:read": "looked at the data",
    "records:data:export": "exported the data",
    "accounts:profile:read": "looked at the profile",
    "ingest:upload:create": "uploaded a file",
    "records:upload:delete": "removed an upload",
    "records:upload:list": "listed the uploads",
    "devices:device:list": "listed the devices",
    "sharing:share:grant": "started sharing",
    "sharing:share:revoke": "stopped sharing",
    "sharing:share:update": "changed what may be done",
    "accounts:access:denied": "was refused access",
    "accounts:token:create": "made a token for an app",
    "accounts:token:revoke": "revoked an app's token",
    "accounts:token:list": "looked at the app tokens",
}


def _actor_names(session: Session, actors: set[str]) -> dict[str, str]:
    """Readable names for the audit trail's actors (``user:ID`` → the person's name)."""
    names = {"cli": "the command line (operator)", "anonymous": "someone not signed in"}
    for actor in actors:
        kind, _, ident = actor.partition(":")
        if kind == "user" and (user := session.get(User, ident)) is not None:
            names[actor] = user.name
        elif kind == "token":
            names[actor] = "an app with a token"
    return names


@router.get("/account", response_class=HTMLResponse)
def account(request: Request) -> Response:
    """Settings, who accessed my data, export everything, delete the account."""
    with unit_of_work(request) as session:
        found = viewer_of(request, session)
        if found is None:
            return _signin_redirect(request)
        _, viewer = found
        patient = None if viewer.patient_id is None else session.get(Patient, viewer.patient_id)
        entries = access_log(session, patient.id, limit=200) if patient is not None else []
        names = _actor_names(session, {e.actor for e in entries})
        log = [
            {
                "at": e.at,
                "who": names.get(e.actor, e.actor.split(":", 1)[0]),
                "what": _ACTIONS.get(e.action, e.action.rsplit(":", 1)[-1].replace("-", " ")),
                "outcome": e.outcome,
                "where": e.ip or "",
            }
            for e in entries
        ]
        return render(
            request,
            "account.html",
            viewer=viewer,
            patient=patient,
            log=log,
            zones=sorted(zoneinfo.available_timezones()),
        )


TOKEN_KIND_LABELS: dict[str, tuple[str, str]] = {
    "nightscout": (
        "Nightscout app",
        (
            "For apps that speak to a Nightscout site: xDrip+, Loop, Trio, AndroidAPS. It reads and "
            "sends all your data, and comes with an API secret for the apps that ask for one."
        ),
    ),
    "read": (
        "Read only",
        (
            "For apps that only look: Home Assistant, followers, watch faces. It reads your data "
            "and cannot change anything."
        ),
    ),
    "upload": (
        "Uploader",
        (
            "For the glucoshare upload command and apps that only send data. It sends data and "
            "cannot read anything."
        ),
    ),
}
"""Each token kind's name and what it is for, in plain words, in the order the page offers them
(every kind of :data:`glucoshare.accounts.sessions.TOKEN_KINDS`)."""

ROLE_LABELS: dict[str, str] = {
    "admin": "read and change everything",
    "readable": "read everything",
    "uploader": "send data, read nothing",
    "careportal": "add, change and delete treatments",
    "devicestatus-upload": "send device status",
    "activity": "send activity",
    "status-only": "see only that the server answers",
}
"""What each Nightscout role (:data:`glucoshare.accounts.roles.ROLES`) lets a token do, in words."""


@dataclasses.dataclass(frozen=True, slots=True)
class ServerAddress:
    """This server's address as apps ask for it.

    ``site`` is the address without a trailing slash (Loop, Trio, AndroidAPS, Home Assistant);
    xDrip+ takes ``xdrip_prefix + SECRET + xdrip_suffix``, the API secret as the user part of its
    Nightscout Sync (REST-API) base URL ending in ``/api/v1/``, and hashes it itself
    (research/nightscout.md §3).
    """

    site: str
    xdrip_prefix: str
    xdrip_suffix: str
    secure: bool

    def xdrip(self, secret: str) -> str:
        """xDrip+'s base URL with ``secret`` in it."""
        return f"{self.xdrip_prefix}{secret}{self.xdrip_suffix}"


def server_address(base_url: str) -> ServerAddress:
    """The address of ``base_url`` (``settings.base_url``) for apps, without a user part or trailing slash."""
    parts = urlsplit(base_url.strip())
    scheme = parts.scheme or "https"
    host = parts.netloc.rpartition("@")[2]
    path = parts.path.rstrip("/")
    return ServerAddress(
        site=f"{scheme}://{host}{path}",
        xdrip_prefix=f"{scheme}://",
        xdrip_suffix=f"@{host}{path}/api/v1/",
        secure=scheme == "https",
    )


@router.get("/account/apps", response_class=HTMLResponse)
def apps_page(request: Request) -> Response:
    """A patient's API tokens for apps and uploaders (never their values) and how to connect apps.

    Making and revoking a token go to ``/v1/account/tokens`` from the page's forms; the new token
    (and a ``nightscout`` token's API secret) is shown once, by the page's script, from the API's
    answer. Accounts without patient data get the API's refusal (``404``).
    """
    with unit_of_work(request) as session:
        found = viewer_of(request, session)
        if found is None:
            return _signin_redirect(request)
        principal, viewer = found
        patient = own_patient_of(session, principal, "this account holds no patient data")
        rows = list_api_tokens(session, patient)
        record_event(session, actor=principal.actor, action=AuditTag.TOKEN_LIST, patient_id=patient.id)
        return render(
            request,
            "apps.html",
            viewer=viewer,
            tokens=[
                {
                    "id": row.id,
                    "kind": TOKEN_KIND_LABELS.get(row.kind, (row.kind, ""))[0],
                    "roles": token_roles(row.kind, row.roles),
                    "created_at": row.created_at,
                    "last_used_at": row.last_used_at,
                    "revoked_at": row.revoked_at,
                }
                for row in rows
            ],
            in_use=sum(row.revoked_at is None for row in rows),
            kinds=[(kind, name, text) for kind, (name, text) in TOKEN_KIND_LABELS.items()],
            roles=[(role, ROLE_LABELS.get(role, role)) for role in ROLES],
            role_labels=ROLE_LABELS,
            server=server_address(settings_of(request).base_url),
        )

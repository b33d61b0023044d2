"""``/v1/account``: the signed-in person's own account.

Profile, password, second factor, e-mail address, sessions, API tokens, access log, data export
and deletion.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from fastapi import APIRouter, Request, Response, status
from fastapi.responses import FileResponse
from starlette.background import BackgroundTask

from glucoshare.accounts.access import own_patient
from glucoshare.accounts.email_change import request_email_change
from glucoshare.accounts.profile import profile, update_profile
from glucoshare.accounts.schemas import ProfileOut, ProfileUpdate, TotpEnrolmentOut, TotpStartOut
from glucoshare.accounts.sessions import (
    active_sessions,
    create_api_token,
    end_other_sessions,
    end_session,
    list_api_tokens,
    revoke_api_token,
)
from glucoshare.accounts.users import (
    change_password,
    confirm_totp_enrolment,
    disable_totp,
    reauthenticate,
    start_totp_enrolment,
)
from glucoshare.audit.schemas import AccessEntryOut
from glucoshare.audit.service import access_log, record_event
from glucoshare.audit.tags import AuditTag
from glucoshare.export.account import export_account
from glucoshare.ingest.service import erase_patient
from glucoshare.summaries.service import mark_outdated
from glucoshare.vault.service import destroy_data_key
from glucoshare.web.api.schemas import (
    Accepted,
    EmailChangeIn,
    PasswordChangeIn,
    ReauthIn,
    SessionOut,
    TokenCreatedOut,
    TokenCreateIn,
    TokenOut,
    TotpConfirmIn,
)
from glucoshare.web.deps import (
    Caller,
    clear_session_cookie,
    current_user,
    own_patient_of,
    settings_of,
    unit_of_work,
)

router = APIRouter(prefix="/v1/account", tags=["account"])

_ALL_TIME = (-(2**62), 2**62)


@router.get("")
def get_profile(caller: Caller, request: Request) -> ProfileOut:
    """The account and, for a patient, their profile and target range."""
    with unit_of_work(request) as session:
        user = current_user(session, caller)
        record_event(session, actor=caller.actor, action=AuditTag.PROFILE_READ, target=user.id)
        return profile(session, user)


@router.patch("")
def patch_profile(body: ProfileUpdate, caller: Caller, request: Request) -> ProfileOut:
    """Change name, birth date, time zone, display units or target range."""
    with unit_of_work(request) as session:
        user = current_user(session, caller)
        before = own_patient(session, user)
        zone = None if before is None else before.timezone
        out = update_profile(session, user, body)
        patient = own_patient(session, user)
        if patient is not None and patient.timezone != zone:
            mark_outdated(session, patient.id, *_ALL_TIME, "time zone changed")
        record_event(
            session,
            actor=caller.actor,
            action=AuditTag.PROFILE_UPDATE,
            patient_id=None if patient is None else patient.id,
            target=user.id,
            details={"fields": sorted(body.model_dump(exclude_unset=True))},
        )
        return out


@router.delete("", status_code=status.HTTP_204_NO_CONTENT, responses={401: {"description": "Wrong password"}})
def delete_account(body: ReauthIn, caller: Caller, request: Request) -> Response:
    """Delete the account with everything stored about it (password and second factor required).

    A patient's data keys are destroyed with it; the audit trail keeps ids only.
    """
    with unit_of_work(request) as session:
        user = current_user(session, caller)
        reauthenticate(session, user, password=body.password, code=body.totp)
        patient = own_patient(session, user)
        if patient is not None:
            erase_patient(session, patient=patient, actor=caller.actor)
        else:
            user_id = user.id
            session.delete(user)
            destroy_data_key(session, user_id)
            record_event(session, actor=caller.actor, action=AuditTag.PATIENT_DELETE, target=user_id)
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    clear_session_cookie(response)
    return response


@router.get(
    "/export",
    response_class=FileResponse,
    responses={200: {"content": {"application/zip": {}}, "description": "Everything, as a zip"}},
)
def export(caller: Caller, request: Request) -> FileResponse:
    """Everything stored about the account, machine-readable (JSON and the raw uploaded files)."""
    scratch = Path(tempfile.mkdtemp(prefix="glucoshare-export-"))
    target = scratch / "glucoshare-export.zip"
    try:
        with unit_of_work(request) as session:
            user = current_user(session, caller)
            export_account(session, user, target)
            patient = own_patient(session, user)
            record_event(
                session,
                actor=caller.actor,
                action=AuditTag.ACCOUNT_EXPORT,
                patient_id=None if patient is None else patient.id,
                target=user.id,
            )
    except BaseException:
        _remove(scratch)
        raise
    return FileResponse(
        target,
        media_type="application/zip",
        filename="glucoshare-export.zip",
        background=BackgroundTask(_remove, scratch),
    )


def _remove(folder: Path) -> None:
    for path in folder.glob("*"):
        path.unlink(missing_ok=True)
    folder.rmdir()


@router.post("/password", status_code=status.HTTP_204_NO_CONTENT, responses={401: {"description": "Wrong"}})
def post_password(body: PasswordChangeIn, caller: Caller, request: Request) -> Response:
    """Change the password (the current one required); every other session ends."""
    with unit_of_work(request) as session:
        user = current_user(session, caller)
        change_password(
            session,
            user,
            current=body.current_password,
            new=body.new_password,
            keep_session=caller.session_id,
        )
        record_event(session, actor=caller.actor, action=AuditTag.PASSWORD_CHANGE, target=user.id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/email", status_code=status.HTTP_202_ACCEPTED, responses={401: {"description": "Wrong"}})
def post_email(body: EmailChangeIn, caller: Caller, request: Request) -> Accepted:
    """Start changing the e-mail address: links go to the new and to the old address."""
    with unit_of_work(request) as session:
        user = current_user(session, caller)
        request_email_change(
            session,
            settings_of(request),
            user,
            new_email=body.new_email,
            password=body.password,
            code=body.totp,
        )
    return Accepted(detail="open the links sent to both addresses to finish the change")


@router.post("/second-factor")
def start_second_factor(caller: Caller, request: Request) -> TotpStartOut:
    """A new TOTP secret with its QR code; nothing changes until it is confirmed with a code."""
    with unit_of_work(request) as session:
        return start_totp_enrolment(current_user(session, caller, enrolling=True))


@router.post("/second-factor/confirm")
def confirm_second_factor(body: TotpConfirmIn, caller: Caller, request: Request) -> TotpEnrolmentOut:
    """Turn on TOTP with the offered secret and a current code; returns ten recovery codes, once."""
    with unit_of_work(request) as session:
        user = current_user(session, caller, enrolling=True)
        out = confirm_totp_enrolment(
            session, user, secret=body.secret, code=body.code, keep_session=caller.session_id
        )
        record_event(session, actor=caller.actor, action=AuditTag.USER_SECOND_FACTOR, target=user.id)
        return out


@router.delete(
    "/second-factor", status_code=status.HTTP_204_NO_CONTENT, responses={401: {"description": "Wrong"}}
)
def delete_second_factor(body: ReauthIn, caller: Caller, request: Request) -> Response:
    """Turn the second factor off (not for clinicians); every other session ends."""
    with unit_of_work(request) as session:
        user = current_user(session, caller)
        disable_totp(
            session, user, password=body.password, code=body.totp or "", keep_session=caller.session_id
        )
        record_event(session, actor=caller.actor, action=AuditTag.SECOND_FACTOR_DISABLE, target=user.id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/sessions")
def list_sessions(caller: Caller, request: Request) -> list[SessionOut]:
    """The account's active sessions, newest first."""
    with unit_of_work(request) as session:
        user = current_user(session, caller)
        return [
            SessionOut.model_validate(row).model_copy(update={"current": row.id == caller.session_id})
            for row in active_sessions(session, user)
        ]


@router.delete("/sessions/{session_id}", status_code=status.HTTP_204_NO_CONTENT)
def revoke_session(session_id: str, caller: Caller, request: Request) -> Response:
    """End one session of the account (the current one too)."""
    with unit_of_work(request) as session:
        user = current_user(session, caller)
        end_session(session, user, session_id)
        record_event(session, actor=caller.actor, action=AuditTag.SESSION_REVOKE, target=session_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.delete("/sessions", status_code=status.HTTP_204_NO_CONTENT)
def revoke_other_sessions(caller: Caller, request: Request) -> Response:
    """End every session of the account but the current one."""
    with unit_of_work(request) as session:
        user = current_user(session, caller)
        ended = end_other_sessions(session, user, keep=caller.session_id)
        record_event(
            session,
            actor=caller.actor,
            action=AuditTag.SESSION_REVOKE,
            target=user.id,
            details={"ended": ended},
        )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/tokens")
def list_tokens(caller: Caller, request: Request) -> list[TokenOut]:
    """The patient's API tokens (never their values), with when each was last used."""
    with unit_of_work(request) as session:
        patient = own_patient_of(session, caller, "this account holds no patient data")
        rows = list_api_tokens(session, patient)
        record_event(session, actor=caller.actor, action=AuditTag.TOKEN_LIST, patient_id=patient.id)
        return [TokenOut.model_validate(row) for row in rows]


@router.post("/tokens", status_code=status.HTTP_201_CREATED)
def post_token(body: TokenCreateIn, caller: Caller, request: Request) -> TokenCreatedOut:
    """A new API token for the patient's apps: its value (and a Nightscout secret) is shown only now."""
    with unit_of_work(request) as session:
        patient = own_patient_of(session, caller, "this account holds no patient data")
        created = create_api_token(
            session, patient, kind=body.kind, created_by=caller.actor, roles=body.roles
        )
        record_event(
            session,
            actor=caller.actor,
            action=AuditTag.TOKEN_CREATE,
            patient_id=patient.id,
            target=created.id,
            details={"kind": body.kind, "roles": sorted(set(body.roles or []))},
        )
        return TokenCreatedOut(
            id=created.id, kind=created.kind, token=created.token, api_secret=created.api_secret
        )


@router.delete("/tokens/{token_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_token(token_id: str, caller: Caller, request: Request) -> Response:
    """Revoke one of the patient's API tokens at once."""
    with unit_of_work(request) as session:
        patient = own_patient_of(session, caller, "this account holds no patient data")
        revoke_api_token(session, token_id, patient=patient)
        record_event(
            session, actor=caller.actor, action=AuditTag.TOKEN_REVOKE, patient_id=patient.id, target=token_id
        )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/access-log")
def get_access_log(caller: Caller, request: Request) -> list[AccessEntryOut]:
    """Who read or changed the patient's data, when, from where, and the outcome (newest first)."""
    with unit_of_work(request) as session:
        patient = own_patient_of(session, caller, "this account holds no patient data")
        entries = access_log(session, patient.id)
        record_event(session, actor=caller.actor, action=AuditTag.ACCESS_LOG_READ, patient_id=patient.id)
        return entries

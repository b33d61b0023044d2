"""``/v1/shares`` and ``/v1/invitations``: who has access to a patient's data, and invitations.

``POST /v1/shares`` with ``{"clinic_code"}`` shares the signed-in patient's data with a clinic;
``GET /v1/shares`` lists who has access; ``DELETE /v1/shares/{id}`` ends a share at once (CONTRACT.md).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response, status
from pydantic import BaseModel, Field
from sqlalchemy import ScalarResult, select

from glucoshare.accounts.access import own_patient
from glucoshare.audit.service import record_event
from glucoshare.audit.tags import AuditTag
from glucoshare.sharing.errors import InvitationInvalidError, ShareNotFoundError
from glucoshare.sharing.models import ClinicMember, Invitation, Share
from glucoshare.sharing.schemas import InvitationOut, ShareOut, SharePermission
from glucoshare.sharing.service import (
    accept_invitation,
    find_invitation,
    grants_of,
    invitation_for_sender,
    invitation_out,
    invite_care_partner,
    pending_invitations_for,
    resend_invitation,
    revoke_invitation,
    revoke_share,
    set_share_permissions,
    share_for_party,
    share_out,
    share_with_clinic,
    shares_held_by,
)
from glucoshare.web.deps import Caller, current_user, own_patient_of, settings_of, unit_of_work

router = APIRouter(tags=["sharing"])
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No such share, or not yours"}}


class ShareCreate(BaseModel):
    """Share with a clinic by its code (any case, dashes and spaces optional)."""

    clinic_code: str = Field(min_length=1, max_length=40)
    permissions: list[SharePermission] | None = Field(
        default=None, description="What the clinic may do; default view, note and upload."
    )


class SharePermissionsIn(BaseModel):
    """What the grantee may do from now on."""

    permissions: list[SharePermission] = Field(min_length=1)


class CarePartnerInvite(BaseModel):
    """Invite someone to see the patient's data (read-only unless more is granted)."""

    email: str = Field(max_length=320)
    permissions: list[SharePermission] | None = None


class InvitationAccept(BaseModel):
    """The link's token, or the code of a printed clinic invitation."""

    token: str | None = Field(default=None, max_length=200)
    code: str | None = Field(default=None, max_length=40)


class AcceptedOut(BaseModel):
    """What accepting an invitation started: a share, or a clinic membership."""

    kind: str
    share: ShareOut | None = None
    clinic_id: str | None = None


class InvitationsOut(BaseModel):
    """Invitations to the caller, and those they sent as a patient."""

    received: list[InvitationOut]
    sent: list[InvitationOut]


@router.post(
    "/v1/shares", status_code=status.HTTP_201_CREATED, responses={404: {"description": "Unknown code"}}
)
def post_share(body: ShareCreate, caller: Caller, request: Request) -> ShareOut:
    """Share the signed-in patient's data with a clinic; the clinic sees the patient at once."""
    with unit_of_work(request) as session:
        patient = own_patient_of(session, caller, "only a patient's own account shares its data")
        share = share_with_clinic(session, patient, body.clinic_code, body.permissions, actor=caller.actor)
        return share_out(session, share)


@router.get("/v1/shares")
def get_shares(caller: Caller, request: Request) -> list[ShareOut]:
    """Who has access to the signed-in patient's data; for a care partner, the patients they follow."""
    with unit_of_work(request) as session:
        user = current_user(session, caller)
        patient = own_patient(session, user)
        shares = grants_of(session, patient) if patient is not None else shares_held_by(session, user)
        record_event(
            session,
            actor=caller.actor,
            action=AuditTag.SHARE_LIST,
            patient_id=None if patient is None else patient.id,
        )
        return [share_out(session, s) for s in shares]


@router.patch("/v1/shares/{share_id}", responses=_NOT_FOUND)
def patch_share(share_id: str, body: SharePermissionsIn, caller: Caller, request: Request) -> ShareOut:
    """Change what a clinic or care partner may do (the patient only)."""
    with unit_of_work(request) as session:
        user = current_user(session, caller)
        share, patient = share_for_party(session, share_id, user)
        if patient.user_id != user.id:
            raise ShareNotFoundError("no such share")
        set_share_permissions(session, share, list(body.permissions), actor=caller.actor)
        return share_out(session, share)


@router.delete("/v1/shares/{share_id}", status_code=status.HTTP_204_NO_CONTENT, responses=_NOT_FOUND)
def delete_share(share_id: str, caller: Caller, request: Request) -> Response:
    """Stop sharing, at once: the patient, the care partner or a member of the clinic may end it."""
    with unit_of_work(request) as session:
        share, _ = share_for_party(session, share_id, current_user(session, caller))
        revoke_share(session, share, actor=caller.actor)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/v1/shares/invitations", status_code=status.HTTP_201_CREATED)
def post_care_partner_invitation(body: CarePartnerInvite, caller: Caller, request: Request) -> InvitationOut:
    """Invite a care partner by e-mail (a link valid 7 days, for that address only)."""
    with unit_of_work(request) as session:
        patient = own_patient_of(session, caller, "only a patient's own account shares its data")
        invitation = invite_care_partner(
            session, settings_of(request), patient, body.email, body.permissions, actor=caller.actor
        )
        return invitation_out(invitation)


@router.get("/v1/invitations")
def get_invitations(caller: Caller, request: Request) -> InvitationsOut:
    """Invitations waiting for the caller, and those the caller sent as a patient."""
    with unit_of_work(request) as session:
        user = current_user(session, caller)
        patient = own_patient(session, user)
        sent: list[Invitation] | ScalarResult[Invitation] = (
            []
            if patient is None
            else session.scalars(
                select(Invitation).where(
                    Invitation.patient_id == patient.id, Invitation.kind == "carepartner"
                )
            )
        )
        return InvitationsOut(
            received=[invitation_out(i) for i in pending_invitations_for(session, user)],
            sent=[invitation_out(i) for i in sent],
        )


@router.post("/v1/invitations/accept", responses={401: {"description": "Invalid, used or expired"}})
def post_accept(body: InvitationAccept, caller: Caller, request: Request) -> AcceptedOut:
    """Accept an invitation from its e-mailed link or a printed code."""
    if not body.token and not body.code:
        msg = "give the invitation's token or code"
        raise InvitationInvalidError(msg)
    with unit_of_work(request) as session:
        user = current_user(session, caller)
        invitation = find_invitation(session, token=body.token, code=body.code)
        result = accept_invitation(session, user, invitation, actor=caller.actor)
        if isinstance(result, ClinicMember):
            return AcceptedOut(kind="clinician", clinic_id=result.clinic_id)
        assert isinstance(result, Share)  # noqa: S101
        return AcceptedOut(kind=invitation.kind, share=share_out(session, result), clinic_id=result.clinic_id)


@router.post("/v1/invitations/{invitation_id}/resend", responses={404: {"description": "Not yours"}})
def post_resend(invitation_id: str, caller: Caller, request: Request) -> InvitationOut:
    """Send an invitation again with a new link, valid 7 more days."""
    with unit_of_work(request) as session:
        invitation = invitation_for_sender(session, invitation_id, current_user(session, caller))
        resend_invitation(session, settings_of(request), invitation, actor=caller.actor)
        return invitation_out(invitation)


@router.delete(
    "/v1/invitations/{invitation_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={404: {"description": "Not yours"}},
)
def delete_invitation(invitation_id: str, caller: Caller, request: Request) -> Response:
    """Withdraw an invitation: its link and code stop working at once."""
    with unit_of_work(request) as session:
        invitation = invitation_for_sender(session, invitation_id, current_user(session, caller))
        revoke_invitation(session, invitation, actor=caller.actor)
    return Response(status_code=status.HTTP_204_NO_CONTENT)

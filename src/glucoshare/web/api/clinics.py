"""``/v1/clinics``: clinic workspaces, their members, invitations and patient list.

Members see their clinic; everyone else gets ``404`` as for a clinic that does not exist. Changes
to the clinic and its members are for its admins (``403`` for other members).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Query, Request, Response, UploadFile, status
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from glucoshare.accounts.errors import PatientNotFoundError
from glucoshare.accounts.models import Patient
from glucoshare.accounts.schemas import PatientOut
from glucoshare.analytics.population import CATEGORIES
from glucoshare.audit.service import record_event
from glucoshare.audit.tags import AuditTag
from glucoshare.db.base import ID_LENGTH
from glucoshare.records.schemas import UploadOut
from glucoshare.sharing.assignment import (
    ClinicUploadOut,
    PendingUploadOut,
    assign_pending,
    discard_pending,
    pending_out,
    pending_uploads,
    reassign_device,
    unassign_device,
    upload_for_clinic,
)
from glucoshare.sharing.errors import InvalidSharingError, InvitationNotFoundError
from glucoshare.sharing.models import Invitation
from glucoshare.sharing.patient_list import ClinicPatientListOut, SortKey, clinic_patients
from glucoshare.sharing.printable import invitation_pdf
from glucoshare.sharing.schemas import (
    ClinicCreate,
    ClinicOut,
    ClinicPatientUpdate,
    ClinicUpdate,
    CustodialPatientCreate,
    InvitationOut,
    MemberOut,
    MemberRole,
)
from glucoshare.sharing.service import (
    clinic_for,
    clinic_out,
    clinic_share,
    clinics_of,
    create_clinic,
    create_custodial_patient,
    invitation_out,
    invite_clinician,
    invite_patient,
    mark_reviewed,
    members,
    remind_to_upload,
    remove_member,
    rotate_share_code,
    send_claim_link,
    update_clinic,
    update_clinic_patient,
)
from glucoshare.summaries.service import TRIAGE_PERIODS
from glucoshare.web.deps import Caller, current_user, read_uploads, refresh_after, settings_of, unit_of_work

router = APIRouter(prefix="/v1/clinics", tags=["clinics"])
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No such clinic, or not a member"}}
_ADMIN: dict[int | str, dict[str, Any]] = {**_NOT_FOUND, 403: {"description": "Admins only"}}


class MemberInvite(BaseModel):
    """Invite a clinician to the clinic."""

    email: str = Field(max_length=320)
    role: MemberRole = "member"


class PatientInvite(BaseModel):
    """Invite a patient to share with the clinic: by e-mail, or leave it out to print the code."""

    email: str | None = Field(default=None, max_length=320)


class ClaimLinkIn(BaseModel):
    """Where to send the link that lets the patient take over their account."""

    email: str = Field(max_length=320)


class ClinicPatientOutRow(BaseModel):
    """A patient the clinic created, with the clinic's facts about them."""

    patient: PatientOut
    share_id: str
    mrn: str | None
    tags: list[str]


@router.post("", status_code=status.HTTP_201_CREATED)
def post_clinic(body: ClinicCreate, caller: Caller, request: Request) -> ClinicOut:
    """Create a clinic; the signed-in clinician becomes its first admin."""
    with unit_of_work(request) as session:
        clinic = create_clinic(session, body, founder=current_user(session, caller), actor=caller.actor)
        return clinic_out(clinic, "admin")


@router.get("")
def get_clinics(caller: Caller, request: Request) -> list[ClinicOut]:
    """The clinics the signed-in clinician belongs to."""
    with unit_of_work(request) as session:
        return clinics_of(session, current_user(session, caller))


@router.get("/{clinic_id}", responses=_NOT_FOUND)
def get_clinic(clinic_id: str, caller: Caller, request: Request) -> ClinicOut:
    """One clinic, with the caller's role in it."""
    with unit_of_work(request) as session:
        clinic, member = clinic_for(session, clinic_id, current_user(session, caller))
        return clinic_out(clinic, member.role)


@router.patch("/{clinic_id}", responses=_ADMIN)
def patch_clinic(clinic_id: str, body: ClinicUpdate, caller: Caller, request: Request) -> ClinicOut:
    """Change the clinic's name, details, tags or MRN settings (admins)."""
    with unit_of_work(request) as session:
        clinic, member = clinic_for(session, clinic_id, current_user(session, caller), admin=True)
        return clinic_out(update_clinic(session, clinic, body, actor=caller.actor), member.role)


@router.post("/{clinic_id}/share-code", responses=_ADMIN)
def post_share_code(clinic_id: str, caller: Caller, request: Request) -> ClinicOut:
    """Give the clinic a new share code; the old one stops working at once (admins)."""
    with unit_of_work(request) as session:
        clinic, member = clinic_for(session, clinic_id, current_user(session, caller), admin=True)
        rotate_share_code(session, clinic, actor=caller.actor)
        return clinic_out(clinic, member.role)


@router.get("/{clinic_id}/members", responses=_NOT_FOUND)
def get_members(clinic_id: str, caller: Caller, request: Request) -> list[MemberOut]:
    """The clinic's clinicians and their roles."""
    with unit_of_work(request) as session:
        clinic, _ = clinic_for(session, clinic_id, current_user(session, caller))
        return members(session, clinic)


@router.post("/{clinic_id}/members", status_code=status.HTTP_201_CREATED, responses=_ADMIN)
def post_member(clinic_id: str, body: MemberInvite, caller: Caller, request: Request) -> InvitationOut:
    """Invite a clinician by e-mail (admins); they join when they accept with their account."""
    with unit_of_work(request) as session:
        clinic, _ = clinic_for(session, clinic_id, current_user(session, caller), admin=True)
        invitation = invite_clinician(
            session, settings_of(request), clinic, body.email, body.role, actor=caller.actor
        )
        return invitation_out(invitation)


@router.delete("/{clinic_id}/members/{member_id}", status_code=status.HTTP_204_NO_CONTENT, responses=_ADMIN)
def delete_member(clinic_id: str, member_id: str, caller: Caller, request: Request) -> Response:
    """Remove a clinician from the clinic (admins; never the last admin)."""
    with unit_of_work(request) as session:
        clinic, _ = clinic_for(session, clinic_id, current_user(session, caller), admin=True)
        remove_member(session, clinic, member_id, actor=caller.actor)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{clinic_id}/invitations", status_code=status.HTTP_201_CREATED, responses=_NOT_FOUND)
def post_patient_invitation(
    clinic_id: str, body: PatientInvite, caller: Caller, request: Request
) -> InvitationOut:
    """Invite a patient to share with the clinic: an e-mailed link, and a code to print (7 days)."""
    with unit_of_work(request) as session:
        clinic, _ = clinic_for(session, clinic_id, current_user(session, caller))
        return invitation_out(
            invite_patient(session, settings_of(request), clinic, body.email, actor=caller.actor)
        )


@router.get("/{clinic_id}/invitations", responses=_NOT_FOUND)
def get_clinic_invitations(clinic_id: str, caller: Caller, request: Request) -> list[InvitationOut]:
    """The clinic's invitations to patients and clinicians, newest first."""
    with unit_of_work(request) as session:
        clinic, _ = clinic_for(session, clinic_id, current_user(session, caller))
        rows = session.scalars(
            select(Invitation).where(Invitation.clinic_id == clinic.id).order_by(Invitation.created_at.desc())
        )
        return [invitation_out(i) for i in rows]


@router.get(
    "/{clinic_id}/invitations/{invitation_id}/pdf",
    response_class=Response,
    responses={**_NOT_FOUND, 200: {"content": {"application/pdf": {}}, "description": "A4, one page"}},
)
def get_invitation_pdf(clinic_id: str, invitation_id: str, caller: Caller, request: Request) -> Response:
    """The printable invitation: the clinic, the code and plain instructions (no health data)."""
    with unit_of_work(request) as session:
        clinic, _ = clinic_for(session, clinic_id, current_user(session, caller))
        invitation = session.get(Invitation, invitation_id) if len(invitation_id) <= ID_LENGTH else None
        if invitation is None or invitation.clinic_id != clinic.id:
            raise InvitationNotFoundError("no such invitation")
        pdf = invitation_pdf(settings_of(request), clinic, invitation)
    return Response(
        pdf,
        media_type="application/pdf",
        headers={"Content-Disposition": 'inline; filename="glucoshare-invitation.pdf"'},
    )


@router.get("/{clinic_id}/patients", responses=_NOT_FOUND)
def get_clinic_patients(
    clinic_id: str,
    caller: Caller,
    request: Request,
    search: Annotated[str | None, Query(max_length=200, description="Name, MRN or birth date")] = None,
    tag: Annotated[str | None, Query(max_length=20)] = None,
    category: Annotated[str | None, Query(max_length=40)] = None,
    days: Annotated[int, Query(description="1, 7, 14 or 30")] = 14,
    sort: SortKey = "triage",
    descending: bool = False,
    reminder_days: Annotated[int, Query(ge=1, le=365)] = 14,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> ClinicPatientListOut:
    """The clinic's patients with their triage figures: search, filter by tag or category, sort."""
    if days not in TRIAGE_PERIODS:
        msg = f"days is one of {', '.join(map(str, TRIAGE_PERIODS))}"
        raise InvalidSharingError(msg)
    if category is not None and category not in CATEGORIES:
        msg = f"category is one of {', '.join(CATEGORIES)}"
        raise InvalidSharingError(msg)
    with unit_of_work(request) as session:
        clinic, _ = clinic_for(session, clinic_id, current_user(session, caller))
        listing = clinic_patients(
            session,
            clinic,
            days=days,
            search=search,
            tag=tag,
            category=category,
            sort=sort,
            descending=descending,
            reminder_days=reminder_days,
            limit=limit,
            offset=offset,
        )
        record_event(
            session,
            actor=caller.actor,
            action=AuditTag.CLINIC_PATIENTS_READ,
            target=clinic.id,
            details={"total": listing.total, "shown": len(listing.patients)},
        )
        return listing


@router.post("/{clinic_id}/patients", status_code=status.HTTP_201_CREATED, responses=_NOT_FOUND)
def post_clinic_patient(
    clinic_id: str, body: CustodialPatientCreate, caller: Caller, request: Request
) -> ClinicPatientOutRow:
    """Create a patient account the clinic holds until the patient claims it (link by e-mail)."""
    with unit_of_work(request) as session:
        clinic, _ = clinic_for(session, clinic_id, current_user(session, caller))
        patient, share = create_custodial_patient(
            session, settings_of(request), clinic, body, actor=caller.actor
        )
        return ClinicPatientOutRow(
            patient=PatientOut.model_validate(patient), share_id=share.id, mrn=share.mrn, tags=share.tags
        )


@router.patch("/{clinic_id}/patients/{patient_id}", responses=_NOT_FOUND)
def patch_clinic_patient(
    clinic_id: str, patient_id: str, body: ClinicPatientUpdate, caller: Caller, request: Request
) -> ClinicPatientOutRow:
    """Set the clinic's MRN or tags of one of its patients."""
    with unit_of_work(request) as session:
        clinic, _ = clinic_for(session, clinic_id, current_user(session, caller))
        share = update_clinic_patient(
            session, clinic, clinic_share(session, clinic, patient_id), body, actor=caller.actor
        )
        patient = share_patient(session, share.patient_id)
        return ClinicPatientOutRow(
            patient=PatientOut.model_validate(patient), share_id=share.id, mrn=share.mrn, tags=share.tags
        )


@router.post(
    "/{clinic_id}/patients/{patient_id}/reviewed",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=_NOT_FOUND,
)
def post_reviewed(clinic_id: str, patient_id: str, caller: Caller, request: Request) -> Response:
    """Mark the patient as reviewed now, by the caller."""
    with unit_of_work(request) as session:
        user = current_user(session, caller)
        clinic, _ = clinic_for(session, clinic_id, user)
        mark_reviewed(session, clinic_share(session, clinic, patient_id), user, actor=caller.actor)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{clinic_id}/patients/{patient_id}/claim-link",
    status_code=status.HTTP_202_ACCEPTED,
    responses=_NOT_FOUND,
)
def post_claim_link(
    clinic_id: str, patient_id: str, body: ClaimLinkIn, caller: Caller, request: Request
) -> InvitationOut:
    """E-mail a clinic-created patient the link to take over their account."""
    with unit_of_work(request) as session:
        clinic, _ = clinic_for(session, clinic_id, current_user(session, caller))
        share = clinic_share(session, clinic, patient_id)
        patient = share_patient(session, share.patient_id)
        if not share.custodian:
            msg = "this patient already has their own account"
            raise InvalidSharingError(msg)
        invitation = send_claim_link(
            session, settings_of(request), clinic, patient, body.email, actor=caller.actor
        )
        return invitation_out(invitation)


class ReminderOut(BaseModel):
    """Whether an upload reminder was sent (a patient without an address cannot get one)."""

    sent: bool


@router.post("/{clinic_id}/patients/{patient_id}/reminder", responses=_NOT_FOUND)
def post_reminder(clinic_id: str, patient_id: str, caller: Caller, request: Request) -> ReminderOut:
    """E-mail the patient a reminder to upload their devices (at most once a day)."""
    with unit_of_work(request) as session:
        clinic, _ = clinic_for(session, clinic_id, current_user(session, caller))
        share = clinic_share(session, clinic, patient_id)
        return ReminderOut(
            sent=remind_to_upload(session, settings_of(request), clinic, share, actor=caller.actor)
        )


class AssignIn(BaseModel):
    """The patient to give the held device's data to, and the serial number read off the device."""

    patient_id: str = Field(min_length=1, max_length=64)
    serial: str | None = Field(default=None, max_length=100)


class ReassignIn(BaseModel):
    """The patient the device (and its data) moves to."""

    patient_id: str = Field(min_length=1, max_length=64)


class DeviceMovedOut(BaseModel):
    """Where a device belongs now."""

    device_id: str
    patient_id: str


@router.post(
    "/{clinic_id}/uploads",
    status_code=status.HTTP_201_CREATED,
    responses={**_NOT_FOUND, 409: {"description": "The device belongs to a patient who does not share it"}},
)
def post_clinic_uploads(
    clinic_id: str,
    caller: Caller,
    request: Request,
    files: Annotated[list[UploadFile], File(description="One or more device exports")],
    timezone: Annotated[str | None, Query(max_length=64)] = None,
) -> list[ClinicUploadOut]:
    """Upload device exports: assigned devices go to their patients, others wait for assignment."""
    settings = settings_of(request)
    incoming = read_uploads(files, settings.max_upload_bytes)
    with unit_of_work(request) as session:
        clinic, _ = clinic_for(session, clinic_id, current_user(session, caller))
        results = [
            upload_for_clinic(session, settings, clinic, caller, item, timezone=timezone, actor=caller.actor)
            for item in incoming
        ]
    refresh_after(request, [r.patient_id for r in results if r.patient_id is not None])
    return results


@router.get("/{clinic_id}/pending-uploads", responses=_NOT_FOUND)
def get_pending_uploads(clinic_id: str, caller: Caller, request: Request) -> list[PendingUploadOut]:
    """Uploads of devices not assigned to a patient yet, newest first."""
    with unit_of_work(request) as session:
        clinic, _ = clinic_for(session, clinic_id, current_user(session, caller))
        record_event(session, actor=caller.actor, action=AuditTag.PENDING_LIST, target=clinic.id)
        return [pending_out(p) for p in pending_uploads(session, clinic)]


@router.post(
    "/{clinic_id}/pending-uploads/{pending_id}/assign",
    status_code=status.HTTP_201_CREATED,
    responses=_NOT_FOUND,
)
def post_assign(
    clinic_id: str, pending_id: str, body: AssignIn, caller: Caller, request: Request
) -> list[UploadOut]:
    """Confirm the device's serial and give its data to a patient of the clinic."""
    settings = settings_of(request)
    with unit_of_work(request) as session:
        clinic, _ = clinic_for(session, clinic_id, current_user(session, caller))
        uploads = assign_pending(
            session,
            settings,
            clinic,
            caller,
            pending_id,
            patient_id=body.patient_id,
            serial=body.serial,
            actor=caller.actor,
        )
    refresh_after(request, [body.patient_id])
    return uploads


@router.delete(
    "/{clinic_id}/pending-uploads/{pending_id}", status_code=status.HTTP_204_NO_CONTENT, responses=_NOT_FOUND
)
def delete_pending(clinic_id: str, pending_id: str, caller: Caller, request: Request) -> Response:
    """Discard a held upload without assigning it."""
    with unit_of_work(request) as session:
        clinic, _ = clinic_for(session, clinic_id, current_user(session, caller))
        discard_pending(session, clinic, pending_id, actor=caller.actor)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{clinic_id}/devices/{device_id}/reassign", responses=_NOT_FOUND)
def post_reassign(
    clinic_id: str, device_id: str, body: ReassignIn, caller: Caller, request: Request
) -> DeviceMovedOut:
    """Move a device and its data to another patient of the clinic (both must let the clinic upload)."""
    with unit_of_work(request) as session:
        clinic_for(session, clinic_id, current_user(session, caller))
        device = reassign_device(session, caller, device_id, patient_id=body.patient_id, actor=caller.actor)
        moved = DeviceMovedOut(device_id=device.id, patient_id=device.patient_id)
    refresh_after(request, None)
    return moved


@router.post("/{clinic_id}/devices/{device_id}/unassign", responses=_NOT_FOUND)
def post_unassign(clinic_id: str, device_id: str, caller: Caller, request: Request) -> list[PendingUploadOut]:
    """Take a device from its patient: its uploads wait for assignment again (data removed from them)."""
    with unit_of_work(request) as session:
        clinic, _ = clinic_for(session, clinic_id, current_user(session, caller))
        held = unassign_device(session, settings_of(request), clinic, caller, device_id, actor=caller.actor)
    refresh_after(request, None)
    return held


def share_patient(session: Session, patient_id: str) -> Patient:
    """The patient of a share (shares go with their patient)."""
    patient = session.get(Patient, patient_id)
    if patient is None:  # pragma: no cover - shares are deleted with their patient
        msg = "no patient with this id"
        raise PatientNotFoundError(msg)
    return patient

"""Clinics, members, shares, invitations and clinic-created accounts. Services flush, never commit.

Every grant, change and revocation is audited. Addresses and MRNs are sealed (:mod:`glucoshare.vault`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from glucoshare.accounts.access import own_patient
from glucoshare.accounts.errors import InvalidUserError, PatientNotFoundError
from glucoshare.accounts.links import digest, new_token, public_url
from glucoshare.accounts.models import Patient, User
from glucoshare.accounts.schemas import normalise_email
from glucoshare.accounts.service import add_patient, validate_patient
from glucoshare.accounts.users import add_user, validate_user
from glucoshare.audit.service import record_event
from glucoshare.audit.tags import AuditTag
from glucoshare.config import Settings
from glucoshare.db.base import ID_LENGTH
from glucoshare.mail.service import Mail, queue_mail
from glucoshare.sharing.access import SHARE_PERMISSIONS
from glucoshare.sharing.codes import new_code, normalise_code
from glucoshare.sharing.errors import (
    AlreadySharedError,
    ClinicNotFoundError,
    InvalidSharingError,
    InvitationInvalidError,
    InvitationNotFoundError,
    MrnTakenError,
    NotClinicAdminError,
    ReminderTooSoonError,
    ShareCodeNotFoundError,
    ShareNotFoundError,
)
from glucoshare.sharing.models import Clinic, ClinicMember, Invitation, Share
from glucoshare.sharing.schemas import (
    PLACEHOLDER_DOMAIN,
    ClinicCreate,
    ClinicOut,
    ClinicPatientUpdate,
    ClinicUpdate,
    CustodialPatientCreate,
    InvitationOut,
    MemberOut,
    ShareOut,
    real_address,
)
from glucoshare.vault.service import lookup_hash

INVITATION_VALIDITY = dt.timedelta(days=7)
CLINIC_DEFAULT_PERMISSIONS = ("view", "note", "upload")
"""What a clinic may do when the patient does not say (Tidepool: view and note, upload on)."""
CUSTODIAL_PERMISSIONS = ("view", "upload", "manage_devices", "note")
_DETAIL_FIELDS = ("address", "country", "phone", "website")


def _now(now: dt.datetime | None) -> dt.datetime:
    return dt.datetime.now(dt.UTC) if now is None else now


def _permissions(requested: Iterable[str] | None, default: Iterable[str]) -> list[str]:
    chosen = set(default if requested is None else requested)
    unknown = chosen - set(SHARE_PERMISSIONS)
    if unknown:
        msg = f"unknown permissions {sorted(unknown)}; use {', '.join(SHARE_PERMISSIONS)}"
        raise InvalidSharingError(msg)
    return [p for p in SHARE_PERMISSIONS if p in chosen]


# Clinics and members ---------------------------------------------------------------------------


def _unused_code(
    session: Session, column: InstrumentedAttribute[str | None] | InstrumentedAttribute[str]
) -> str:
    """A fresh share or invitation code that ``column`` does not hold yet."""
    while True:
        code = new_code()
        if session.scalar(select(column).where(column == code)) is None:
            return code


def create_clinic(session: Session, data: ClinicCreate, *, founder: User | None, actor: str) -> Clinic:
    """A new clinic with ``founder`` (a clinician) as its first admin.

    Without a founder (the command line) it has no members yet: an operator adds its admins next.
    """
    if founder is not None and founder.role != "clinician":
        msg = "only clinicians create clinics"
        raise InvalidSharingError(msg)
    clinic = Clinic(
        name=data.name,
        details={k: v for k in _DETAIL_FIELDS if (v := getattr(data, k)) is not None},
        share_code=_unused_code(session, Clinic.share_code),
        mrn_required=data.mrn_required,
        mrn_unique=data.mrn_unique,
        patient_tags=data.patient_tags,
    )
    session.add(clinic)
    session.flush()
    if founder is not None:
        session.add(ClinicMember(clinic_id=clinic.id, user_id=founder.id, role="admin"))
        session.flush()
    record_event(session, actor=actor, action=AuditTag.CLINIC_CREATE, target=clinic.id)
    return clinic


def membership(session: Session, clinic_id: str, user: User) -> ClinicMember | None:
    """``user``'s membership of the clinic, if any."""
    return session.scalar(
        select(ClinicMember).where(ClinicMember.clinic_id == clinic_id, ClinicMember.user_id == user.id)
    )


def clinic_for(
    session: Session, clinic_id: str, user: User, *, admin: bool = False
) -> tuple[Clinic, ClinicMember]:
    """The clinic, for one of its members (404 for everyone else); ``admin``: admins only (403)."""
    clinic = session.get(Clinic, clinic_id) if len(clinic_id) <= ID_LENGTH else None
    member = None if clinic is None else membership(session, clinic.id, user)
    if clinic is None or member is None:
        msg = "no clinic with this id"
        raise ClinicNotFoundError(msg)
    if admin and member.role != "admin":
        msg = "only the clinic's admins may do this"
        raise NotClinicAdminError(msg)
    return clinic, member


def clinic_out(clinic: Clinic, role: str | None = None) -> ClinicOut:
    """A clinic as its members see it."""
    return ClinicOut(
        id=clinic.id,
        name=clinic.name,
        details=dict(clinic.details or {}),
        share_code=clinic.share_code,
        mrn_required=clinic.mrn_required,
        mrn_unique=clinic.mrn_unique,
        patient_tags=list(clinic.patient_tags or []),
        role="admin" if role == "admin" else "member" if role == "member" else None,
        created_at=clinic.created_at,
    )


def clinics_of(session: Session, user: User) -> list[ClinicOut]:
    """The clinics ``user`` is a member of, by name."""
    rows = session.execute(
        select(Clinic, ClinicMember.role)
        .join(ClinicMember, ClinicMember.clinic_id == Clinic.id)
        .where(ClinicMember.user_id == user.id)
        .order_by(Clinic.name)
    )
    return [clinic_out(clinic, role) for clinic, role in rows]


def update_clinic(session: Session, clinic: Clinic, changes: ClinicUpdate, *, actor: str) -> Clinic:
    """Change a clinic's name, details or settings."""
    fields = changes.model_dump(exclude_unset=True)
    details = dict(clinic.details or {})
    for key in _DETAIL_FIELDS:
        if key in fields:
            if fields[key] is None:
                details.pop(key, None)
            else:
                details[key] = fields[key]
    clinic.details = details
    for key in ("name", "mrn_required", "mrn_unique", "patient_tags"):
        if fields.get(key) is not None:
            setattr(clinic, key, fields[key])
    session.flush()
    record_event(
        session,
        actor=actor,
        action=AuditTag.CLINIC_UPDATE,
        target=clinic.id,
        details={"fields": sorted(fields)},
    )
    return clinic


def rotate_share_code(session: Session, clinic: Clinic, *, actor: str) -> str:
    """Give the clinic a new share code; the old one stops working at once."""
    clinic.share_code = _unused_code(session, Clinic.share_code)
    session.flush()
    record_event(session, actor=actor, action=AuditTag.CLINIC_CODE_ROTATE, target=clinic.id)
    return clinic.share_code


def add_member(session: Session, clinic: Clinic, user: User, role: str, *, actor: str) -> ClinicMember:
    """Make a clinician a member (or change their role)."""
    if user.role != "clinician":
        msg = "only clinicians can be members of a clinic"
        raise InvalidSharingError(msg)
    if role not in {"admin", "member"}:
        msg = "the role is admin or member"
        raise InvalidSharingError(msg)
    member = membership(session, clinic.id, user)
    if member is None:
        member = ClinicMember(clinic_id=clinic.id, user_id=user.id, role=role)
        session.add(member)
    else:
        member.role = role
    session.flush()
    record_event(
        session,
        actor=actor,
        action=AuditTag.MEMBER_ADD,
        target=user.id,
        details={"clinic": clinic.id, "role": role},
    )
    return member


def members(session: Session, clinic: Clinic) -> list[MemberOut]:
    """The clinic's clinicians."""
    rows = session.execute(
        select(ClinicMember, User)
        .join(User, User.id == ClinicMember.user_id)
        .where(ClinicMember.clinic_id == clinic.id)
    )
    out = [
        MemberOut(
            id=m.id,
            user_id=u.id,
            name=u.name,
            email=u.email,
            role="admin" if m.role == "admin" else "member",
            created_at=m.created_at,
        )
        for m, u in rows
    ]
    return sorted(out, key=lambda m: m.name.casefold())


def remove_member(session: Session, clinic: Clinic, member_id: str, *, actor: str) -> None:
    """Remove a clinician from the clinic (never its last admin)."""
    member = session.get(ClinicMember, member_id)
    if member is None or member.clinic_id != clinic.id:
        msg = "no such member"
        raise ClinicNotFoundError(msg)
    if member.role == "admin":
        admins = session.scalar(
            select(func.count()).where(ClinicMember.clinic_id == clinic.id, ClinicMember.role == "admin")
        )
        if (admins or 0) <= 1:
            msg = "a clinic keeps at least one admin; make someone else admin first"
            raise InvalidSharingError(msg)
    session.delete(member)
    session.flush()
    record_event(
        session,
        actor=actor,
        action=AuditTag.MEMBER_REMOVE,
        target=member.user_id,
        details={"clinic": clinic.id},
    )


# Shares ------------------------------------------------------------------------------------------


def grant(
    session: Session,
    patient: Patient,
    *,
    clinic: Clinic | None = None,
    user: User | None = None,
    permissions: list[str],
    actor: str,
    custodian: bool = False,
) -> Share:
    """Give a clinic or a person (exactly one) access to ``patient``'s data, or renew an ended share."""
    query = select(Share).where(Share.patient_id == patient.id)
    if clinic is not None:
        query = query.where(Share.clinic_id == clinic.id)
    elif user is not None:
        query = query.where(Share.user_id == user.id)
    else:  # pragma: no cover - callers give one of them
        msg = "a share needs a clinic or a person"
        raise InvalidSharingError(msg)
    share = session.scalar(query)
    if share is not None and share.revoked_at is None:
        msg = "already shared with them; change the permissions instead"
        raise AlreadySharedError(msg)
    if share is None:
        share = Share(
            patient_id=patient.id,
            clinic_id=None if clinic is None else clinic.id,
            user_id=None if user is None else user.id,
            created_by=actor,
        )
        session.add(share)
    share.permissions = permissions
    share.custodian = custodian
    share.revoked_at = None
    share.created_at = dt.datetime.now(dt.UTC)
    session.flush()
    record_event(
        session,
        actor=actor,
        action=AuditTag.SHARE_GRANT,
        patient_id=patient.id,
        target=share.id,
        details={"grantee": "clinic" if clinic is not None else "carepartner", "permissions": permissions},
    )
    return share


def share_with_clinic(
    session: Session, patient: Patient, code: str, permissions: Sequence[str] | None, *, actor: str
) -> Share:
    """Share ``patient``'s data with the clinic whose share code is ``code`` (any case, spaces)."""
    canonical = normalise_code(code)
    clinic = (
        None if canonical is None else session.scalar(select(Clinic).where(Clinic.share_code == canonical))
    )
    if clinic is None:
        msg = "no clinic has this share code; check it with your clinic"
        raise ShareCodeNotFoundError(msg)
    return grant(
        session,
        patient,
        clinic=clinic,
        permissions=_permissions(permissions, CLINIC_DEFAULT_PERMISSIONS),
        actor=actor,
    )


def share_out(session: Session, share: Share) -> ShareOut:
    """A share with the name of whoever it grants access to."""
    if share.clinic_id is not None:
        clinic = session.get(Clinic, share.clinic_id)
        name = "" if clinic is None else clinic.name
    else:
        user = session.get(User, share.user_id) if share.user_id else None
        name = "" if user is None else user.name
    return ShareOut(
        id=share.id,
        patient_id=share.patient_id,
        grantee="clinic" if share.clinic_id is not None else "carepartner",
        clinic_id=share.clinic_id,
        user_id=share.user_id,
        name=name,
        permissions=[p for p in SHARE_PERMISSIONS if p in share.permissions],
        custodian=share.custodian,
        created_at=share.created_at,
    )


def grants_of(session: Session, patient: Patient) -> list[Share]:
    """Everyone with access to the patient's data (active shares), oldest first."""
    return list(
        session.scalars(
            select(Share)
            .where(Share.patient_id == patient.id, Share.revoked_at.is_(None))
            .order_by(Share.created_at)
        )
    )


def shares_held_by(session: Session, user: User) -> list[Share]:
    """The care-partner shares ``user`` holds (patients who share with them)."""
    return list(session.scalars(select(Share).where(Share.user_id == user.id, Share.revoked_at.is_(None))))


def share_for_party(session: Session, share_id: str, user: User) -> tuple[Share, Patient]:
    """A share that ``user`` may end: the patient's own, one they hold, or their clinic's."""
    share = session.get(Share, share_id) if len(share_id) <= ID_LENGTH else None
    patient = None if share is None else session.get(Patient, share.patient_id)
    if share is None or patient is None or share.revoked_at is not None:
        raise ShareNotFoundError("no such share")
    if user.id in {patient.user_id, share.user_id}:
        return share, patient
    if share.clinic_id is not None and membership(session, share.clinic_id, user) is not None:
        return share, patient
    raise ShareNotFoundError("no such share")


def revoke_share(session: Session, share: Share, *, actor: str, now: dt.datetime | None = None) -> None:
    """End a share at once: the next request through it is refused."""
    share.revoked_at = _now(now)
    session.flush()
    record_event(
        session, actor=actor, action=AuditTag.SHARE_REVOKE, patient_id=share.patient_id, target=share.id
    )


def set_share_permissions(session: Session, share: Share, permissions: list[str], *, actor: str) -> Share:
    """Change what the grantee may do."""
    chosen = _permissions(permissions, ())
    if not chosen:
        msg = "give at least one permission, or stop sharing"
        raise InvalidSharingError(msg)
    share.permissions = chosen
    session.flush()
    record_event(
        session,
        actor=actor,
        action=AuditTag.SHARE_UPDATE,
        patient_id=share.patient_id,
        target=share.id,
        details={"permissions": share.permissions},
    )
    return share


# Invitations -------------------------------------------------------------------------------------


def _send(session: Session, settings: Settings, invitation: Invitation, token: str, text: str) -> None:
    if invitation.email is None:
        return
    link = public_url(settings, f"/invitations/accept?token={token}")
    days = INVITATION_VALIDITY.days
    queue_mail(
        session,
        settings,
        Mail(
            to=invitation.email,
            subject="You are invited to Glucoshare",
            body=f"Hello,\n\n{text}\n\nOpen this link to accept (valid {days} days, once):\n\n{link}\n",
        ),
    )
    invitation.sent_count += 1


def _invite(
    session: Session,
    *,
    kind: str,
    subject_id: str,
    email: str | None,
    actor: str,
    clinic_id: str | None = None,
    patient_id: str | None = None,
    permissions: list[str] | None = None,
    role: str | None = None,
    with_code: bool = False,
    now: dt.datetime | None = None,
) -> tuple[Invitation, str]:
    address = None
    if email is not None:
        try:
            address = normalise_email(email)
        except ValueError as exc:
            raise InvalidUserError(f"email: {exc}") from None
    token, token_digest = new_token()
    code = _unused_code(session, Invitation.code) if with_code else None
    invitation = Invitation(
        kind=kind,
        clinic_id=clinic_id,
        patient_id=patient_id,
        subject_id=subject_id,
        token_sha256=token_digest,
        code=code,
        permissions=permissions or [],
        role=role,
        expires_at=_now(now) + INVITATION_VALIDITY,
        created_by=actor,
    )
    invitation.email = address
    session.add(invitation)
    session.flush()
    record_event(
        session,
        actor=actor,
        action=AuditTag.INVITATION_SEND,
        patient_id=patient_id,
        target=invitation.id,
        details={"kind": kind},
    )
    return invitation, token


def invite_care_partner(
    session: Session,
    settings: Settings,
    patient: Patient,
    email: str,
    permissions: Sequence[str] | None,
    *,
    actor: str,
) -> Invitation:
    """Invite someone by e-mail to see (and, if granted, more) the patient's data; read-only by default."""
    invitation, token = _invite(
        session,
        kind="carepartner",
        subject_id=patient.id,
        email=email,
        actor=actor,
        patient_id=patient.id,
        permissions=_permissions(permissions, ("view",)),
    )
    _send(session, settings, invitation, token, f"{patient.name} invites you to follow their diabetes data.")
    return invitation


def invite_patient(
    session: Session, settings: Settings, clinic: Clinic, email: str | None, *, actor: str
) -> Invitation:
    """A clinic invites a patient to share with it: by e-mail, or printed with its code."""
    invitation, token = _invite(
        session,
        kind="patient",
        subject_id=clinic.id,
        email=email,
        actor=actor,
        clinic_id=clinic.id,
        permissions=list(CLINIC_DEFAULT_PERMISSIONS),
        with_code=True,
    )
    _send(
        session,
        settings,
        invitation,
        token,
        f"{clinic.name} invites you to share your diabetes data with them.",
    )
    return invitation


def invite_clinician(
    session: Session, settings: Settings, clinic: Clinic, email: str, role: str, *, actor: str
) -> Invitation:
    """An admin invites a clinician to the clinic's workspace."""
    if role not in {"admin", "member"}:
        msg = "the role is admin or member"
        raise InvalidSharingError(msg)
    invitation, token = _invite(
        session,
        kind="clinician",
        subject_id=clinic.id,
        email=email,
        actor=actor,
        clinic_id=clinic.id,
        role=role,
    )
    _send(session, settings, invitation, token, f"{clinic.name} invites you to its Glucoshare workspace.")
    return invitation


def invitation_out(invitation: Invitation, now: dt.datetime | None = None) -> InvitationOut:
    """An invitation as its sender sees it."""
    moment = _now(now)
    status = (
        "accepted"
        if invitation.accepted_at is not None
        else "revoked"
        if invitation.revoked_at is not None
        else "expired"
        if moment >= invitation.expires_at
        else "pending"
    )
    return InvitationOut(
        id=invitation.id,
        kind=invitation.kind,
        clinic_id=invitation.clinic_id,
        patient_id=invitation.patient_id,
        email=invitation.email,
        code=invitation.code,
        permissions=list(invitation.permissions),
        role=invitation.role,
        expires_at=invitation.expires_at,
        status=status,
        created_at=invitation.created_at,
    )


def _usable(invitation: Invitation | None, now: dt.datetime) -> Invitation:
    if (
        invitation is None
        or invitation.accepted_at is not None
        or invitation.revoked_at is not None
        or now >= invitation.expires_at
    ):
        msg = "this invitation is invalid, used or expired; ask for a new one"
        raise InvitationInvalidError(msg)
    return invitation


def find_invitation(
    session: Session, *, token: str | None = None, code: str | None = None, now: dt.datetime | None = None
) -> Invitation:
    """A usable invitation by its link token or its printed code."""
    moment = _now(now)
    invitation = None
    if token:
        invitation = session.scalar(select(Invitation).where(Invitation.token_sha256 == digest(token)))
    elif code:
        canonical = normalise_code(code)
        if canonical is not None:
            invitation = session.scalar(
                select(Invitation).where(Invitation.code == canonical, Invitation.kind == "patient")
            )
    return _usable(invitation, moment)


def accept_invitation(
    session: Session, user: User, invitation: Invitation, *, actor: str, now: dt.datetime | None = None
) -> Share | ClinicMember:
    """Accept an invitation as ``user``: the share or membership it offers starts now.

    Invitations sent by e-mail are for that address only; a printed clinic invitation is for the
    patient who types its code.
    """
    moment = _now(now)
    _usable(invitation, moment)
    if invitation.email_lookup is not None and invitation.email_lookup != user.email_lookup:
        msg = "this invitation was sent to another e-mail address; sign in with that one"
        raise InvitationInvalidError(msg)
    result: Share | ClinicMember
    if invitation.kind == "carepartner":
        patient = session.get(Patient, invitation.patient_id) if invitation.patient_id else None
        if patient is None or patient.user_id == user.id:
            raise InvitationInvalidError("this invitation cannot be accepted by its own sender")
        result = grant(session, patient, user=user, permissions=list(invitation.permissions), actor=actor)
    elif invitation.kind == "patient":
        patient = own_patient(session, user)
        clinic = session.get(Clinic, invitation.clinic_id) if invitation.clinic_id else None
        if patient is None or clinic is None:
            raise InvitationInvalidError("only a patient's own account can accept a clinic's invitation")
        result = grant(session, patient, clinic=clinic, permissions=list(invitation.permissions), actor=actor)
    elif invitation.kind == "clinician":
        clinic = session.get(Clinic, invitation.clinic_id) if invitation.clinic_id else None
        if clinic is None or user.role != "clinician":
            raise InvitationInvalidError("only a clinician's account can join a clinic")
        result = add_member(session, clinic, user, invitation.role or "member", actor=actor)
    else:
        raise InvitationInvalidError("this invitation is accepted from its link, with the birth date")
    invitation.accepted_at = moment
    invitation.accepted_by = user.id
    session.flush()
    record_event(
        session,
        actor=actor,
        action=AuditTag.INVITATION_ACCEPT,
        patient_id=invitation.patient_id,
        target=invitation.id,
        details={"kind": invitation.kind},
    )
    return result


def pending_invitations_for(session: Session, user: User, now: dt.datetime | None = None) -> list[Invitation]:
    """Invitations sent to ``user``'s address that they have not answered yet."""
    moment = _now(now)
    rows = session.scalars(
        select(Invitation).where(
            Invitation.email_lookup == user.email_lookup,
            Invitation.accepted_at.is_(None),
            Invitation.revoked_at.is_(None),
            Invitation.expires_at > moment,
            Invitation.kind != "claim",
        )
    )
    return list(rows)


def invitation_for_sender(session: Session, invitation_id: str, user: User) -> Invitation:
    """An invitation ``user`` sent (as the patient, or as a member of the inviting clinic)."""
    invitation = session.get(Invitation, invitation_id) if len(invitation_id) <= ID_LENGTH else None
    if invitation is not None:
        if invitation.kind == "carepartner" and invitation.patient_id is not None:
            patient = session.get(Patient, invitation.patient_id)
            if patient is not None and patient.user_id == user.id:
                return invitation
        elif invitation.clinic_id is not None and membership(session, invitation.clinic_id, user) is not None:
            return invitation
    msg = "no such invitation"
    raise InvitationNotFoundError(msg)


def revoke_invitation(session: Session, invitation: Invitation, *, actor: str) -> None:
    """Withdraw an invitation: its link and code stop working at once."""
    invitation.revoked_at = invitation.revoked_at or dt.datetime.now(dt.UTC)
    session.flush()
    record_event(
        session,
        actor=actor,
        action=AuditTag.INVITATION_REVOKE,
        patient_id=invitation.patient_id,
        target=invitation.id,
    )


def resend_invitation(
    session: Session, settings: Settings, invitation: Invitation, *, actor: str
) -> Invitation:
    """Send an invitation again with a new link, valid 7 more days (the old link stops working)."""
    if invitation.accepted_at is not None or invitation.revoked_at is not None:
        msg = "this invitation was already answered or withdrawn"
        raise InvitationInvalidError(msg)
    token, token_digest = new_token()
    invitation.token_sha256 = token_digest
    invitation.expires_at = dt.datetime.now(dt.UTC) + INVITATION_VALIDITY
    _send(session, settings, invitation, token, "This is a reminder of your invitation to Glucoshare.")
    session.flush()
    record_event(
        session,
        actor=actor,
        action=AuditTag.INVITATION_SEND,
        patient_id=invitation.patient_id,
        target=invitation.id,
        details={"kind": invitation.kind, "resent": True},
    )
    return invitation


# Clinic-created accounts -------------------------------------------------------------------------


def mrn_lookup(session: Session, clinic_id: str, mrn: str) -> str:
    """The keyed hash that finds a patient by the MRN a clinic gave them (MRNs are upper case)."""
    return lookup_hash(session, f"mrn:{clinic_id}:{mrn.strip().upper()}")


def _check_mrn(
    session: Session, clinic: Clinic, mrn: str | None, patient_id: str | None = None
) -> str | None:
    if mrn is None:
        if clinic.mrn_required:
            raise InvalidSharingError("mrn: this clinic requires an MRN")
        return None
    lookup = mrn_lookup(session, clinic.id, mrn)
    if clinic.mrn_unique:
        other = session.scalar(
            select(Share.patient_id).where(
                Share.clinic_id == clinic.id, Share.mrn_lookup == lookup, Share.revoked_at.is_(None)
            )
        )
        if other is not None and other != patient_id:
            raise MrnTakenError("another patient of this clinic has this MRN")
    return lookup


def create_custodial_patient(
    session: Session, settings: Settings, clinic: Clinic, data: CustodialPatientCreate, *, actor: str
) -> tuple[Patient, Share]:
    """A patient account the clinic holds in custody; an e-mail address gets a link to claim it."""
    lookup = _check_mrn(session, clinic, data.mrn)
    if data.email is None:
        placeholder = f"custodial+{new_code().replace('-', '').lower()}{PLACEHOLDER_DOMAIN}"
    patient = add_patient(
        session,
        validate_patient(
            email=data.email if data.email is not None else placeholder,
            name=data.name,
            birthdate=data.birthdate,
            timezone=data.timezone,
            display_units=data.display_units,
        ),
    )
    share = grant(
        session, patient, clinic=clinic, permissions=list(CUSTODIAL_PERMISSIONS), actor=actor, custodian=True
    )
    share.mrn = data.mrn
    share.mrn_lookup = lookup
    session.flush()
    record_event(
        session, actor=actor, action=AuditTag.CUSTODIAL_CREATE, patient_id=patient.id, target=patient.id
    )
    if data.email is not None:
        send_claim_link(session, settings, clinic, patient, data.email, actor=actor)
    return patient, share


def send_claim_link(
    session: Session, settings: Settings, clinic: Clinic, patient: Patient, email: str, *, actor: str
) -> Invitation:
    """E-mail the patient a link to take over the account the clinic made for them."""
    if patient.user_id is not None:
        raise InvalidSharingError("this patient already has their own account")
    invitation, token = _invite(
        session,
        kind="claim",
        subject_id=clinic.id,
        email=email,
        actor=actor,
        clinic_id=clinic.id,
        patient_id=patient.id,
    )
    link = public_url(settings, f"/claim?token={token}")
    queue_mail(
        session,
        settings,
        Mail(
            to=str(invitation.email),
            subject="Your Glucoshare account is ready for you",
            body=(
                f"Hello,\n\n{clinic.name} keeps your diabetes data in Glucoshare. Take over your account "
                f"(you will confirm your birth date and choose a password):\n\n{link}\n\n"
                f"The link works once, within {INVITATION_VALIDITY.days} days.\n"
            ),
        ),
    )
    invitation.sent_count += 1
    session.flush()
    return invitation


def claim_account(
    session: Session, *, token: str, birthdate: dt.date, password: str, now: dt.datetime | None = None
) -> User:
    """Take over a clinic-created account: the birth date must match; the clinic keeps its access."""
    invitation = session.scalar(
        select(Invitation).where(Invitation.token_sha256 == digest(token), Invitation.kind == "claim")
    )
    invitation = _usable(invitation, _now(now))
    patient = session.get(Patient, invitation.patient_id) if invitation.patient_id else None
    if patient is None or patient.user_id is not None or patient.birthdate != birthdate:
        raise InvitationInvalidError("this link and birth date do not match an account waiting to be claimed")
    address = str(invitation.email)
    user = add_user(session, validate_user(email=address, name=patient.name, role="patient"), password)
    user.email_verified_at = _now(now)  # the link arrived at this address
    patient.user_id = user.id
    patient.email = address
    for share in session.scalars(
        select(Share).where(Share.patient_id == patient.id, Share.custodian.is_(True))
    ):
        share.custodian = False  # the patient controls sharing now; the clinic keeps what it had
    invitation.accepted_at = _now(now)
    invitation.accepted_by = user.id
    session.flush()
    record_event(
        session,
        actor=f"user:{user.id}",
        action=AuditTag.CUSTODIAL_CLAIM,
        patient_id=patient.id,
        target=patient.id,
    )
    return user


def update_clinic_patient(
    session: Session, clinic: Clinic, share: Share, changes: ClinicPatientUpdate, *, actor: str
) -> Share:
    """Set the clinic's MRN or tags of one of its patients."""
    fields = changes.model_dump(exclude_unset=True)
    if "mrn" in fields:
        share.mrn_lookup = _check_mrn(session, clinic, changes.mrn, share.patient_id)
        share.mrn = changes.mrn
    if changes.tags is not None:
        unknown = set(changes.tags) - set(clinic.patient_tags or [])
        if unknown:
            raise InvalidSharingError(f"tags {sorted(unknown)} are not among the clinic's tags")
        share.tags = changes.tags
    session.flush()
    record_event(
        session,
        actor=actor,
        action=AuditTag.CLINIC_PATIENT_UPDATE,
        patient_id=share.patient_id,
        target=share.id,
        details={"fields": sorted(fields)},
    )
    return share


def clinic_share(session: Session, clinic: Clinic, patient_id: str) -> Share:
    """The clinic's active share of a patient (404 when the patient does not share with it)."""
    share = (
        session.scalar(
            select(Share).where(
                Share.clinic_id == clinic.id, Share.patient_id == patient_id, Share.revoked_at.is_(None)
            )
        )
        if len(patient_id) <= ID_LENGTH
        else None
    )
    if share is None:
        raise PatientNotFoundError("no patient with this id")
    return share


def mark_reviewed(
    session: Session, share: Share, user: User, *, actor: str, now: dt.datetime | None = None
) -> Share:
    """Record that a clinician reviewed the patient's data now."""
    share.last_reviewed_at = _now(now)
    share.last_reviewed_by = user.id
    session.flush()
    record_event(
        session,
        actor=actor,
        action=AuditTag.CLINIC_PATIENT_REVIEW,
        patient_id=share.patient_id,
        target=share.id,
    )
    return share


REMINDER_INTERVAL = dt.timedelta(hours=20)
"""At most one upload reminder a day per patient and clinic."""


def remind_to_upload(
    session: Session,
    settings: Settings,
    clinic: Clinic,
    share: Share,
    *,
    actor: str,
    now: dt.datetime | None = None,
) -> bool:
    """E-mail the patient a reminder to upload (devices keep only about 90 days); once a day at most.

    Returns ``False`` when the patient has no address to write to (a clinic-created account).
    """
    moment = _now(now)
    if share.last_reminder_at is not None and moment - share.last_reminder_at < REMINDER_INTERVAL:
        msg = "this patient was reminded less than a day ago"
        raise ReminderTooSoonError(msg)
    patient = session.get(Patient, share.patient_id)
    address = None if patient is None else real_address(patient.email)
    if patient is None or address is None:
        return False
    queue_mail(
        session,
        settings,
        Mail(
            to=address,
            subject=f"{clinic.name}: time to upload your diabetes devices",
            body=(
                f"Hello {patient.name},\n\n{clinic.name} has not seen new data from your devices for a "
                "while. Meters, sensors and pumps keep only about 90 days of readings, so please upload them "
                f"soon:\n\n{public_url(settings, '/upload')}\n"
            ),
        ),
    )
    share.last_reminder_at = moment
    session.flush()
    record_event(
        session, actor=actor, action=AuditTag.UPLOAD_REMINDER, patient_id=share.patient_id, target=share.id
    )
    return True

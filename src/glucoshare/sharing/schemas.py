"""Inputs and outputs of the sharing domain."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

SharePermission = Literal["view", "upload", "manage_devices", "note"]
MemberRole = Literal["admin", "member"]
PLACEHOLDER_DOMAIN = "@patients.invalid"
"""Clinic-created patients without an address get one in this reserved domain (RFC 2606)."""
MAX_TAGS = 50
_TAG_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_+>< ")


def real_address(email: str | None) -> str | None:
    """A patient's address, or ``None`` for the placeholder of a clinic-created patient without one."""
    return None if email is None or email.endswith(PLACEHOLDER_DOMAIN) else email


def check_tags(tags: list[str]) -> list[str]:
    """Tags: at most 50, each 1–20 letters, digits, spaces or ``-_+><`` (Tidepool's rule)."""
    cleaned = sorted({t.strip() for t in tags})
    if len(cleaned) > MAX_TAGS:
        msg = f"at most {MAX_TAGS} tags"
        raise ValueError(msg)
    for tag in cleaned:
        if not 1 <= len(tag) <= 20 or not set(tag) <= _TAG_CHARS:  # noqa: PLR2004
            msg = f"tag {tag!r}: 1–20 letters, digits, spaces or -_+><"
            raise ValueError(msg)
    return cleaned


def check_mrn(value: str | None) -> str | None:
    """A medical record number: 1–25 letters and digits (upper-cased), or nothing."""
    if value is None or not value.strip():
        return None
    mrn = value.strip().upper()
    if not mrn.isalnum() or not mrn.isascii() or len(mrn) > 25:  # noqa: PLR2004
        msg = "an MRN has 1–25 letters and digits"
        raise ValueError(msg)
    return mrn


class ClinicCreate(BaseModel):
    """A new clinic."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    address: str | None = Field(default=None, max_length=500)
    country: str | None = Field(default=None, max_length=100)
    phone: str | None = Field(default=None, max_length=50)
    website: str | None = Field(default=None, max_length=200)
    mrn_required: bool = False
    mrn_unique: bool = True
    patient_tags: list[str] = Field(default_factory=list)

    _tags = field_validator("patient_tags")(check_tags)


class ClinicUpdate(BaseModel):
    """Changes to a clinic; fields left out stay as they are."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    address: str | None = Field(default=None, max_length=500)
    country: str | None = Field(default=None, max_length=100)
    phone: str | None = Field(default=None, max_length=50)
    website: str | None = Field(default=None, max_length=200)
    mrn_required: bool | None = None
    mrn_unique: bool | None = None
    patient_tags: list[str] | None = None

    @field_validator("patient_tags")
    @classmethod
    def _tags(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else check_tags(value)


class ClinicOut(BaseModel):
    """A clinic as its members see it."""

    id: str
    name: str
    details: dict[str, str]
    share_code: str
    mrn_required: bool
    mrn_unique: bool
    patient_tags: list[str]
    role: MemberRole | None = None
    """The caller's role in the clinic."""
    created_at: dt.datetime


class MemberOut(BaseModel):
    """A clinician of a clinic."""

    id: str
    user_id: str
    name: str
    email: str
    role: MemberRole
    created_at: dt.datetime


class ShareOut(BaseModel):
    """Who has access to a patient's data, and what they may do."""

    id: str
    patient_id: str
    grantee: Literal["clinic", "carepartner"]
    clinic_id: str | None
    user_id: str | None
    name: str
    """The clinic's or the care partner's name."""
    permissions: list[SharePermission]
    custodian: bool
    created_at: dt.datetime


class InvitationOut(BaseModel):
    """An invitation (its link never: only its code, for printed clinic invitations)."""

    id: str
    kind: Literal["carepartner", "patient", "clinician", "claim"]
    clinic_id: str | None
    patient_id: str | None
    email: str | None
    code: str | None
    permissions: list[SharePermission]
    role: MemberRole | None
    expires_at: dt.datetime
    status: Literal["pending", "accepted", "revoked", "expired"]
    created_at: dt.datetime


class CustodialPatientCreate(BaseModel):
    """A patient account a clinic creates for someone (who may claim it later)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    birthdate: dt.date
    mrn: str | None = Field(default=None, max_length=25)
    email: str | None = Field(default=None, max_length=320)
    timezone: str = Field(default="UTC", max_length=64)
    display_units: Literal["mg/dL", "mmol/L"] = "mg/dL"

    _mrn = field_validator("mrn")(check_mrn)


class ClinicPatientUpdate(BaseModel):
    """A clinic's own facts about a patient: MRN and tags."""

    model_config = ConfigDict(extra="forbid")

    mrn: str | None = Field(default=None, max_length=25)
    tags: list[str] | None = None

    _mrn = field_validator("mrn")(check_mrn)

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else check_tags(value)

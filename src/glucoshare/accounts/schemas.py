"""Validated inputs and outputs of the accounts domain."""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

DisplayUnits = Literal["mg/dL", "mmol/L"]

# A pragmatic address check: one @, no spaces, a dot in the domain. Deliverability is proven by the
# verification e-mail (accounts issue), not by a regular expression.
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MAX_EMAIL_LENGTH = 254  # RFC 5321 path limit
MAX_NAME_LENGTH = 200


def normalise_email(value: str) -> str:
    """Trim and lower-case an e-mail address; raise ``ValueError`` when it is not one."""
    email = value.strip().lower()
    if len(email) > MAX_EMAIL_LENGTH or not _EMAIL.match(email):
        msg = "not a valid e-mail address"
        raise ValueError(msg)
    return email


def check_timezone(value: str) -> str:
    """Return ``value`` when it names an IANA time zone; raise ``ValueError`` otherwise."""
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        msg = f"unknown time zone {value!r} (use an IANA name such as Europe/Berlin)"
        raise ValueError(msg) from exc
    return value


class PersonCreate(BaseModel):
    """The e-mail address and name every new person has (patient or account)."""

    model_config = ConfigDict(str_strip_whitespace=True)

    email: str
    name: str

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        return normalise_email(value)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not value or len(value) > MAX_NAME_LENGTH:
            msg = "a name of 1 to 200 characters is required"
            raise ValueError(msg)
        return value


class PatientCreate(PersonCreate):
    """What is needed to add a patient."""

    birthdate: dt.date | None = None
    timezone: str = "UTC"
    display_units: DisplayUnits = "mg/dL"

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        return check_timezone(value)

    @field_validator("birthdate")
    @classmethod
    def _birthdate(cls, value: dt.date | None) -> dt.date | None:
        if value is None:
            return None
        today = dt.datetime.now(dt.UTC).date()
        if value > today or value.year < today.year - 130:
            msg = "birth date must be in the past 130 years"
            raise ValueError(msg)
        return value


class PatientOut(BaseModel):
    """A patient as the command line and the API show it."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    email: str
    name: str
    birthdate: dt.date | None
    timezone: str
    display_units: DisplayUnits
    user_id: str | None = None
    created_at: dt.datetime


Role = Literal["patient", "clinician", "carepartner"]
ROLES: tuple[Role, ...] = ("patient", "clinician", "carepartner")


class UserCreate(PersonCreate):
    """What is needed to add an account."""

    role: Role


class UserOut(BaseModel):
    """An account as the command line and the API show it (never a secret or a hash)."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    email: str
    name: str
    role: Role
    has_password: bool
    has_second_factor: bool
    email_verified: bool
    created_at: dt.datetime


class TotpStartOut(BaseModel):
    """A TOTP secret offered for enrolment: scan the QR code (or type the secret), then confirm."""

    secret: str
    uri: str
    qr_svg: str
    """The ``otpauth://`` URI as an SVG QR code."""


class TotpEnrolmentOut(BaseModel):
    """A new second factor: the secret (for the authenticator app), its URI and the recovery codes.

    Shown once; only the secret (to check codes) and digests of the codes are kept.
    """

    secret: str
    uri: str
    recovery_codes: list[str]


class ProfileUpdate(BaseModel):
    """Changes to an account's profile; fields left out stay as they are."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=MAX_NAME_LENGTH)
    birthdate: dt.date | None = None
    timezone: str | None = None
    display_units: DisplayUnits | None = None
    target_scheme: Literal["standard", "older", "pregnancy", "custom"] | None = None
    target_low_mgdl: float | None = Field(default=None, ge=40, le=200)
    target_high_mgdl: float | None = Field(default=None, ge=80, le=400)

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str | None) -> str | None:
        return None if value is None else check_timezone(value)

    @field_validator("birthdate")
    @classmethod
    def _birthdate(cls, value: dt.date | None) -> dt.date | None:
        return None if value is None else PatientCreate._birthdate(value)  # noqa: SLF001 - one rule for both


class ProfileOut(BaseModel):
    """An account with the patient profile of a patient's own account."""

    user: UserOut
    patient: PatientOut | None
    target_scheme: str | None = None
    target_low_mgdl: float | None = None
    target_high_mgdl: float | None = None

"""Request and response bodies of the REST API that are not domain schemas."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from glucoshare.accounts.schemas import UserOut

Password = Field(min_length=1, max_length=1024)


class LoginIn(BaseModel):
    """``POST /v1/auth/login`` (CONTRACT.md)."""

    email: str = Field(max_length=320)
    password: str = Password
    totp: str | None = Field(default=None, max_length=64, description="TOTP or recovery code when enrolled.")


class LoginOut(BaseModel):
    """A new session: the bearer token (also set as the session cookie) and the account."""

    token: str
    csrf_token: str
    """Send as ``X-CSRF-Token`` with changes made through the session cookie."""
    expires_at: dt.datetime
    user: UserOut
    must_enrol_second_factor: bool


class SignUpIn(BaseModel):
    """A new patient or care-partner account."""

    email: str = Field(max_length=320)
    name: str = Field(min_length=1, max_length=200)
    password: str = Password
    role: Literal["patient", "carepartner"] = "patient"
    timezone: str = Field(default="UTC", max_length=64)
    display_units: Literal["mg/dL", "mmol/L"] = "mg/dL"


class Accepted(BaseModel):
    """A request taken; what follows arrives by e-mail."""

    detail: str


class TokenIn(BaseModel):
    """A single-use token from an e-mailed link."""

    token: str = Field(min_length=1, max_length=200)


class ResetConfirmIn(BaseModel):
    """A new password from a reset link (and the second factor when enrolled)."""

    token: str = Field(min_length=1, max_length=200)
    password: str = Password
    totp: str | None = Field(default=None, max_length=64)


class EmailIn(BaseModel):
    """An e-mail address."""

    email: str = Field(max_length=320)


class PasswordChangeIn(BaseModel):
    """A new password, with the current one."""

    current_password: str = Password
    new_password: str = Password


class EmailChangeIn(BaseModel):
    """A new e-mail address, with the password (and second factor when enrolled)."""

    new_email: str = Field(max_length=320)
    password: str = Password
    totp: str | None = Field(default=None, max_length=64)


class EmailChangeOut(BaseModel):
    """What opening an e-mail change link did."""

    confirmed: Literal["new", "old"]
    completed: bool


class TotpConfirmIn(BaseModel):
    """The secret being enrolled and a code the authenticator app shows for it."""

    secret: str = Field(min_length=16, max_length=64)
    code: str = Field(min_length=6, max_length=10)


class ReauthIn(BaseModel):
    """The password and (when enrolled) a second-factor code, for what cannot be undone."""

    model_config = ConfigDict(extra="forbid")

    password: str = Password
    totp: str | None = Field(default=None, max_length=64)


class SessionOut(BaseModel):
    """One signed-in session of the account."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    created_at: dt.datetime
    last_seen_at: dt.datetime
    expires_at: dt.datetime
    ip: str | None
    user_agent: str | None
    current: bool = False


class TokenCreateIn(BaseModel):
    """A new API token for the patient's apps."""

    kind: Literal["upload", "read", "nightscout"]
    roles: list[str] | None = Field(
        default=None,
        max_length=10,
        description=(
            "Nightscout roles instead of those of the kind (admin, readable, careportal, "
            "devicestatus-upload, activity, uploader, status-only)"
        ),
    )


class TokenCreatedOut(BaseModel):
    """A new API token: shown once, stored only as digests."""

    id: str
    kind: str
    token: str
    api_secret: str | None


class TokenOut(BaseModel):
    """An API token as listed (never its value)."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    kind: str
    roles: list[str] | None = Field(
        default=None, description="Nightscout roles of its own; null: the roles of its kind"
    )
    created_at: dt.datetime
    last_used_at: dt.datetime | None
    revoked_at: dt.datetime | None


class Health(BaseModel):
    """The server answers and reaches its database."""

    status: Literal["ok"]
    version: str

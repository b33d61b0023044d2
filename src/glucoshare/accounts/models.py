"""Tables of the accounts domain."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, BigInteger, Float, ForeignKey, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from glucoshare.db.base import Base, UTCDateTime, new_id, utcnow
from glucoshare.vault.sealed import OptionalSealedDate, OptionalSealedText, SealedText


class Patient(Base):
    """A person with diabetes whose device data Glucoshare holds.

    E-mail address, name and birth date are sealed with the patient's data key
    (:mod:`glucoshare.vault`); ``email_lookup`` is the keyed hash that finds the patient by address.
    """

    __tablename__ = "patients"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    email_lookup: Mapped[str] = mapped_column(String(64), unique=True)
    email_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    name_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    birthdate_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    email = SealedText("email_sealed", lookup_column="email_lookup")
    name = SealedText("name_sealed")
    birthdate = OptionalSealedDate("birthdate_sealed")
    timezone: Mapped[str] = mapped_column(String(64))
    display_units: Mapped[str] = mapped_column(String(8))
    target_scheme: Mapped[str] = mapped_column(String(16), default="standard", server_default="standard")
    """``standard``, ``older``, ``pregnancy`` or ``custom`` (:mod:`glucoshare.analytics.ranges`)."""
    target_low_mgdl: Mapped[float | None] = mapped_column(Float)
    target_high_mgdl: Mapped[float | None] = mapped_column(Float)
    """The ends of a custom target range (mg/dL, inclusive)."""
    user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), unique=True)
    """The patient's own account, when they sign in (clinic-created patients may have none)."""
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class User(Base):
    """Someone who signs in: a patient, a clinician or a care partner (one account per e-mail).

    E-mail address, name and the second factor's secret are sealed with the user's data key.
    """

    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    email_lookup: Mapped[str] = mapped_column(String(64), unique=True)
    email_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    name_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    email = SealedText("email_sealed", lookup_column="email_lookup")
    name = SealedText("name_sealed")
    role: Mapped[str] = mapped_column(String(16))
    """``patient``, ``clinician`` or ``carepartner``."""
    password_hash: Mapped[str | None] = mapped_column(String(255))
    """argon2id PHC string; ``None`` until a password is set (invited or clinic-created accounts)."""
    password_changed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    email_verified_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    totp_secret_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    totp_secret = OptionalSealedText("totp_secret_sealed")
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)
    """The last TOTP time step accepted: no code of it or an earlier step is taken again."""
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    @property
    def has_second_factor(self) -> bool:
        """Whether TOTP is enabled."""
        return self.totp_secret_sealed is not None


class RecoveryCode(Base):
    """A single-use recovery code of a user's second factor, stored as a digest."""

    __tablename__ = "recovery_codes"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    digest: Mapped[str] = mapped_column(String(64))
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class AuthSession(Base):
    """A signed-in session: server-side, found by the SHA-256 of its opaque token (never stored)."""

    __tablename__ = "auth_sessions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    """The absolute end of the session, whatever its activity."""
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(300))
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class ApiToken(Base):
    """A scoped token for an app or uploader, acting for one patient; stored as digests only.

    ``token_sha256`` finds a token presented as is; ``token_sha1`` one that a Nightscout client
    presents as its SHA-1 (xDrip+ does); ``secret_sha1`` the Nightscout API secret that clients send
    as its SHA-1 (``api-secret`` header).
    """

    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    """``upload``, ``read`` or ``nightscout`` (upload and read through the Nightscout API)."""
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    token_sha1: Mapped[str] = mapped_column(String(40), unique=True)
    secret_sha1: Mapped[str | None] = mapped_column(String(40), unique=True)
    created_by: Mapped[str] = mapped_column(String(254))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    roles: Mapped[list[str] | None] = mapped_column(JSON)
    """Nightscout roles (``admin``, ``readable``, ``careportal``, ``devicestatus-upload``...);
    ``None``: the roles of its ``kind`` (:mod:`glucoshare.accounts.roles`)."""


class LoginFailure(Base):
    """A failed sign-in, kept 15 minutes for throttling (shared by every server process)."""

    __tablename__ = "login_failures"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    account_key: Mapped[str] = mapped_column(String(64), index=True)
    """Keyed hash of the normalised e-mail address that was tried (known or not): no address stored."""
    ip: Mapped[str | None] = mapped_column(String(64), index=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class PasswordReset(Base):
    """A password-reset link: single use, valid 60 minutes, found by the SHA-256 of its token."""

    __tablename__ = "password_resets"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class EmailVerification(Base):
    """A link that proves an account's e-mail address: single use, valid 24 hours, stored hashed."""

    __tablename__ = "email_verifications"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class EmailChange(Base):
    """A change of an account's e-mail address, done once both addresses confirmed it (24 hours).

    The new address is sealed with the user's data key; the links are stored as digests.
    """

    __tablename__ = "email_changes"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    new_email_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    new_email = SealedText("new_email_sealed", subject="user_id")
    new_token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    old_token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    new_confirmed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    old_confirmed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    completed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

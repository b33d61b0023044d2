"""Who a Nightscout client is: its credential, the patient it acts for and its roles (nightscout.md §1.9).

Every Glucoshare credential belongs to one patient, so the credential alone says whose data a
request reads or writes (Loop drops any path prefix of the site's address, so the patient cannot
be in the path). Accepted, as Nightscout clients send them:

* the API secret of a ``nightscout`` token as its SHA-1 (``api-secret`` header, ``?secret=``, a
  ``secret`` field of the body), also as the plain secret where clients put it in the query
  string (tconnectsync); the plain secret is never logged (the access log drops query strings);
* an access token as it is (``?token=``, a ``token`` field, the ``api-secret`` header,
  ``Authorization: Bearer``), as its SHA-1 (xDrip+ hashes what is in its URL), or as
  ``token=<token>`` in the ``api-secret`` header (py-nightscout);
* a JWT from ``/api/v2/authorization/request/<token>`` as ``Authorization: Bearer`` (8 hours).

Revoking the token ends its secret and its JWTs at once (each use looks the token up again).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from collections.abc import Iterable
from typing import Any, Final

import jwt
from sqlalchemy.orm import Session

from glucoshare.accounts.models import ApiToken, Patient
from glucoshare.accounts.roles import allows, permissions, token_roles
from glucoshare.accounts.sessions import InvalidTokenError, resolve_api_token
from glucoshare.nightscout.errors import CredentialMissingError, RoleMissingError
from glucoshare.vault.keyfile import KeyRing

JWT_LIFETIME: Final = dt.timedelta(hours=8)
_JWT_ALGORITHM: Final = "HS256"
_JWT_PURPOSE: Final = "nightscout-jwt"


@dataclasses.dataclass(frozen=True, slots=True)
class NightscoutCaller:
    """An authenticated Nightscout client: its token, the patient and what it may do."""

    token: ApiToken
    patient: Patient
    roles: tuple[str, ...]
    permissions: frozenset[str]

    @property
    def actor(self) -> str:
        """How the audit trail names the caller."""
        return f"token:{self.token.id}"

    def may(self, permission: str) -> bool:
        """True when the caller's roles grant ``permission`` (``api:entries:read``...)."""
        return allows(self.permissions, permission)

    def require(self, permission: str) -> None:
        """Raise :class:`RoleMissingError` unless the caller may ``permission``."""
        if not self.may(permission):
            msg = f"this credential's roles ({', '.join(self.roles) or 'none'}) do not allow {permission}"
            raise RoleMissingError(msg)


@dataclasses.dataclass(frozen=True, slots=True)
class Presented:
    """The credentials a request carries, wherever the client put them."""

    api_secret_header: str | None = None
    bearer: str | None = None
    query_secret: str | None = None
    query_token: str | None = None
    body_secret: str | None = None
    body_token: str | None = None

    def any(self) -> bool:
        """True when the request carries any credential."""
        return any(dataclasses.astuple(self))


def _signing_key(ring: KeyRing) -> bytes:
    return ring.mac(_JWT_PURPOSE, "signing-key-1").encode()


def _sha1(text: str) -> str:
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()


def _candidates(presented: Presented) -> Iterable[str]:
    """Every value that may be a token, its SHA-1, or an API secret's SHA-1 (or the secret itself)."""
    for value in (
        presented.api_secret_header,
        presented.query_secret,
        presented.body_secret,
        presented.query_token,
        presented.body_token,
        presented.bearer,
    ):
        if not value:
            continue
        text = value.strip()
        if text.startswith("token="):
            text = text.removeprefix("token=")
        yield text
        if len(text) != 40:  # noqa: PLR2004 - not a SHA-1: perhaps the plain secret
            yield _sha1(text)


def _caller(session: Session, token: ApiToken) -> NightscoutCaller:
    patient = session.get(Patient, token.patient_id)
    if patient is None:  # pragma: no cover - tokens go with their patient (ON DELETE CASCADE)
        msg = "the credential's patient no longer exists"
        raise CredentialMissingError(msg)
    roles = token_roles(token.kind, token.roles)
    return NightscoutCaller(token=token, patient=patient, roles=roles, permissions=permissions(roles))


def authenticate(session: Session, ring: KeyRing, presented: Presented) -> NightscoutCaller:
    """The caller behind the request's credentials; :class:`CredentialMissingError` when none is valid."""
    if presented.bearer and presented.bearer.count(".") == 2:  # noqa: PLR2004 - a JWT has three parts
        return _caller(session, _jwt_token(session, ring, presented.bearer))
    for candidate in _candidates(presented):
        try:
            return _caller(session, resolve_api_token(session, candidate))
        except InvalidTokenError:
            continue
    msg = "Unauthorized: missing or invalid API secret or access token"
    raise CredentialMissingError(msg)


def issue_jwt(ring: KeyRing, caller: NightscoutCaller, now: dt.datetime) -> dict[str, Any]:
    """The answer of ``/api/v2/authorization/request/<token>``: a JWT valid 8 hours, and its claims."""
    issued = int(now.timestamp())
    expires = int((now + JWT_LIFETIME).timestamp())
    claims = {"tid": caller.token.id, "sub": f"token-{caller.token.id[:8]}", "iat": issued, "exp": expires}
    encoded = jwt.encode(claims, _signing_key(ring), algorithm=_JWT_ALGORITHM)
    return {
        "token": encoded,
        "sub": claims["sub"],
        "permissionGroups": [sorted(caller.permissions)],
        "iat": issued,
        "exp": expires,
    }


def _jwt_token(session: Session, ring: KeyRing, encoded: str) -> ApiToken:
    try:
        claims = jwt.decode(
            encoded, _signing_key(ring), algorithms=[_JWT_ALGORITHM], options={"require": ["exp", "tid"]}
        )
    except jwt.PyJWTError:
        msg = "Unauthorized: the JWT is invalid or has expired; request a new one"
        raise CredentialMissingError(msg) from None
    token = session.get(ApiToken, str(claims["tid"]))
    if token is None or token.revoked_at is not None:
        msg = "Unauthorized: the JWT's access token was revoked"
        raise CredentialMissingError(msg)
    return token


def require_any(caller: NightscoutCaller, wanted: Iterable[str]) -> None:
    """Raise :class:`RoleMissingError` unless the caller holds one of the permissions."""
    wanted = tuple(wanted)
    if not any(caller.may(permission) for permission in wanted):
        caller.require(wanted[0])

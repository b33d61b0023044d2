"""Who is asking: a signed-in person (a session) or an app (an API token).

Which patients a principal may reach is decided by :mod:`glucoshare.sharing.access`.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from glucoshare.accounts.models import ApiToken, Patient, User
from glucoshare.errors import PermissionDeniedError

Permission = Literal["view", "upload", "manage_devices", "note", "manage"]
"""``view`` data and reports, ``upload`` data, ``manage_devices`` (assign, rename), ``note`` (add
notes), ``manage`` the patient's account itself (its sharing and tokens: the patient, or the clinic
that holds an unclaimed account in custody)."""

TOKEN_SCOPES: dict[str, frozenset[Permission]] = {
    "read": frozenset({"view"}),
    "upload": frozenset({"upload"}),
    "nightscout": frozenset({"view", "upload"}),
}


class PersonRequiredError(PermissionDeniedError):
    """An API token was used for something only a signed-in person may do."""

    code = "person_required"


class SecondFactorRequiredError(PermissionDeniedError):
    """A clinician signed in without a second factor: they must enrol one first."""

    code = "second_factor_required"


@dataclasses.dataclass(frozen=True, slots=True)
class Principal:
    """The caller of one request."""

    user: User | None
    token: ApiToken | None = None
    session_id: str | None = None
    must_enrol_second_factor: bool = False

    @property
    def actor(self) -> str:
        """How the audit trail names the caller (ids only, never an address)."""
        if self.user is not None:
            return f"user:{self.user.id}"
        if self.token is not None:
            return f"token:{self.token.id}"
        return "anonymous"

    def person(self, *, enrolling: bool = False) -> User:
        """The signed-in person; API tokens and clinicians without a second factor are refused.

        ``enrolling`` allows the second-factor enrolment itself.
        """
        if self.user is None:
            msg = "this needs a signed-in person, not an app token"
            raise PersonRequiredError(msg)
        if self.must_enrol_second_factor and not enrolling:
            msg = "clinicians must set up a second factor before anything else"
            raise SecondFactorRequiredError(msg)
        return self.user


def own_patient(session: Session, user: User) -> Patient | None:
    """The patient record of a patient's own account."""
    return session.scalar(select(Patient).where(Patient.user_id == user.id))

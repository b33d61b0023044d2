"""Errors of the accounts domain."""

from glucoshare.errors import (
    ConflictError,
    InputError,
    NotFoundError,
    PermissionDeniedError,
    UnauthenticatedError,
)


class PatientNotFoundError(NotFoundError):
    """No patient has this e-mail address or id."""

    code = "patient_not_found"


class PatientExistsError(ConflictError):
    """A patient with this e-mail address already exists."""

    code = "patient_exists"


class InvalidPatientError(InputError):
    """A patient field is invalid (e-mail, time zone, units, birth date)."""

    code = "invalid_patient"


class UserNotFoundError(NotFoundError):
    """No account has this e-mail address or id."""

    code = "user_not_found"


class UserExistsError(ConflictError):
    """An account with this e-mail address already exists."""

    code = "user_exists"


class InvalidUserError(InputError):
    """An account field is invalid (e-mail, name, role)."""

    code = "invalid_user"


class WeakPasswordError(InputError):
    """The password breaks a rule of :mod:`glucoshare.accounts.passwords`."""

    code = "weak_password"


class AuthenticationError(UnauthenticatedError):
    """Wrong credentials, or a missing or wrong second factor: one answer for every case."""

    code = "authentication_failed"


class InvalidSecondFactorError(InputError):
    """A second-factor code that does not match the secret being enrolled."""

    code = "invalid_second_factor"


class SecondFactorMandatoryError(PermissionDeniedError):
    """The account's role requires a second factor."""

    code = "second_factor_mandatory"

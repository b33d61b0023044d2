"""Errors of the accounts domain."""

from glucoshare.errors import ConflictError, InputError, NotFoundError


class PatientNotFoundError(NotFoundError):
    """No patient has this e-mail address or id."""

    code = "patient_not_found"


class PatientExistsError(ConflictError):
    """A patient with this e-mail address already exists."""

    code = "patient_exists"


class InvalidPatientError(InputError):
    """A patient field is invalid (e-mail, time zone, units, birth date)."""

    code = "invalid_patient"

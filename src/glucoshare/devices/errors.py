"""Errors of the devices domain."""

from glucoshare.errors import ConflictError


class DeviceOwnedByAnotherPatientError(ConflictError):
    """The device (or one of its parts) already belongs to another patient."""

    code = "device_of_another_patient"

"""Errors of the vault: a missing, unreadable or wrong master key."""

from __future__ import annotations

from glucoshare.errors import InputError, InternalError


class MasterKeyError(InternalError):
    """The master key file is missing, unreadable or not a Glucoshare key file."""

    code = "master_key_error"


class WrongMasterKeyError(MasterKeyError):
    """A data key was wrapped by a master key that the key file does not hold."""

    code = "wrong_master_key"


class SealBrokenError(InternalError):
    """A sealed value does not open: it was altered, moved to another row, or its key is gone."""

    code = "seal_broken"


class KeyRotationError(InputError):
    """A key rotation cannot be carried out as asked."""

    code = "key_rotation"

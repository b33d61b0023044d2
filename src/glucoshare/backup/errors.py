"""Errors of backup and restore: a file that is no backup, a damaged one, the wrong key, a target in use."""

from __future__ import annotations

from glucoshare.errors import ConflictError, InputError, InternalError, UnreadableFileError


class NotABackupError(InputError):
    """The file is not a Glucoshare backup."""

    code = "not_a_backup"


class BackupDamagedError(UnreadableFileError):
    """A Glucoshare backup that is truncated, or whose content changed after it was written."""

    code = "backup_damaged"


class StreamDamagedError(BackupDamagedError):
    """One encrypted member of a backup does not open: a chunk fails authentication or is missing."""

    def __init__(self, member: str, chunk: int, reason: str, *, what: str | None = None) -> None:
        named = f"{member} ({what})" if what else member
        super().__init__(f"the backup is damaged or was altered: member {named} chunk {chunk} {reason}")
        self.member = member
        self.chunk = chunk


class BackupKeyError(InputError):
    """The configured master key file is missing or is not the one the backup was made with."""

    code = "backup_key_mismatch"


class BackupVersionError(InputError):
    """The backup was made at another schema revision than this Glucoshare's."""

    code = "backup_version"


class BackupDestinationError(InputError):
    """The backup cannot be written where it was asked to go."""

    code = "backup_destination"


class RestoreTargetError(ConflictError):
    """The database (or data directory) to restore into already holds data."""

    code = "restore_target_not_empty"


class RestoreRefusedError(InputError):
    """The database refused the backup's rows (nothing was stored)."""

    code = "restore_refused"


class RestoreVerificationError(InternalError):
    """The restored database does not match the backup's manifest (nothing was stored)."""

    code = "restore_verification"

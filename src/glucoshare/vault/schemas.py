"""Results of vault commands."""

from __future__ import annotations

from pydantic import BaseModel


class RotationOut(BaseModel):
    """What a master-key rotation did."""

    master_key: str
    """Id of the master key now in force."""
    rewrapped: int
    """Data keys re-wrapped under it."""
    retired: list[str]
    """Ids of the master keys removed from the key file."""

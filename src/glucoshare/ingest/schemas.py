"""Inputs of the ingest domain."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True, slots=True)
class IncomingFile:
    """A file to import: its name (for messages and provenance only) and its bytes."""

    name: str
    data: bytes

"""What the vault keeps in ``sealed_files``: the places of kept files, and their sealed bytes."""

from __future__ import annotations

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from glucoshare.db.session import session_scope
from glucoshare.vault.models import SealedFile, SealedFilePiece


def kept_places(source: Engine | Session, subject_id: str | None = None) -> set[str]:
    """The places of the files kept (of one subject, or all), e.g. ``raw:<patient>:<sha256>``."""
    query = select(SealedFile.place)
    if subject_id is not None:
        query = query.where(SealedFile.subject_id == subject_id)
    if isinstance(source, Session):
        return set(source.scalars(query))
    with session_scope(source) as session:
        return set(session.scalars(query))


def raw_place(patient_id: str, sha256: str) -> str:
    """The place of a patient's kept raw upload."""
    return f"raw:{patient_id}:{sha256}"


def sealed_bytes(session: Session, place: str) -> bytes | None:
    """The sealed bytes kept at ``place`` as they are stored (ciphertext, its pieces joined), or ``None``."""
    if session.get(SealedFile, place) is None:
        return None
    pieces = (
        select(SealedFilePiece.data).where(SealedFilePiece.place == place).order_by(SealedFilePiece.number)
    )
    return b"".join(session.scalars(pieces))

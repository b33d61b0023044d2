"""Tables of the vault: one wrapped data key per subject (a patient, a user or a clinic), and sealed files."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, ForeignKey, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from glucoshare.db.base import BULKY, Base, UTCDateTime, utcnow


class DataKey(Base):
    """A subject's AES-256 data key, wrapped (AES-256-GCM) by a master key that is not in the database.

    ``subject_id`` is the id of the patient or user whose identifying data the key seals; deleting
    the row destroys every value sealed with it (crypto-shredding), backups included.
    """

    __tablename__ = "data_keys"

    subject_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    master_key_id: Mapped[str] = mapped_column(String(32), index=True)
    wrapped: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    rewrapped_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class SealedFile(Base):
    """A file kept in the database, sealed with its subject's data key (AES-256-GCM, piece by piece).

    The raw bytes of an accepted upload (``raw:<patient>:<sha256>``) and a clinic's upload held for
    assignment (``pending:<clinic>:<id>``). Kept in the database rather than in a folder so that they
    commit and roll back with the rows that refer to them, and so that application servers hold no
    state of their own. ``place`` is also the associated data of the sealing: a file copied to another
    place does not open. The sealed bytes are the :class:`SealedFilePiece` rows, in order.
    """

    __tablename__ = "sealed_files"

    place: Mapped[str] = mapped_column(String(128), primary_key=True)
    subject_id: Mapped[str] = mapped_column(String(32), index=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    """The plaintext's size."""
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class SealedFilePiece(Base):
    """One piece (up to :data:`PIECE_BYTES`) of a kept file's sealed bytes.

    A file's pieces in ``number`` order make its one AES-256-GCM ciphertext, so a piece left out,
    repeated or moved does not open. Pieces let a large file be written and backed up a piece at
    a time: no process holds a second copy of a whole upload to keep it.
    """

    __tablename__ = "sealed_file_pieces"

    place: Mapped[str] = mapped_column(ForeignKey("sealed_files.place", ondelete="CASCADE"), primary_key=True)
    number: Mapped[int] = mapped_column(Integer, primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary, info=BULKY)


PIECE_BYTES = 1 << 20
"""The most sealed bytes one :class:`SealedFilePiece` holds."""

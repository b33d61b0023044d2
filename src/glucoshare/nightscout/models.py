"""Tables of the Nightscout-compatible API: the documents its clients posted, as they posted them."""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from glucoshare.db.base import Base


class NightscoutDocument(Base):
    """One document of a Nightscout collection, posted by an app for one patient.

    The document itself (every field the client sent, also those Glucoshare does not read) is
    sealed with the patient's data key: it is the raw row of the records mapped from it
    (``record_ids``: the records it added; a record another upload had already stored is not
    listed). ``identity`` is Nightscout's deduplication key within the patient's collection
    (entries: type and instant; treatments: the client's sync id, else instant and event type;
    device status, profiles and activity with a time of their own: their time and device, start or
    type; documents API v3 writes without another identity: ``v3|<identifier>``); ``None`` never
    deduplicates (food, device status without a time). ``time_ms`` is the instant of the collection's
    date field, ``kind`` the entry type or treatment event type (for filtering in SQL), and
    ``modified_ms`` the server's last change (Nightscout's ``srvModified``).
    """

    __tablename__ = "ns_documents"
    __table_args__ = (
        UniqueConstraint("patient_id", "collection", "identity", name="uq_ns_documents_identity"),
        Index("ix_ns_documents_time", "patient_id", "collection", "time_ms"),
        Index("ix_ns_documents_modified", "patient_id", "collection", "modified_ms"),
        Index("ix_ns_documents_identifier", "patient_id", "collection", "identifier"),
    )

    seq: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(24), unique=True)
    """The document's ``_id``: 24 lowercase hex digits, as Nightscout's ObjectIds."""
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id", ondelete="CASCADE"))
    collection: Mapped[str] = mapped_column(String(16))
    identity: Mapped[str | None] = mapped_column(String(160))
    identifier: Mapped[str | None] = mapped_column(String(160))
    """The document's own ``identifier`` field (API v3 finds documents by it), when it has one."""
    kind: Mapped[str] = mapped_column(String(40))
    time_ms: Mapped[int] = mapped_column(BigInteger)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    modified_ms: Mapped[int] = mapped_column(BigInteger)
    upload_seq: Mapped[int] = mapped_column(Integer)
    """The patient's continuous upload of the Nightscout API (``uploads.seq``)."""
    document_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    record_ids: Mapped[list[int]] = mapped_column(JSON, default=list)

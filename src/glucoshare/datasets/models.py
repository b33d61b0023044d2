"""Tables of data sets: the batches of records an app or uploader sent, kept as they arrived."""

from __future__ import annotations

from sqlalchemy import ForeignKey, Integer, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from glucoshare.db.base import Base


class DatasetBatch(Base):
    """One accepted request of records for a data set (an upload whose ``state`` is not ``file``).

    ``body_sealed`` is the request's ``records`` array as JSON, sealed with the patient's data
    key: the raw rows of the data set. Record ``n`` of the batch is line ``first_line + n`` of the
    data set (the records' ``source_line``). ``request_key`` is the client's ``Idempotency-Key``:
    a retried request with the same key is answered from the batch already stored.
    """

    __tablename__ = "dataset_batches"
    __table_args__ = (UniqueConstraint("upload_seq", "request_key", name="uq_dataset_batches_request"),)

    seq: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    upload_seq: Mapped[int] = mapped_column(ForeignKey("uploads.seq", ondelete="CASCADE"), index=True)
    first_line: Mapped[int] = mapped_column(Integer)
    count: Mapped[int] = mapped_column(Integer)
    new_count: Mapped[int] = mapped_column(Integer, default=0)
    request_key: Mapped[str | None] = mapped_column(String(100))
    body_sealed: Mapped[bytes] = mapped_column(LargeBinary)

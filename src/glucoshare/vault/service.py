"""Data keys of patients, users and clinics: create, unwrap, seal, open, destroy, rotate; kept files.

The key ring travels with the engine (:func:`bind_keyring`), so every session on a database seals
and opens with that database's master key. Services flush but never commit.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, delete, event, insert, select
from sqlalchemy.orm import Session

from glucoshare.db.base import utcnow
from glucoshare.db.upsert import upsert_into
from glucoshare.vault.cipher import new_key, seal, seal_into, unseal
from glucoshare.vault.errors import MasterKeyError, SealBrokenError
from glucoshare.vault.keyfile import (
    KeyRing,
    load_or_create,
    only_primary,
    read_key_file,
    with_new_primary,
    write_key_file,
)
from glucoshare.vault.models import PIECE_BYTES, DataKey, SealedFile, SealedFilePiece
from glucoshare.vault.schemas import RotationOut

UNWRAPPED_KEYS_KEPT = 50_000
"""How many unwrapped data keys a process keeps (the most recently used; about 15 MB)."""


class UnwrappedKeys:
    """The data keys a process has unwrapped, kept so that reading many patients does not unwrap each again.

    Keyed by subject and checked against the wrapped key read from the database on every use, so
    the database stays the truth: a key destroyed or rewrapped elsewhere is never served from here.
    The master key that unwraps them is in the same memory, so keeping them exposes nothing more.
    """

    def __init__(self, capacity: int = UNWRAPPED_KEYS_KEPT) -> None:
        self.capacity = capacity
        self._keys: OrderedDict[str, tuple[str, bytes, bytes]] = OrderedDict()
        self._lock = threading.Lock()

    def unwrap(self, ring: KeyRing, subject_id: str, master_key_id: str, wrapped: bytes) -> bytes:
        """The data key ``wrapped`` holds, unwrapped with ``ring`` unless kept from before."""
        with self._lock:
            kept = self._keys.get(subject_id)
            if kept is not None and kept[0] == master_key_id and kept[1] == wrapped:
                self._keys.move_to_end(subject_id)
                return kept[2]
        key = ring.unwrap(master_key_id, wrapped, subject_id)
        with self._lock:
            self._keys[subject_id] = (master_key_id, bytes(wrapped), key)
            self._keys.move_to_end(subject_id)
            while len(self._keys) > self.capacity:
                self._keys.popitem(last=False)
        return key

    def forget(self, subject_id: str) -> None:
        """Drop the kept key of ``subject_id`` (its key is destroyed)."""
        with self._lock:
            self._keys.pop(subject_id, None)

    def clear(self) -> None:
        """Drop every kept key (the master keys changed)."""
        with self._lock:
            self._keys.clear()

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, subject_id: object) -> bool:
        return subject_id in self._keys


@dataclasses.dataclass(slots=True)
class _BoundRing:
    """An engine's key ring and, when known, the key file it came from (re-read when it changes)."""

    ring: KeyRing
    key_file: Path | None = None
    stamp: tuple[int, int, int] | None = None
    unwrapped: UnwrappedKeys = dataclasses.field(default_factory=UnwrappedKeys)


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        info = path.stat()
    except OSError:
        return None
    return info.st_mtime_ns, info.st_size, info.st_ino


_RINGS: weakref.WeakKeyDictionary[Engine, _BoundRing] = weakref.WeakKeyDictionary()
_CACHE = "vault_data_keys"
SEALED_KEY = "sealed"
"""The one key of a sealed JSON mapping."""
_DESTROYED = "vault_destroyed_keys"


def bind_keyring(engine: Engine, ring: KeyRing, key_file: Path | None = None) -> None:
    """Use ``ring`` for every session on ``engine``.

    With ``key_file``, the ring is read again whenever the file changes, so that a long-running
    server follows a rotation (``glucoshare keys rotate``) made by another process.
    """
    _RINGS[engine] = _BoundRing(ring, key_file, None if key_file is None else _stamp(key_file))


def bound_keyring(engine: Engine) -> KeyRing | None:
    """The key ring bound to ``engine`` (re-read if its key file changed), if any."""
    bound = _RINGS.get(engine)
    if bound is None:
        return None
    if bound.key_file is not None:
        stamp = _stamp(bound.key_file)
        if stamp is not None and stamp != bound.stamp:
            bound.ring, bound.stamp = read_key_file(bound.key_file), stamp
            bound.unwrapped.clear()
    return bound.ring


def keyring_of(session: Session) -> KeyRing:
    """The key ring of the database ``session`` works on."""
    ring = bound_keyring(_engine(session))
    if ring is None:
        msg = "no master key is bound to this database (create the engine with its key ring)"
        raise MasterKeyError(msg)
    return ring


def unwrapped_keys(session: Session) -> UnwrappedKeys:
    """The process's kept data keys of the database ``session`` works on."""
    keyring_of(session)  # raises without a ring
    return _RINGS[_engine(session)].unwrapped


def _unwrap(session: Session, subject_id: str, master_key_id: str, wrapped: bytes) -> bytes:
    return unwrapped_keys(session).unwrap(keyring_of(session), subject_id, master_key_id, wrapped)


def _cache(session: Session) -> dict[str, bytes]:
    cache: dict[str, bytes] = session.info.setdefault(_CACHE, {})
    return cache


@event.listens_for(Session, "after_rollback")
def _forget_keys(session: Session) -> None:
    """Forget the keys a rolled-back transaction created (gone again) or destroyed (back again)."""
    session.info.pop(_CACHE, None)
    session.info.pop(_DESTROYED, None)


def was_destroyed(session: Session, subject_id: str) -> bool:
    """Whether ``session`` destroyed the data key of ``subject_id`` (:func:`destroy_data_key`)."""
    return subject_id in session.info.get(_DESTROYED, ())


def data_key(session: Session, subject_id: str) -> bytes:
    """The data key of ``subject_id``, created (and wrapped) on first use."""
    cache = _cache(session)
    key = cache.get(subject_id)
    if key is not None:
        return key
    if was_destroyed(session, subject_id):
        # Never a new key for an erased subject: nothing may be sealed for them again, and what
        # was sealed for them stays closed.
        msg = "a sealed value belongs to an erased patient or account: its key is gone"
        raise SealBrokenError(msg)
    row = session.get(DataKey, subject_id)
    if row is None:
        key = new_key()
        master_id, wrapped = keyring_of(session).wrap(key, subject_id)
        session.add(DataKey(subject_id=subject_id, master_key_id=master_id, wrapped=wrapped))
    else:
        key = _unwrap(session, subject_id, row.master_key_id, row.wrapped)
    cache[subject_id] = key
    return key


def preload_data_keys(session: Session, subject_ids: list[str]) -> None:
    """Unwrap the data keys of many subjects with a few queries (before opening their values)."""
    cache = _cache(session)
    kept = unwrapped_keys(session)
    ring = keyring_of(session)
    missing = [s for s in subject_ids if s not in cache]
    for start in range(0, len(missing), 500):
        chunk = missing[start : start + 500]
        rows = session.execute(
            select(DataKey.subject_id, DataKey.master_key_id, DataKey.wrapped).where(
                DataKey.subject_id.in_(chunk)
            )
        )
        for subject_id, master_key_id, wrapped in rows:
            cache[subject_id] = kept.unwrap(ring, subject_id, master_key_id, wrapped)


def remember_data_keys(session: Session, rows: Iterable[tuple[str, str, bytes]]) -> None:
    """Unwrap data keys the caller read itself and keep them for the session (like :func:`preload_data_keys`).

    ``rows`` are ``(subject, master key id, wrapped)``, typically joined into a larger query.
    """
    cache = _cache(session)
    kept = unwrapped_keys(session)
    ring = keyring_of(session)
    for subject_id, master_key_id, wrapped in rows:
        if subject_id not in cache:
            cache[subject_id] = kept.unwrap(ring, subject_id, master_key_id, wrapped)


def destroy_data_key(session: Session, subject_id: str) -> None:
    """Delete a subject's data key: what was sealed with it can never be opened again."""
    _cache(session).pop(subject_id, None)
    unwrapped_keys(session).forget(subject_id)
    destroyed: set[str] = session.info.setdefault(_DESTROYED, set())
    destroyed.add(subject_id)
    session.execute(delete(DataKey).where(DataKey.subject_id == subject_id))


def seal_value(session: Session, subject_id: str, plaintext: bytes, place: str) -> bytes:
    """Seal ``plaintext`` with the subject's data key for ``place`` (table, column and row)."""
    return seal(data_key(session, subject_id), plaintext, place)


def seal_file(session: Session, subject_id: str, plaintext: bytes, place: str) -> None:
    """Keep ``plaintext`` in the database at ``place``, sealed with the subject's data key.

    Sealed as one AES-256-GCM value (:func:`~glucoshare.vault.cipher.seal_into`), written a piece
    of up to :data:`~glucoshare.vault.models.PIECE_BYTES` at a time: no sealed copy of the whole
    file is held in memory. A file already kept at ``place`` stays as it is (a place names its
    content: the same file arriving again). The rows commit or roll back with the caller's
    transaction.
    """
    if session.get(SealedFile, place) is not None:
        return
    header = {"place": place, "subject_id": subject_id, "size_bytes": len(plaintext), "created_at": utcnow()}
    # Another transaction may keep the same file at the same moment (the same export sent twice):
    # the first to commit keeps it, the other waits for it and then finds it there.
    added = session.scalar(
        upsert_into(session, SealedFile).values(**header).on_conflict_do_nothing().returning(SealedFile.place)
    )
    if added is None:
        return
    pieces = _PieceWriter(session, place)
    seal_into(data_key(session, subject_id), plaintext, place, pieces.write)
    pieces.close()


class _PieceWriter:
    """Collects sealed bytes and inserts them as :class:`SealedFilePiece` rows of up to ``PIECE_BYTES``."""

    def __init__(self, session: Session, place: str) -> None:
        self.session = session
        self.place = place
        self.buffer = bytearray()
        self.number = 0

    def write(self, data: bytes) -> None:
        self.buffer += data
        while len(self.buffer) >= PIECE_BYTES:
            self._insert(bytes(self.buffer[:PIECE_BYTES]))
            del self.buffer[:PIECE_BYTES]

    def close(self) -> None:
        if self.buffer or not self.number:
            self._insert(bytes(self.buffer))
            self.buffer.clear()

    def _insert(self, data: bytes) -> None:
        piece = {"place": self.place, "number": self.number, "data": data}
        self.session.execute(insert(SealedFilePiece).values(**piece))
        self.number += 1


def open_file(session: Session, subject_id: str, place: str) -> bytes | None:
    """The plaintext of a file :func:`seal_file` kept at ``place``, or ``None`` when there is none."""
    if session.get(SealedFile, place) is None:
        return None
    pieces = session.scalars(
        select(SealedFilePiece.data).where(SealedFilePiece.place == place).order_by(SealedFilePiece.number)
    )
    return open_value(session, subject_id, b"".join(pieces), place)


def remove_file(session: Session, place: str) -> None:
    """Remove the file kept at ``place`` (nothing when there is none); final once the caller commits."""
    session.execute(delete(SealedFilePiece).where(SealedFilePiece.place == place))
    session.execute(delete(SealedFile).where(SealedFile.place == place))


def remove_files_of(session: Session, subject_id: str) -> int:
    """Remove every file kept for ``subject_id`` (an erased patient or clinic); the count removed."""
    places = select(SealedFile.place).where(SealedFile.subject_id == subject_id).scalar_subquery()
    session.execute(delete(SealedFilePiece).where(SealedFilePiece.place.in_(places)))
    removed = session.execute(delete(SealedFile).where(SealedFile.subject_id == subject_id))
    return int(removed.rowcount or 0)  # type: ignore[attr-defined]


def open_value(session: Session, subject_id: str, sealed: bytes, place: str) -> bytes:
    """Open a value :func:`seal_value` sealed for the same subject and place."""
    return unseal(data_key(session, subject_id), sealed, place)


def seal_mapping(key: bytes, mapping: dict[str, Any], place: str) -> dict[str, str]:
    """A JSON-able mapping sealed with data key ``key`` as ``{"sealed": BASE64}`` (free text in JSON columns).

    Takes the key itself (from :func:`data_key`), so that a hot loop seals without a query.
    """
    sealed = seal(key, json.dumps(mapping, sort_keys=True).encode(), place)
    return {SEALED_KEY: base64.b64encode(sealed).decode()}


def open_mapping(
    session: Session, subject_id: str, stored: dict[str, Any] | None, place: str
) -> dict[str, Any] | None:
    """The mapping :func:`seal_mapping` sealed; other mappings are returned as they are."""
    if not stored or set(stored) != {SEALED_KEY}:
        return stored
    plain = open_value(session, subject_id, base64.b64decode(stored[SEALED_KEY]), place)
    opened: dict[str, Any] = json.loads(plain)
    return opened


def lookup_hash(session: Session, value: str) -> str:
    """The keyed hash that finds an account by e-mail address (never the address itself)."""
    return keyring_of(session).lookup(value)


def rotate_master_key(session: Session, key_file: Path) -> RotationOut:
    """Put a new master key in force and re-wrap every data key under it.

    Step one writes the new key in front of the old ones, so a crash before the transaction
    commits leaves every data key readable; :func:`retire_master_keys` removes the old keys once
    the re-wrapped keys are committed.
    """
    ring = load_or_create(key_file)
    rotated = with_new_primary(ring)
    write_key_file(key_file, rotated)
    count = 0
    for row in session.scalars(select(DataKey)):
        key = rotated.unwrap(row.master_key_id, row.wrapped, row.subject_id)
        row.master_key_id, row.wrapped = rotated.wrap(key, row.subject_id)
        row.rewrapped_at = utcnow()
        count += 1
    session.flush()
    bind_keyring(_engine(session), rotated, key_file)
    return RotationOut(master_key=rotated.primary.id, rewrapped=count, retired=[])


def retire_master_keys(session: Session, key_file: Path) -> list[str]:
    """Remove from the key file the master keys that no data key is wrapped by any more."""
    ring = load_or_create(key_file)
    in_use = set(session.scalars(select(DataKey.master_key_id).distinct()))
    if in_use - {ring.primary.id}:
        return []
    retired = [k.id for k in ring.keys[1:]]
    if retired:
        write_key_file(key_file, only_primary(ring))
        bind_keyring(_engine(session), only_primary(ring), key_file)
    return retired


def _engine(session: Session) -> Engine:
    bind = session.get_bind()
    return bind if isinstance(bind, Engine) else bind.engine

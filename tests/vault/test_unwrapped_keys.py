"""The process's kept data keys: served only while the database still holds the same wrapped key."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from glucoshare.db.session import session_scope
from glucoshare.vault.cipher import new_key
from glucoshare.vault.errors import SealBrokenError
from glucoshare.vault.keyfile import KeyRing
from glucoshare.vault.models import DataKey
from glucoshare.vault.service import (
    UnwrappedKeys,
    destroy_data_key,
    open_value,
    seal_value,
    unwrapped_keys,
)


class CountingRing:
    """A key ring that counts its unwraps (the work the kept keys save)."""

    def __init__(self, ring: KeyRing) -> None:
        self.ring = ring
        self.unwraps = 0

    def unwrap(self, master_key_id: str, wrapped: bytes, subject: str) -> bytes:
        self.unwraps += 1
        return self.ring.unwrap(master_key_id, wrapped, subject)


def test_a_kept_key_is_served_without_unwrapping_again(keyring: KeyRing) -> None:
    kept = UnwrappedKeys()
    counting = CountingRing(keyring)
    key = new_key()
    master, wrapped = keyring.wrap(key, "subject-a")
    first = kept.unwrap(counting, "subject-a", master, wrapped)
    again = kept.unwrap(counting, "subject-a", master, wrapped)
    assert first == again == key
    assert counting.unwraps == 1


def test_a_rewrapped_key_is_unwrapped_afresh(keyring: KeyRing) -> None:
    kept = UnwrappedKeys()
    counting = CountingRing(keyring)
    old_key, new = new_key(), new_key()
    master, wrapped = keyring.wrap(old_key, "subject-a")
    assert kept.unwrap(counting, "subject-a", master, wrapped) == old_key
    master, rewrapped = keyring.wrap(new, "subject-a")
    assert kept.unwrap(counting, "subject-a", master, rewrapped) == new
    assert counting.unwraps == 2


def test_the_least_recently_used_keys_go_first(keyring: KeyRing) -> None:
    kept = UnwrappedKeys(capacity=2)
    counting = CountingRing(keyring)
    wrapped = {s: keyring.wrap(new_key(), s) for s in ("a", "b", "c")}
    for subject in ("a", "b", "a", "c"):  # "b" is the least recently used when "c" arrives
        kept.unwrap(counting, subject, *wrapped[subject])
    assert len(kept) == 2
    counting.unwraps = 0
    kept.unwrap(counting, "a", *wrapped["a"])
    kept.unwrap(counting, "c", *wrapped["c"])
    assert counting.unwraps == 0
    kept.unwrap(counting, "b", *wrapped["b"])
    assert counting.unwraps == 1


def test_a_destroyed_key_is_forgotten_by_the_process(engine: Engine) -> None:
    with session_scope(engine) as session:
        sealed = seal_value(session, "subject-gone", b"secret", "test:1")
    with session_scope(engine) as session:
        assert open_value(session, "subject-gone", sealed, "test:1") == b"secret"
        assert "subject-gone" in unwrapped_keys(session)
        destroy_data_key(session, "subject-gone")
        assert "subject-gone" not in unwrapped_keys(session)
    with Session(engine) as session:
        assert session.scalars(select(DataKey).where(DataKey.subject_id == "subject-gone")).first() is None
        # A later reader finds no key in the database: nothing the process kept opens the old value.
        with pytest.raises(SealBrokenError):
            open_value(session, "subject-gone", sealed, "test:1")
        session.rollback()

"""The master key file: created owner-only on first use, read back unchanged, refused when damaged."""

from __future__ import annotations

import base64
import datetime as dt
import errno
import json
import os
import tempfile
import threading
from pathlib import Path

import pytest

from glucoshare.vault import keyfile
from glucoshare.vault.cipher import KEY_BYTES, new_key
from glucoshare.vault.errors import MasterKeyError, SealBrokenError, WrongMasterKeyError
from glucoshare.vault.keyfile import (
    KeyRing,
    load_or_create,
    only_primary,
    with_new_primary,
    write_key_file,
)


def _document(path: Path) -> dict[str, object]:
    loaded: dict[str, object] = json.loads(path.read_text(encoding="utf-8"))
    return loaded


def test_created_on_first_use_owner_only_in_the_documented_shape(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "master.key"
    ring = load_or_create(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700
    doc = _document(path)
    assert set(doc) == {"format", "version", "lookup_key", "keys"}
    assert (doc["format"], doc["version"]) == ("glucoshare-master-key", 1)
    assert isinstance(doc["lookup_key"], str)
    assert base64.b64decode(doc["lookup_key"], validate=True) == ring.lookup_key
    assert len(ring.lookup_key) == KEY_BYTES
    keys = doc["keys"]
    assert isinstance(keys, list)
    assert len(keys) == 1
    (entry,) = keys
    assert set(entry) == {"id", "key", "created"}
    assert entry["id"] == ring.primary.id
    assert entry["id"].startswith("mk-")
    assert base64.b64decode(entry["key"], validate=True) == ring.primary.key
    assert len(ring.primary.key) == KEY_BYTES
    created = dt.datetime.fromisoformat(entry["created"])
    assert created.tzinfo is not None
    assert abs(dt.datetime.now(dt.UTC) - created) < dt.timedelta(minutes=1)
    assert ring.primary.key != ring.lookup_key
    assert not [p.name for p in path.parent.iterdir() if p.name != path.name]  # no temporary left over


def test_loading_again_gives_the_same_keys(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    first = load_or_create(path)
    before = path.read_bytes()
    again = load_or_create(path)
    assert again.keys == first.keys
    assert again.lookup_key == first.lookup_key
    assert path.read_bytes() == before  # reading never rewrites the file


def test_write_key_file_round_trips_every_key_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    ring = with_new_primary(with_new_primary(load_or_create(path)))
    write_key_file(path, ring)
    assert path.stat().st_mode & 0o777 == 0o600
    loaded = load_or_create(path)
    assert loaded.keys == ring.keys
    assert loaded.lookup_key == ring.lookup_key
    assert len({k.id for k in loaded.keys}) == 3


def _valid_document(path: Path) -> dict[str, object]:
    load_or_create(path)
    return _document(path)


def _corrupt(path: Path, how: str) -> None:
    doc = _valid_document(path)
    keys = doc["keys"]
    assert isinstance(keys, list)
    short = base64.b64encode(b"k" * 16).decode()
    if how == "not json":
        path.write_text("{this is not json", encoding="utf-8")
    elif how == "empty":
        path.write_text("", encoding="utf-8")
    elif how == "a json list":
        path.write_text("[1, 2, 3]", encoding="utf-8")
    elif how == "another format":
        path.write_text(json.dumps({**doc, "format": "something-else"}), encoding="utf-8")
    elif how == "a newer version":
        path.write_text(json.dumps({**doc, "version": 2}), encoding="utf-8")
    elif how == "no keys":
        path.write_text(json.dumps({**doc, "keys": []}), encoding="utf-8")
    elif how == "a key missing its id":
        path.write_text(json.dumps({**doc, "keys": [{"key": keys[0]["key"], "created": "2026-01-01"}]}))
    elif how == "a short key":
        path.write_text(json.dumps({**doc, "keys": [{**keys[0], "key": short}]}), encoding="utf-8")
    elif how == "a short lookup key":
        path.write_text(json.dumps({**doc, "lookup_key": short}), encoding="utf-8")
    elif how == "not base64":
        path.write_text(json.dumps({**doc, "keys": [{**keys[0], "key": "%%%not base64%%%"}]}))
    elif how == "a bad date":
        path.write_text(json.dumps({**doc, "keys": [{**keys[0], "created": "yesterday"}]}))
    else:  # pragma: no cover - the parametrisation names every case
        raise AssertionError(how)


@pytest.mark.parametrize(
    "how",
    [
        "not json",
        "empty",
        "a json list",
        "another format",
        "a newer version",
        "no keys",
        "a key missing its id",
        "a short key",
        "a short lookup key",
        "not base64",
        "a bad date",
    ],
)
def test_a_damaged_key_file_is_refused_naming_the_file(tmp_path: Path, how: str) -> None:
    path = tmp_path / "master.key"
    _corrupt(path, how)
    damaged = path.read_bytes()
    with pytest.raises(MasterKeyError) as caught:
        load_or_create(path)
    assert str(path) in caught.value.message
    assert not isinstance(caught.value, WrongMasterKeyError)
    assert path.read_bytes() == damaged  # never "repaired" by writing a new key over it


def test_an_unreadable_key_file_is_refused_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    path.mkdir()  # a folder where the file should be
    with pytest.raises(MasterKeyError, match="cannot be read") as caught:
        load_or_create(path)
    assert str(path) in caught.value.message


def test_a_data_key_wrapped_by_a_key_the_ring_lacks_is_a_wrong_master_key(tmp_path: Path) -> None:
    ours = load_or_create(tmp_path / "ours.key")
    theirs = load_or_create(tmp_path / "theirs.key")
    data_key = new_key()
    master_id, wrapped = ours.wrap(data_key, "subject-1")
    assert master_id == ours.primary.id
    assert ours.unwrap(master_id, wrapped, "subject-1") == data_key
    with pytest.raises(WrongMasterKeyError) as caught:
        theirs.unwrap(master_id, wrapped, "subject-1")
    assert master_id in caught.value.message
    assert "GLUCOSHARE_SECRET_KEY_FILE" in caught.value.message
    assert isinstance(caught.value, MasterKeyError)
    # The same id with another key (a forged or swapped key file) does not open either.
    impostor = KeyRing(keys=(keyfile.MasterKey(master_id, new_key(), ours.primary.created),), lookup_key=b"")
    with pytest.raises(SealBrokenError):
        impostor.unwrap(master_id, wrapped, "subject-1")
    # A wrapped key belongs to its subject.
    with pytest.raises(SealBrokenError):
        ours.unwrap(master_id, wrapped, "subject-2")


def test_older_keys_still_unwrap_and_only_primary_drops_them(tmp_path: Path) -> None:
    ring = load_or_create(tmp_path / "master.key")
    old_id, wrapped = ring.wrap(b"d" * KEY_BYTES, "s")
    rotated = with_new_primary(ring)
    assert rotated.primary.id != old_id
    assert [k.id for k in rotated.keys][1:] == [old_id]
    assert rotated.lookup_key == ring.lookup_key
    assert rotated.unwrap(old_id, wrapped, "s") == b"d" * KEY_BYTES
    assert rotated.wrap(b"d" * KEY_BYTES, "s")[0] == rotated.primary.id
    retired = only_primary(rotated)
    assert retired.keys == (rotated.primary,)
    with pytest.raises(WrongMasterKeyError):
        retired.unwrap(old_id, wrapped, "s")


def test_lookup_folds_case_and_unicode_form_and_depends_on_the_key(tmp_path: Path) -> None:
    ring = load_or_create(tmp_path / "a.key")
    other = load_or_create(tmp_path / "b.key")
    assert ring.lookup("José@Example.org") == ring.lookup("  jose\u0301@example.ORG ")
    assert ring.lookup("a@example.org") != ring.lookup("b@example.org")
    assert ring.lookup("a@example.org") != other.lookup("a@example.org")
    assert "a@example.org" not in ring.lookup("a@example.org")
    assert len(ring.lookup("a@example.org")) == 64
    assert ring.mac("csrf", "x") != ring.mac("other", "x")
    assert ring.mac("csrf", "x") != ring.lookup("x")


def test_concurrent_first_use_creates_one_key(tmp_path: Path) -> None:
    """Workers starting together on a new installation all get the one key that was stored."""
    for attempt in range(20):
        path = tmp_path / f"round-{attempt}" / "master.key"
        barrier = threading.Barrier(4)
        results: list[KeyRing | BaseException] = []
        lock = threading.Lock()

        def worker(
            path: Path = path,
            barrier: threading.Barrier = barrier,
            results: list[KeyRing | BaseException] = results,
            lock: threading.Lock = lock,
        ) -> None:
            barrier.wait()
            try:
                ring: KeyRing | BaseException = load_or_create(path)
            except BaseException as exc:  # noqa: BLE001 - collected and asserted on below
                ring = exc
            with lock:
                results.append(ring)

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        errors = [r for r in results if isinstance(r, BaseException)]
        assert not errors, errors[0]
        stored = load_or_create(path)
        assert {r.primary.id for r in results if isinstance(r, KeyRing)} == {stored.primary.id}
        assert len(stored.keys) == 1


def test_losing_the_race_to_another_process_uses_their_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deterministically: another process stores its key between our look and our write."""
    path = tmp_path / "master.key"
    theirs = with_new_primary(KeyRing(keys=(), lookup_key=new_key()))
    real_link = os.link

    def link_after_them(src: str, dst: Path) -> None:
        write_key_file(path, theirs)
        real_link(src, dst)

    monkeypatch.setattr(os, "link", link_after_them)
    ring = load_or_create(path)
    assert ring.keys == theirs.keys
    assert ring.lookup_key == theirs.lookup_key
    assert load_or_create(path).keys == theirs.keys
    assert sorted(p.name for p in tmp_path.iterdir()) == ["master.key"]


def test_a_file_system_without_hard_links_still_gets_a_key_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_links(src: str, dst: Path) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    path = tmp_path / "master.key"
    ring = load_or_create(path)
    assert path.stat().st_mode & 0o777 == 0o600
    monkeypatch.undo()
    assert load_or_create(path).keys == ring.keys
    assert sorted(p.name for p in tmp_path.iterdir()) == ["master.key"]


def test_a_key_file_that_cannot_be_created_is_a_master_key_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_full(**_kwargs: object) -> tuple[int, str]:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tempfile, "mkstemp", disk_full)
    path = tmp_path / "master.key"
    with pytest.raises(MasterKeyError, match="cannot be created") as caught:
        load_or_create(path)
    assert str(path) in caught.value.message
    assert not path.exists()

"""The master key file: wrapping keys (the first one is in force) and the lookup key.

The file is JSON, owner-only (0600), created on first use::

    {"format": "glucoshare-master-key", "version": 1,
     "lookup_key": BASE64, "keys": [{"id": "mk-…", "key": BASE64, "created": ISO8601}, …]}

``keys[0]`` wraps new data keys; older keys stay in the file while a rotation re-wraps the data
keys they wrapped, so a rotation interrupted at any point loses nothing. ``lookup_key`` keys the
hashes used to find an account by e-mail address and the CSRF tokens; it never wraps anything.
The master key is never stored in the database.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import json
import os
import secrets
import tempfile
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from glucoshare.files import private_directory
from glucoshare.vault.cipher import KEY_BYTES, new_key, seal, unseal
from glucoshare.vault.errors import MasterKeyError, WrongMasterKeyError

FILE_FORMAT = "glucoshare-master-key"
FILE_VERSION = 1


@dataclass(frozen=True, slots=True)
class MasterKey:
    """One key-encryption key."""

    id: str
    key: bytes
    created: dt.datetime


@dataclass(frozen=True, slots=True)
class KeyRing:
    """The master keys in force (the first wraps new data keys) and the lookup key."""

    keys: tuple[MasterKey, ...]
    lookup_key: bytes

    @property
    def primary(self) -> MasterKey:
        """The key that wraps new data keys."""
        return self.keys[0]

    def wrap(self, data_key: bytes, subject: str) -> tuple[str, bytes]:
        """Wrap a subject's data key under the primary master key: ``(master key id, wrapped)``."""
        return self.primary.id, seal(self.primary.key, data_key, f"data_keys:{subject}")

    def unwrap(self, master_key_id: str, wrapped: bytes, subject: str) -> bytes:
        """Unwrap a subject's data key with the master key that wrapped it."""
        for master in self.keys:
            if master.id == master_key_id:
                return unseal(master.key, wrapped, f"data_keys:{subject}")
        msg = (
            f"data keys are wrapped by master key {master_key_id}, which the key file does not hold; "
            "is GLUCOSHARE_SECRET_KEY_FILE the key of this database?"
        )
        raise WrongMasterKeyError(msg)

    def lookup(self, value: str) -> str:
        """Keyed hash (HMAC-SHA-256, hex) of an e-mail address, case and Unicode form folded."""
        folded = unicodedata.normalize("NFC", value.strip()).casefold()
        return hmac.new(self.lookup_key, b"lookup:" + folded.encode(), hashlib.sha256).hexdigest()

    def mac(self, purpose: str, value: str) -> str:
        """Keyed hash (HMAC-SHA-256, hex) of ``value`` for ``purpose`` (e.g. a session's CSRF token)."""
        message = f"{purpose}:{value}".encode()
        return hmac.new(self.lookup_key, message, hashlib.sha256).hexdigest()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _new_master_key() -> MasterKey:
    # Whole seconds, as the file stores it: the ring in hand equals the ring read back.
    created = dt.datetime.now(dt.UTC).replace(microsecond=0)
    return MasterKey(id=f"mk-{secrets.token_hex(6)}", key=new_key(), created=created)


def _document(ring: KeyRing) -> str:
    return json.dumps(
        {
            "format": FILE_FORMAT,
            "version": FILE_VERSION,
            "lookup_key": _b64(ring.lookup_key),
            "keys": [
                {"id": k.id, "key": _b64(k.key), "created": k.created.isoformat(timespec="seconds")}
                for k in ring.keys
            ],
        },
        indent=2,
    )


def write_key_file(path: Path, ring: KeyRing) -> None:
    """Write ``ring`` to ``path`` atomically, owner-only (mode 0600)."""
    private_directory(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(_document(ring))
            handle.flush()
            os.fsync(handle.fileno())
        Path(tmp).chmod(0o600)
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _parse(path: Path, text: str) -> KeyRing:
    try:
        doc = json.loads(text)
        if not isinstance(doc, dict):
            raise TypeError("not a JSON object")  # noqa: TRY301 - one handler for all faults
        if doc.get("format") != FILE_FORMAT or doc.get("version") != FILE_VERSION:
            raise ValueError("not a Glucoshare master key file")  # noqa: TRY301 - one handler for all faults
        keys = tuple(
            MasterKey(
                id=str(k["id"]),
                key=base64.b64decode(k["key"], validate=True),
                created=dt.datetime.fromisoformat(k["created"]),
            )
            for k in doc["keys"]
        )
        lookup_key = base64.b64decode(doc["lookup_key"], validate=True)
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        msg = f"{path}: not a valid Glucoshare master key file ({type(exc).__name__})"
        raise MasterKeyError(msg) from exc
    if not keys or any(len(k.key) != KEY_BYTES for k in keys) or len(lookup_key) != KEY_BYTES:
        msg = f"{path}: the master key file holds no key or a key of the wrong length"
        raise MasterKeyError(msg)
    return KeyRing(keys=keys, lookup_key=lookup_key)


def _create_key_file(path: Path, ring: KeyRing) -> bool:
    """Write ``ring`` to ``path`` unless it exists; ``False`` when another process was first.

    The file is written in full under a temporary name and then linked into place, so no reader
    ever sees it empty or half written (which a create-then-write would show a concurrent reader).
    """
    private_directory(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(_document(ring))
            handle.flush()
            os.fsync(handle.fileno())
        Path(tmp).chmod(0o600)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        except OSError:  # a file system without hard links: create in place
            return _create_in_place(path, ring)
        return True
    finally:
        Path(tmp).unlink(missing_ok=True)


def _create_in_place(path: Path, ring: KeyRing) -> bool:
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(_document(ring))
        handle.flush()
        os.fsync(handle.fileno())
    return True


def load_or_create(path: Path) -> KeyRing:
    """The key ring in ``path``; a new one (written 0600) when the file does not exist yet."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        ring = KeyRing(keys=(_new_master_key(),), lookup_key=new_key())
        try:
            created = _create_key_file(path, ring)
        except OSError as exc:
            msg = f"{path}: the master key file cannot be created ({exc.strerror})"
            raise MasterKeyError(msg) from exc
        if not created:  # another process created it first: use theirs
            return load_or_create(path)
        return ring
    except OSError as exc:
        msg = f"{path}: the master key file cannot be read ({exc.strerror})"
        raise MasterKeyError(msg) from exc
    return _parse(path, text)


def read_key_file(path: Path) -> KeyRing:
    """The key ring in an existing key file (never creates one)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        msg = f"{path}: the master key file cannot be read ({exc.strerror})"
        raise MasterKeyError(msg) from exc
    return _parse(path, text)


def with_new_primary(ring: KeyRing) -> KeyRing:
    """``ring`` with a fresh master key in front (older keys kept until their data keys move)."""
    return KeyRing(keys=(_new_master_key(), *ring.keys), lookup_key=ring.lookup_key)


def only_primary(ring: KeyRing) -> KeyRing:
    """``ring`` without the keys that no longer wrap anything (after a completed rotation)."""
    return KeyRing(keys=(ring.primary,), lookup_key=ring.lookup_key)

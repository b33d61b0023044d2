"""The clear header of a backup: how its members are encrypted, and which key file opens them.

``header.json``, the member after the marker, is the one member besides the marker in clear. It
says nothing about any patient, nor which tables the backup holds::

    {"format": "glucoshare-backup", "version": 2, "cipher": "AES-256-GCM STREAM",
     "kdf": "HKDF-SHA256", "purpose": "glucoshare-backup:v2", "salt": BASE64, "chunk_bytes": 1048576,
     "master_key": {"id": "mk-…", "fingerprint": HEX},
     "keys": {"lookup": HEX, "master": [{"id": "mk-…", "fingerprint": HEX}, …]}}

The backup key is HKDF-SHA256 (RFC 5869) of the master key ``master_key`` (the key ring's
primary when the backup was made; a restore finds it by id among the key file's keys, retired ones
included) with the header's random 32-byte salt, and as info the purpose label and the SHA-256 of
the header's bytes: a header changed in any byte gives another key, so nothing in the backup opens.
The fingerprints (:func:`glucoshare.backup.format.key_fingerprint`: keyed hashes that identify a
key without revealing it) let a restore name the key file it needs before it opens anything.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pydantic import ValidationError

from glucoshare.backup.errors import BackupDamagedError, BackupKeyError
from glucoshare.backup.format import CHUNK_BYTES, FORMAT, VERSION, key_fingerprint
from glucoshare.backup.members import MemberCipher
from glucoshare.backup.schemas import Header, KeyFingerprint, KeyFingerprints
from glucoshare.backup.stream import KEY_BYTES
from glucoshare.vault.keyfile import KeyRing

PURPOSE = f"glucoshare-backup:v{VERSION}"
"""The HKDF purpose label: a backup key is good for nothing else."""
SALT_BYTES = 32


def new_header(ring: KeyRing, keys: KeyFingerprints, *, chunk_bytes: int = CHUNK_BYTES) -> bytes:
    """The header of a new backup under ``ring``'s primary master key (JSON, UTF-8), with a fresh salt."""
    header = Header(
        format=FORMAT,
        version=VERSION,
        cipher="AES-256-GCM STREAM",
        kdf="HKDF-SHA256",
        purpose=PURPOSE,
        salt=base64.b64encode(os.urandom(SALT_BYTES)).decode("ascii"),
        chunk_bytes=chunk_bytes,
        master_key=KeyFingerprint(id=ring.primary.id, fingerprint=key_fingerprint(ring.primary.key)),
        keys=keys,
    )
    return header.model_dump_json(indent=2).encode("utf-8") + b"\n"


def parse_header(document: bytes, path: Path) -> Header:
    """The header in ``document``; :class:`BackupDamagedError` when it is not a format-2 header."""
    try:
        header = Header.model_validate_json(document)
        salt = base64.b64decode(header.salt, validate=True)
    except (ValidationError, binascii.Error) as exc:
        msg = f"{path}: the backup's header is damaged"
        raise BackupDamagedError(msg) from exc
    if header.version != VERSION or header.purpose != PURPOSE or len(salt) != SALT_BYTES:
        msg = f"{path}: the backup's header is damaged"
        raise BackupDamagedError(msg)
    return header


def _master_key(header: Header, ring: KeyRing) -> bytes:
    """The master key the backup key derives from, once every fingerprint matches ``ring``."""
    held = {master.id: master.key for master in ring.keys}
    needed = [header.master_key, *(k for k in header.keys.master if k.fingerprint is not None)]
    wrong = key_fingerprint(ring.lookup_key) != header.keys.lookup or any(
        key.id not in held or key_fingerprint(held[key.id]) != key.fingerprint for key in needed
    )
    if wrong:
        names = ", ".join(dict.fromkeys(key.id for key in needed))
        msg = (
            f"the configured master key file is not the one this backup was made with (it needs {names}); "
            "set GLUCOSHARE_SECRET_KEY_FILE to the key file kept with the backup"
        )
        raise BackupKeyError(msg)
    return held[header.master_key.id]


def backup_key(master_key: bytes, header: Header, document: bytes) -> bytes:
    """The backup key (256 bits, for AES-256-GCM): HKDF-SHA256 (RFC 5869) of ``master_key``.

    Salt: the header's. Info: the purpose label and the SHA-256 of ``document``, the header's bytes
    as stored, so that the header is authenticated with every member.
    """
    salt = base64.b64decode(header.salt, validate=True)
    info = f"{PURPOSE}:header-sha256:".encode() + hashlib.sha256(document).digest()
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=salt, info=info).derive(master_key)


def member_cipher(document: bytes, ring: KeyRing, path: Path) -> MemberCipher:
    """How to open the members of the backup whose header is ``document``, with the key file ``ring``.

    Raises :class:`BackupDamagedError` for a damaged header and :class:`BackupKeyError` (naming
    the master keys needed) when ``ring`` is not the key file the backup was made with.
    """
    header = parse_header(document, path)
    return MemberCipher(backup_key(_master_key(header, ring), header, document), header.chunk_bytes)


def writer_cipher(document: bytes, ring: KeyRing) -> MemberCipher:
    """How to encrypt the members of a new backup whose header is ``document`` (from :func:`new_header`)."""
    header = Header.model_validate_json(document)
    return MemberCipher(backup_key(ring.primary.key, header, document), header.chunk_bytes)

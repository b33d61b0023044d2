"""AES-256-GCM sealing of single values, bound to where they are stored.

A sealed value is ``version (1 byte) || nonce (12 bytes) || ciphertext || tag (16 bytes)``. The
associated data names the place the value belongs to (table, column and row), so a ciphertext
copied into another row or column does not open (NIST SP 800-38D; random 96-bit nonces, far below
the 2^32 messages per key the standard allows).
"""

from __future__ import annotations

import os
from collections.abc import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from glucoshare.vault.errors import SealBrokenError

KEY_BYTES = 32
"""AES-256."""
NONCE_BYTES = 12
FORMAT_VERSION = b"\x01"
_CHUNK = 1 << 20


def new_key() -> bytes:
    """A fresh random 256-bit key."""
    return AESGCM.generate_key(bit_length=8 * KEY_BYTES)


def seal(key: bytes, plaintext: bytes, place: str) -> bytes:
    """Encrypt and authenticate ``plaintext`` for ``place`` (the associated data)."""
    nonce = os.urandom(NONCE_BYTES)
    return FORMAT_VERSION + nonce + AESGCM(key).encrypt(nonce, plaintext, place.encode())


def seal_into(key: bytes, plaintext: bytes, place: str, write: Callable[[bytes], object]) -> None:
    """Like :func:`seal`, but hand the sealed bytes to ``write`` piece by piece (1 MiB at a time).

    For large values (raw uploads): no sealed copy of the whole value is ever held in memory. The
    result is byte for byte what :func:`seal` would make with the same nonce, so :func:`unseal`
    opens it.
    """
    nonce = os.urandom(NONCE_BYTES)
    encryptor = Cipher(algorithms.AES(key), modes.GCM(nonce)).encryptor()
    encryptor.authenticate_additional_data(place.encode())
    write(FORMAT_VERSION + nonce)
    view = memoryview(plaintext)
    for start in range(0, len(view), _CHUNK):
        write(encryptor.update(view[start : start + _CHUNK]))
    write(encryptor.finalize())
    write(encryptor.tag)


def unseal(key: bytes, sealed: bytes, place: str) -> bytes:
    """Decrypt a value :func:`seal` made for the same ``place``; raise :class:`SealBrokenError` if not."""
    if sealed[:1] != FORMAT_VERSION or len(sealed) < 1 + NONCE_BYTES + 16:
        msg = f"a sealed value of {place.split(':', 1)[0]} has an unknown format"
        raise SealBrokenError(msg)
    nonce, body = sealed[1 : 1 + NONCE_BYTES], sealed[1 + NONCE_BYTES :]
    try:
        return AESGCM(key).decrypt(nonce, body, place.encode())
    except InvalidTag as exc:
        msg = f"a sealed value of {place.split(':', 1)[0]} does not open (altered, moved or its key is gone)"
        raise SealBrokenError(msg) from exc

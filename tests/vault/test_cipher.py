"""AES-256-GCM sealing of single values, bound to the place they are stored."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from glucoshare.vault.cipher import FORMAT_VERSION, KEY_BYTES, NONCE_BYTES, new_key, seal, seal_into, unseal
from glucoshare.vault.errors import SealBrokenError

KEY = bytes(range(KEY_BYTES))
OVERHEAD = 1 + NONCE_BYTES + 16

places = st.text(min_size=0, max_size=80)


def test_round_trip_and_a_fresh_nonce_every_time() -> None:
    sealed = seal(KEY, b"Quillon Vexhammer", "patients.name_sealed:abc")
    assert unseal(KEY, sealed, "patients.name_sealed:abc") == b"Quillon Vexhammer"
    assert sealed[:1] == FORMAT_VERSION
    assert len(sealed) == len(b"Quillon Vexhammer") + OVERHEAD
    assert b"Quillon" not in sealed
    assert seal(KEY, b"Quillon Vexhammer", "patients.name_sealed:abc") != sealed
    assert unseal(KEY, seal(KEY, b"", "p"), "p") == b""


def test_new_keys_are_256_bit_and_random() -> None:
    keys = {new_key() for _ in range(5)}
    assert len(keys) == 5
    assert all(len(k) == KEY_BYTES for k in keys)


@pytest.mark.parametrize(
    "other_place",
    ["patients.name_sealed:abd", "patients.email_sealed:abc", "users.name_sealed:abc", "", "raw:abc"],
)
def test_a_value_sealed_for_one_place_does_not_open_in_another(other_place: str) -> None:
    sealed = seal(KEY, b"secret", "patients.name_sealed:abc")
    with pytest.raises(SealBrokenError, match="does not open"):
        unseal(KEY, sealed, other_place)


def test_another_key_does_not_open_it() -> None:
    sealed = seal(KEY, b"secret", "p")
    with pytest.raises(SealBrokenError):
        unseal(new_key(), sealed, "p")


def test_the_error_names_the_table_not_the_row() -> None:
    sealed = seal(KEY, b"secret", "patients.name_sealed:row-id-123")
    with pytest.raises(SealBrokenError) as caught:
        unseal(KEY, sealed, "patients.name_sealed:row-id-999")
    assert "patients.name_sealed" in caught.value.message
    assert "row-id" not in caught.value.message


def test_every_flipped_byte_is_detected() -> None:
    sealed = seal(KEY, b"a value worth protecting", "p")
    for index in range(len(sealed)):
        for bit in (0x01, 0x80):
            damaged = bytearray(sealed)
            damaged[index] ^= bit
            with pytest.raises(SealBrokenError):
                unseal(KEY, bytes(damaged), "p")


@pytest.mark.parametrize(
    "damaged",
    [b"", b"\x01", b"\x01" + b"\x00" * (OVERHEAD - 2), b"\x02" + b"\x00" * 40, b"plain text, never sealed"],
)
def test_truncated_or_unknown_formats_are_refused(damaged: bytes) -> None:
    with pytest.raises(SealBrokenError):
        unseal(KEY, damaged, "patients.name_sealed:x")


def test_a_truncated_value_is_refused() -> None:
    sealed = seal(KEY, b"a value", "p")
    for length in range(len(sealed)):
        with pytest.raises(SealBrokenError):
            unseal(KEY, sealed[:length], "p")
    with pytest.raises(SealBrokenError):
        unseal(KEY, sealed + b"\x00", "p")


@given(plaintext=st.binary(max_size=512), place=places, other=places)
def test_round_trip_and_binding_for_any_bytes_and_places(plaintext: bytes, place: str, other: str) -> None:
    sealed = seal(KEY, plaintext, place)
    assert len(sealed) == len(plaintext) + OVERHEAD
    assert unseal(KEY, sealed, place) == plaintext
    if other.encode() != place.encode():
        with pytest.raises(SealBrokenError):
            unseal(KEY, sealed, other)


@given(plaintext=st.binary(max_size=128), place=places, index=st.integers(min_value=0), bit=st.integers(0, 7))
def test_any_flipped_bit_is_detected(plaintext: bytes, place: str, index: int, bit: int) -> None:
    sealed = bytearray(seal(KEY, plaintext, place))
    sealed[index % len(sealed)] ^= 1 << bit
    with pytest.raises(SealBrokenError):
        unseal(KEY, bytes(sealed), place)


@given(data=st.binary(max_size=3 * (1 << 20) + 7), place=st.text(max_size=40))
@settings(max_examples=10)
def test_sealing_piece_by_piece_opens_like_a_whole_seal(data: bytes, place: str) -> None:
    key = new_key()
    pieces: list[bytes] = []
    seal_into(key, data, place, pieces.append)
    sealed = b"".join(pieces)
    assert len(sealed) == len(seal(key, data, place))
    assert unseal(key, sealed, place) == data
    with pytest.raises(SealBrokenError):
        unseal(key, sealed, place + "x")

"""Password rules (NIST SP 800-63B rev 4) and argon2id storage."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher
from hypothesis import given
from hypothesis import strategies as st

from glucoshare.accounts.passwords import (
    MAX_LENGTH,
    PasswordRejectedError,
    check_password,
    hash_password,
    verify_password,
)

GOOD = "correct horse battery staple"


@pytest.mark.parametrize(
    ("password", "second_factor", "rule"),
    [
        ("fourteen chars", False, "at least 15 characters without a second factor"),
        ("seven c", True, "at least 8 characters with a second factor"),
        ("x" * 7 + "y" * (MAX_LENGTH - 6), False, f"at most {MAX_LENGTH}"),
        ("password", True, "most common"),
        ("Password123!", True, "most common"),  # a common word with the usual digits and symbol
        ("iloveyou", True, "most common"),
        ("aaaaaaaaaaaaaaaa", False, "repeated"),
        ("abcabcabcabcabcabc", False, "repeated"),
        ("123456789012345678", False, "sequence"),
        ("987654321098765432", False, "sequence"),
        ("abcdefghijklmnopq", False, "sequence"),
        ("kim.lee glucoshare 2024", False, "your name, e-mail address or the service"),
    ],
)
def test_rules(password: str, second_factor: bool, rule: str) -> None:
    with pytest.raises(PasswordRejectedError, match=rule):
        check_password(password, second_factor=second_factor, email="kim.lee@example.org", name="Kim Lee")


@pytest.mark.parametrize(
    ("password", "second_factor"),
    [
        (GOOD, False),
        ("Tr0ub4dor&3", True),  # 11 characters: enough with a second factor
        ("ÄÖÜ ß ünïcödé pässwörd", False),  # any characters, no composition rules
        ("x" * 60 + "y" * (MAX_LENGTH - 60), False),
    ],
)
def test_acceptable_passwords(password: str, second_factor: bool) -> None:
    assert check_password(password, second_factor=second_factor, email="kim@example.org", name="Kim Lee")


def test_the_message_never_contains_the_password() -> None:
    with pytest.raises(PasswordRejectedError) as caught:
        check_password("monkey", second_factor=True)
    assert "monkey" not in str(caught.value)


def test_hashes_are_argon2id_with_at_least_the_asvs_parameters() -> None:
    stored = hash_password(GOOD)
    assert stored.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert verify_password(stored, GOOD).ok
    assert not verify_password(stored, GOOD + " ").ok
    assert not verify_password(None, GOOD).ok


def test_a_weaker_hash_is_flagged_for_rehash() -> None:
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(GOOD)
    result = verify_password(weak, GOOD)
    assert result.ok
    assert result.needs_rehash


def test_unicode_forms_are_the_same_password() -> None:
    composed = "caf\u00e9 au lait sans sucre"
    decomposed = "cafe\u0301 au lait sans sucre"
    assert verify_password(hash_password(composed), decomposed).ok


@given(st.text(min_size=15, max_size=40))
def test_check_never_fails_unexpectedly(password: str) -> None:
    try:
        checked = check_password(password, second_factor=False)
    except PasswordRejectedError:
        return
    assert 15 <= len(checked) <= MAX_LENGTH

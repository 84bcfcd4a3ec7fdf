"""Passwords: policy with a clear error, argon2id hashes, verification, rehash on new costs."""

from __future__ import annotations

import pytest

from haltguard.security import passwords
from haltguard.security.config import PASSWORD_LENGTH_MAX, SecuritySettings
from haltguard.security.testing import fast_test_settings


def test_hash_is_argon2id_with_the_configured_costs() -> None:
    settings = SecuritySettings()
    stored = passwords.hash_password("correct horse battery staple", settings)
    assert stored.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert "correct horse" not in stored


def test_right_password_verifies_and_wrong_one_does_not() -> None:
    settings = fast_test_settings()
    stored = passwords.hash_password("correct horse battery staple", settings)
    assert passwords.verify_password(stored, "correct horse battery staple", settings)
    assert not passwords.verify_password(stored, "correct horse battery stapler", settings)


def test_same_password_hashes_differently_each_time() -> None:
    settings = fast_test_settings()
    first = passwords.hash_password("correct horse battery staple", settings)
    second = passwords.hash_password("correct horse battery staple", settings)
    assert first != second


def test_malformed_stored_hash_never_matches() -> None:
    assert not passwords.verify_password("not-a-hash", "anything at all", fast_test_settings())


def test_short_password_is_refused_with_the_minimum_in_the_message() -> None:
    with pytest.raises(passwords.PasswordPolicyError) as err:
        passwords.hash_password("short", fast_test_settings())
    assert "too short: 5 characters, at least 12" in str(err.value)


def test_password_of_exactly_the_minimum_length_is_accepted() -> None:
    settings = fast_test_settings()
    stored = passwords.hash_password("a" * settings.password_length_min, settings)
    assert passwords.verify_password(stored, "a" * settings.password_length_min, settings)


def test_overlong_and_blank_passwords_are_refused() -> None:
    with pytest.raises(passwords.PasswordPolicyError, match="too long"):
        passwords.check_policy("x" * (PASSWORD_LENGTH_MAX + 1), fast_test_settings())
    with pytest.raises(passwords.PasswordPolicyError, match="whitespace"):
        passwords.check_policy(" " * 20, fast_test_settings())


def test_hash_made_with_other_costs_needs_rehash() -> None:
    cheap = fast_test_settings()
    stored = passwords.hash_password("correct horse battery staple", cheap)
    assert not passwords.needs_rehash(stored, cheap)
    assert passwords.needs_rehash(stored, fast_test_settings(password_hash_time_cost=2))

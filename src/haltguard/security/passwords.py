"""Operator passwords: a length policy with a clear error, and argon2id hashes."""

from __future__ import annotations

from functools import lru_cache

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from haltguard.security.config import PASSWORD_LENGTH_MAX, SecuritySettings


class PasswordPolicyError(ValueError):
    """The proposed password breaks the policy; the message says what to change."""


def check_policy(password: str, settings: SecuritySettings) -> None:
    """Refuse passwords that are too short, too long or only whitespace."""
    if len(password) < settings.password_length_min:
        raise PasswordPolicyError(
            f"password too short: {len(password)} characters, at least "
            f"{settings.password_length_min} are required; a passphrase of several words works"
        )
    if len(password) > PASSWORD_LENGTH_MAX:
        raise PasswordPolicyError(
            f"password too long: {len(password)} characters, at most {PASSWORD_LENGTH_MAX}"
        )
    if not password.strip():
        raise PasswordPolicyError("password is only whitespace; choose one with visible characters")


@lru_cache(maxsize=8)
def _hasher(time_cost: int, memory_kib: int, parallelism: int) -> PasswordHasher:
    return PasswordHasher(
        time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism, type=Type.ID
    )


def hasher_for(settings: SecuritySettings) -> PasswordHasher:
    return _hasher(
        settings.password_hash_time_cost,
        settings.password_hash_memory_kib,
        settings.password_hash_parallelism,
    )


def hash_password(password: str, settings: SecuritySettings) -> str:
    """An argon2id PHC string (salt and cost inside); checks the policy first."""
    check_policy(password, settings)
    return hasher_for(settings).hash(password)


def verify_password(password_hash: str, password: str, settings: SecuritySettings) -> bool:
    """Whether ``password`` matches; a malformed stored hash never matches."""
    try:
        return hasher_for(settings).verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str, settings: SecuritySettings) -> bool:
    """True when the stored hash was made with other costs than the current settings."""
    try:
        return hasher_for(settings).check_needs_rehash(password_hash)
    except InvalidHashError:
        return True


@lru_cache(maxsize=8)
def _decoy_hash(time_cost: int, memory_kib: int, parallelism: int) -> str:
    return _hasher(time_cost, memory_kib, parallelism).hash("decoy password, never matches")


def spend_verification_time(password: str, settings: SecuritySettings) -> None:
    """Verify against a decoy so an unknown username takes as long as a wrong password."""
    decoy = _decoy_hash(
        settings.password_hash_time_cost,
        settings.password_hash_memory_kib,
        settings.password_hash_parallelism,
    )
    verify_password(decoy, password, settings)

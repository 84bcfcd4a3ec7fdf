"""Time-based one-time passwords (RFC 6238), the mandatory second factor.

Pure functions over a secret and a moment: no clock, no storage. The caller stores the time
step of the last accepted code so the same code cannot be used twice.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import datetime

import pyotp

TOTP_DIGITS = 6
TOTP_INTERVAL_S = 30
TOTP_DRIFT_STEPS = 1
"""Codes from one step before or after the current one are accepted (clock drift)."""


@dataclass(frozen=True)
class TotpEnrolment:
    """What an operator needs to set up an authenticator app; shown once."""

    secret: str
    otpauth_uri: str


def new_enrolment(username: str, issuer: str) -> TotpEnrolment:
    secret = pyotp.random_base32()
    return TotpEnrolment(secret=secret, otpauth_uri=provisioning_uri(secret, username, issuer))


def provisioning_uri(secret: str, username: str, issuer: str) -> str:
    return str(pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name=issuer))


def code_at(secret: str, moment: datetime) -> str:
    """The code an authenticator shows at ``moment``; used by tests and the demo."""
    return str(pyotp.TOTP(secret).at(moment))


def current_step(moment: datetime) -> int:
    return int(moment.timestamp()) // TOTP_INTERVAL_S


@dataclass(frozen=True)
class TotpCheck:
    """The outcome of checking a code: the matched time step, or why it was refused."""

    accepted: bool
    step: int
    reason: str


def check_code(secret: str, code: str, moment: datetime, last_used_step: int) -> TotpCheck:
    """Accept ``code`` if it is valid within the drift window and newer than the last one used.

    A code whose step is at or before ``last_used_step`` is a replay and is refused even
    though it is still within its validity window.
    """
    candidate = code.strip().replace(" ", "")
    if len(candidate) != TOTP_DIGITS or not candidate.isdigit():
        return TotpCheck(False, 0, f"a code is {TOTP_DIGITS} digits")
    totp = pyotp.TOTP(secret)
    step_now = current_step(moment)
    for offset in range(-TOTP_DRIFT_STEPS, TOTP_DRIFT_STEPS + 1):
        expected = str(totp.at(moment, counter_offset=offset))
        if hmac.compare_digest(expected, candidate):
            step = step_now + offset
            if step <= last_used_step:
                return TotpCheck(False, step, "this code was already used; wait for the next one")
            return TotpCheck(True, step, "")
    return TotpCheck(False, 0, "wrong or expired code")

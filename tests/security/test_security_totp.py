"""TOTP: current and adjacent codes accepted, others refused, a used code never again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlparse

from haltguard.security import totp

MOMENT = datetime(2026, 3, 2, 9, 0, 10, tzinfo=UTC)


def enrolment() -> totp.TotpEnrolment:
    return totp.new_enrolment("akiko.sato", "haltguard")


def test_enrolment_gives_a_base32_secret_and_an_otpauth_uri() -> None:
    made = enrolment()
    uri = urlparse(made.otpauth_uri)
    assert uri.scheme == "otpauth" and uri.netloc == "totp"
    assert "akiko.sato" in uri.path
    query = parse_qs(uri.query)
    assert query["secret"] == [made.secret]
    assert query["issuer"] == ["haltguard"]
    assert len(made.secret) >= 32


def test_current_code_is_accepted_and_its_step_returned() -> None:
    made = enrolment()
    check = totp.check_code(made.secret, totp.code_at(made.secret, MOMENT), MOMENT, 0)
    assert check.accepted
    assert check.step == totp.current_step(MOMENT)


def test_code_from_one_step_earlier_is_accepted_for_clock_drift() -> None:
    made = enrolment()
    code = totp.code_at(made.secret, MOMENT - timedelta(seconds=30))
    assert totp.check_code(made.secret, code, MOMENT, 0).accepted


def test_code_from_two_steps_away_is_refused() -> None:
    made = enrolment()
    code = totp.code_at(made.secret, MOMENT - timedelta(seconds=60))
    check = totp.check_code(made.secret, code, MOMENT, 0)
    assert not check.accepted
    assert check.reason == "wrong or expired code"


def test_code_of_another_secret_is_refused() -> None:
    code = totp.code_at(enrolment().secret, MOMENT)
    assert not totp.check_code(enrolment().secret, code, MOMENT, 0).accepted


def test_reusing_a_code_within_its_window_is_refused() -> None:
    made = enrolment()
    code = totp.code_at(made.secret, MOMENT)
    first = totp.check_code(made.secret, code, MOMENT, 0)
    again = totp.check_code(made.secret, code, MOMENT + timedelta(seconds=5), first.step)
    assert first.accepted and not again.accepted
    assert "already used" in again.reason


def test_older_code_is_refused_after_a_newer_one_was_used() -> None:
    made = enrolment()
    newer = totp.check_code(made.secret, totp.code_at(made.secret, MOMENT), MOMENT, 0)
    older_code = totp.code_at(made.secret, MOMENT - timedelta(seconds=30))
    assert not totp.check_code(made.secret, older_code, MOMENT, newer.step).accepted


def test_malformed_code_is_refused_with_the_expected_format() -> None:
    check = totp.check_code(enrolment().secret, "12ab56", MOMENT, 0)
    assert not check.accepted and "6 digits" in check.reason

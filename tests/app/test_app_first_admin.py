"""The first admin: created on a database with no operator, able to log in with what was shown,
audited, and never created again."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy.orm import Session, sessionmaker

from haltguard.app.first_admin import FIRST_ADMIN_ACTOR, PASSWORD_LENGTH, create_first_admin
from haltguard.db.session import session_scope
from haltguard.security import audit, flows, service, totp
from haltguard.security.errors import InvalidInputError
from haltguard.security.permissions import Role
from haltguard.security.testing import fast_test_settings, provision_operator

NOW = datetime(2026, 3, 2, 0, 30, tzinfo=UTC)
SETTINGS = fast_test_settings()


def test_an_empty_database_gets_an_admin_who_can_log_in_with_what_is_shown(
    session_factory: sessionmaker[Session],
) -> None:
    admin = create_first_admin(session_factory, username="admin", email="admin@example.com",
                               settings=SETTINGS, now=NOW)
    assert admin is not None
    assert len(admin.password) == PASSWORD_LENGTH and admin.password.isalnum()
    assert admin.enrolment.otpauth_uri.startswith("otpauth://totp/haltguard:admin?secret=")
    with session_scope(session_factory) as session:
        outcome = flows.login(
            session, username="admin", password=admin.password,
            totp_code=totp.code_at(admin.enrolment.secret, NOW), client_address="127.0.0.1",
            settings=SETTINGS, now=NOW,
        )
        assert outcome.refusal is None
        assert outcome.operator is not None and outcome.operator.role is Role.ADMIN
        entries, _ = audit.list_entries(session, actor=FIRST_ADMIN_ACTOR)
        assert [entry.target for entry in entries] == ["operator:admin"]
        assert audit.verify(session).ok


def test_a_second_start_creates_nobody(session_factory: sessionmaker[Session]) -> None:
    assert create_first_admin(session_factory, username="admin", email="admin@example.com",
                              settings=SETTINGS, now=NOW) is not None
    again = create_first_admin(session_factory, username="root", email="root@example.com",
                               settings=SETTINGS, now=NOW)
    assert again is None
    with session_scope(session_factory) as session:
        operators, total = service.list_operators(session)
    assert total == 1 and operators[0].username == "admin"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_database_with_any_operator_gets_no_first_admin(
    session_factory: sessionmaker[Session],
) -> None:
    provision_operator(session_factory, Role.VIEWER, username="vic", now=NOW)
    assert create_first_admin(session_factory, username="admin", email="admin@example.com",
                              settings=SETTINGS, now=NOW) is None


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_username_the_security_rules_refuse_creates_nothing(
    session_factory: sessionmaker[Session],
) -> None:
    with pytest.raises(InvalidInputError, match="is not allowed: use 3 to 64 lower-case letters"):
        create_first_admin(session_factory, username="Admin Person", email="a@example.com",
                           settings=SETTINGS, now=NOW)
    with session_scope(session_factory) as session:
        assert service.list_operators(session)[1] == 0

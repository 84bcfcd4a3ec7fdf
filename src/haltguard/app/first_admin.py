"""The first operator: an admin created when the service starts on a database with nobody in it.

Someone has to be able to log in before anyone can be invited. The password and the TOTP
secret are generated here, returned once for ``haltguard serve`` to show, and never stored
in clear; once any operator exists this creates nothing, so a restart shows nothing.
"""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from haltguard.db.session import session_scope
from haltguard.security import service
from haltguard.security.config import SecuritySettings
from haltguard.security.permissions import Role
from haltguard.security.totp import TotpEnrolment

FIRST_ADMIN_ACTOR = "system:first-start"
FIRST_ADMIN_DISPLAY_NAME = "First administrator"
PASSWORD_LENGTH = 20
"""Letters and digits only, so it survives copying into any terminal: about 119 bits."""
_PASSWORD_ALPHABET = string.ascii_letters + string.digits


@dataclass(frozen=True)
class FirstAdmin:
    """What the new admin needs to log in; shown once and not kept anywhere."""

    username: str
    password: str
    enrolment: TotpEnrolment


def new_password() -> str:
    return "".join(secrets.choice(_PASSWORD_ALPHABET) for _ in range(PASSWORD_LENGTH))


def create_first_admin(
    session_factory: sessionmaker[Session],
    *,
    username: str,
    email: str,
    settings: SecuritySettings,
    now: datetime,
) -> FirstAdmin | None:
    """The admin ``username`` if the database has no operator at all, else ``None``.

    Raises the security domain's ``InvalidInputError`` for a username or email it refuses.
    The creation is in the audit chain with the actor ``system:first-start``.
    """
    with session_scope(session_factory) as session:
        _, operators = service.list_operators(session, limit=1)
        if operators:
            return None
        password = new_password()
        operator, enrolment = service.create_operator(
            session,
            username=username,
            display_name=FIRST_ADMIN_DISPLAY_NAME,
            email=email,
            phone="",
            role=Role.ADMIN,
            password=password,
            actor=FIRST_ADMIN_ACTOR,
            settings=settings,
            now=now,
        )
        return FirstAdmin(username=operator.username, password=password, enrolment=enrolment)

"""Fixtures of the continuity tests: a local SMTP server the reminders' pages reach."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from aiosmtpd.controller import Controller
from continuity_support import Mailbox

from haltguard.responders.service import SmtpSettings
from haltguard.responders.settings import ResponderSettings


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, ResponderSettings]]:
    inbox = Mailbox()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, ResponderSettings(smtp=SmtpSettings(host="127.0.0.1", port=port))
    finally:
        controller.stop()

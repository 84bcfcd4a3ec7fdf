"""The console's settings come from the one configuration module, with their bounds."""

from __future__ import annotations

import pytest

from haltguard.app.config import ConfigError, load_config
from haltguard.console.settings import ConsoleSettings


def test_the_idle_timeout_and_live_limits_are_read_from_the_environment() -> None:
    config = load_config(None, environ={"HALTGUARD_CONSOLE_IDLE_MINUTES": "5",
                                        "HALTGUARD_CONSOLE_LIVE_CLIENTS_MAX": "80"})
    assert config.console == ConsoleSettings(idle_minutes=5, live_clients_max=80)
    assert load_config(None, environ={}).console == ConsoleSettings()


def test_an_idle_timeout_out_of_bounds_is_refused_by_name() -> None:
    with pytest.raises(ConfigError, match=r"console\.idle_minutes"):
        load_config(None, environ={"HALTGUARD_CONSOLE_IDLE_MINUTES": "0"})
    with pytest.raises(ValueError, match=r"console\.live_poll_ms"):
        ConsoleSettings(live_poll_ms=5)

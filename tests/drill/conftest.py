"""Drill tests run each scenario once per module on a demo system of its own, served on an
ephemeral port, and then assert what the drill proved."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import pytest

from haltguard.app.config import load_config
from haltguard.app.drill_system import own_system
from haltguard.app.system import System

ADMIN_TOKEN = "drill-test-admin-token-0123456789"


@contextmanager
def drill_system(data_dir: Path, lines: list[str], *, venue_process: bool) -> Iterator[System]:
    """A demo system with drills allowed; ``venue_process`` runs the venue supervised."""
    config = load_config(None, environ={}, overrides={
        "data_dir": str(data_dir), "venue.admin_token": ADMIN_TOKEN,
        "venue.process": venue_process, "drill.enabled": True})
    with own_system(config, lines.append) as system:
        yield system


SystemFactory = Callable[..., AbstractContextManager[System]]


@pytest.fixture(scope="session")
def make_drill_system() -> SystemFactory:
    """:func:`drill_system`, for module-scoped fixtures that run one drill each."""
    return drill_system

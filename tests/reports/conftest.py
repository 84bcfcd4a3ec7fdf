"""Fixtures for report tests: the real in-process venue (reports quote what it did)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from haltguard.gateway.control import InProcessVenueControl
from haltguard.gateway.demo import set_up_demo
from haltguard.gateway.runtime import VenueRuntime


@pytest.fixture
def venue(tmp_path: Path) -> Iterator[InProcessVenueControl]:
    runtime = VenueRuntime(tmp_path / "venue").start()
    set_up_demo(runtime)
    yield InProcessVenueControl(runtime)
    runtime.stop()

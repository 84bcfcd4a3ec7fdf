"""Fixtures for journal tests (helpers live in ``support.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "venue-data"

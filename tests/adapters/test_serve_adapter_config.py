"""`venue.adapter_file` is checked before anything starts: a venue with no address, or a
wrong adapter file, is refused with what to change and the file's line."""

from __future__ import annotations

from pathlib import Path

import pytest
from adapter_support import OURS_FILE

from haltguard.app.config import ConfigError, load_config
from haltguard.app.system import start_system


def _config(tmp_path: Path, **overrides: object) -> object:
    return load_config(None, environ={}, overrides={
        "data_dir": str(tmp_path / "data"), "venue.admin_token": "a" * 32, **overrides})


def test_an_adapter_needs_the_venue_at_an_address(tmp_path: Path) -> None:
    config = _config(tmp_path, **{"venue.adapter_file": str(OURS_FILE), "venue.process": False})
    with pytest.raises(ConfigError, match="needs the venue at an address"):
        start_system(config, demo=False)  # type: ignore[arg-type]
    assert not (tmp_path / "data" / "segments").exists(), "no venue was started"


def test_a_wrong_adapter_file_stops_the_start_naming_its_line(tmp_path: Path) -> None:
    broken = tmp_path / "adapter.yaml"
    text = OURS_FILE.read_text()
    assert '"Bearer {admin_token}"' in text
    broken.write_text(text.replace('"Bearer {admin_token}"', '"Bearer {token}"', 1))
    config = _config(tmp_path, **{"venue.adapter_file": str(broken)})
    with pytest.raises(ConfigError) as refused:
        start_system(config, demo=False)  # type: ignore[arg-type]
    assert f"{broken}:" in str(refused.value) and "{token}" in str(refused.value)
    assert not (tmp_path / "data" / "segments").exists(), "no venue was started"

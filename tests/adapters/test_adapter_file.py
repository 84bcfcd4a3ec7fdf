"""Adapter files are checked as a whole at load: a problem names the file, the line and
the key, and says what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest
from adapter_support import OTHER_FILE, OURS_FILE

from haltguard.adapters.errors import AdapterConfigError
from haltguard.adapters.spec import fields_reference, load_adapter
from haltguard.venue.types import MarketState


def _variant(tmp_path: Path, old: str, new: str) -> Path:
    text = OTHER_FILE.read_text(encoding="utf-8")
    assert old in text
    path = tmp_path / "adapter.yaml"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return path


def _line_of(path: Path, fragment: str) -> int:
    return next(n for n, line in enumerate(path.read_text().splitlines(), 1) if fragment in line)


def test_the_shipped_file_for_our_own_venue_loads_with_its_variables_set() -> None:
    spec = load_adapter(OURS_FILE, {"base_url": "http://venue:8000", "admin_token": "t"})
    assert spec.variables["base_url"] == "http://venue:8000"
    assert spec.states[MarketState.HALTED] == "halted"
    assert spec.feed is not None and spec.feed.type == "polling"


def test_the_other_venues_file_maps_its_own_words_and_symbols() -> None:
    spec = load_adapter(OTHER_FILE)
    assert spec.our_state("SUSPENDED") is MarketState.HALTED
    assert spec.venue_market("BTC-JPY") == "BTCJPY"
    assert spec.feed is not None and spec.feed.type == "sse"


def test_a_template_naming_an_unknown_field_is_refused_with_its_line(tmp_path: Path) -> None:
    path = _variant(tmp_path, 'note: "{reason} ({incident_id})"', 'note: "{reasons}"')
    with pytest.raises(AdapterConfigError) as refused:
        load_adapter(path)
    line = _line_of(path, "{reasons}")
    assert refused.value.where == f"{path}:{line} (operations.set_market_state.body.note)"
    assert "{reasons}" in refused.value.message and "{reason}" in refused.value.message
    assert refused.value.message_ja


def test_an_unknown_key_is_refused_with_the_keys_allowed(tmp_path: Path) -> None:
    path = _variant(tmp_path, "    confirm: all_halted", "    confirm_by: all_halted")
    with pytest.raises(AdapterConfigError, match="unknown key 'confirm_by'") as refused:
        load_adapter(path)
    assert f":{_line_of(path, 'confirm_by')} " in refused.value.where


def test_a_state_that_is_not_in_the_contract_is_refused(tmp_path: Path) -> None:
    path = _variant(tmp_path, "  open: TRADING", "  trading: TRADING")
    with pytest.raises(AdapterConfigError, match="'trading' is not a contract state"):
        load_adapter(path)


def test_two_states_given_the_same_venue_word_are_refused(tmp_path: Path) -> None:
    path = _variant(tmp_path, "  closed: CLOSED", "  closed: SUSPENDED")
    with pytest.raises(AdapterConfigError, match="given to two states"):
        load_adapter(path)


def test_a_missing_contract_operation_is_refused(tmp_path: Path) -> None:
    path = _variant(tmp_path, "  kill_switch:", "  kill_switch_off:")
    with pytest.raises(AdapterConfigError, match="unknown key 'kill_switch_off'"):
        load_adapter(path)


def test_setting_a_variable_the_file_does_not_declare_is_refused() -> None:
    with pytest.raises(AdapterConfigError, match="no variable 'base_uri'"):
        load_adapter(OTHER_FILE, {"base_uri": "http://x"})


def test_broken_yaml_is_refused_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("adapter: 1\nname: [unclosed\n", encoding="utf-8")
    with pytest.raises(AdapterConfigError, match="not valid YAML") as refused:
        load_adapter(path)
    assert refused.value.where.startswith(f"{path}:")


def test_the_documented_fields_table_is_the_one_the_loader_checks() -> None:
    docs = Path(__file__).resolve().parents[2] / "docs" / "adapters.md"
    assert fields_reference() in docs.read_text(encoding="utf-8"), (
        "docs/adapters.md is out of date: paste haltguard.adapters.spec.fields_reference()")

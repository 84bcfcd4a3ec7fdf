"""The menu: a registry later domains add their screens to; each role sees what it may open."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from haltguard.console.navigation import SCREENS_MAX, Screen, ScreenRegistry
from haltguard.console.texts import TEXTS, jst_utc, until_text
from haltguard.console.views import default_screens
from haltguard.security.permissions import Action, Role

TEMPLATES = Path(__file__).resolve().parents[2] / "src" / "haltguard" / "console" / "templates"


def test_a_later_domain_adds_its_screen_and_only_the_roles_allowed_see_it() -> None:
    registry = default_screens()
    registry.register(Screen("/support", "サポート窓口", "Support desk", Action.NOTIFY_READ))
    support = [screen.path for screen in registry.visible_to(Role.SUPPORT)]
    viewer = [screen.path for screen in registry.visible_to(Role.VIEWER)]
    assert support[-1] == "/support" and "/support" not in viewer
    assert "/audit" not in support  # the audit chain is the commanders'
    assert [screen.path for screen in registry.visible_to(Role.ADMIN)] == [
        screen.path for screen in registry.all()]


@pytest.mark.parametrize("path", ["/overview", "support", "//evil.example"])
def test_a_screen_path_is_registered_once_and_starts_with_one_slash(path: str) -> None:
    registry = default_screens()
    with pytest.raises(ValueError, match="console"):
        registry.register(Screen(path, "x", "x", Action.INCIDENT_READ))


def test_the_menu_is_bounded() -> None:
    registry = ScreenRegistry()
    for index in range(SCREENS_MAX):
        registry.register(Screen(f"/s{index}", "x", "x", Action.INCIDENT_READ))
    with pytest.raises(ValueError, match="at most"):
        registry.register(Screen("/one-more", "x", "x", Action.INCIDENT_READ))


def test_every_text_a_template_asks_for_exists_in_both_languages() -> None:
    used: set[str] = set()
    for template in TEMPLATES.glob("*.html"):
        used |= set(re.findall(r"""v\.t\(\s*["']([a-z_]+)["']""", template.read_text()))
    assert used, "no texts found: the pattern no longer matches the templates"
    missing = used - set(TEXTS)
    assert not missing, f"texts used by templates but not defined: {sorted(missing)}"
    for key, (ja, en) in TEXTS.items():
        assert ja.strip() and en.strip(), key


def test_times_read_japan_time_with_utc_beside_to_the_second() -> None:
    from datetime import UTC, datetime, timedelta

    moment = datetime(2025, 1, 6, 0, 30, 5, 123456, tzinfo=UTC)
    assert jst_utc(moment) == "2025-01-06 09:30:05 JST (00:30:05 UTC)"
    late = datetime(2025, 1, 6, 20, 0, 0, tzinfo=UTC)
    assert jst_utc(late) == "2025-01-07 05:00:00 JST (2025-01-06 20:00:00 UTC)"
    assert until_text(moment + timedelta(minutes=4, seconds=10), moment, "en") == "in 4 min"
    assert until_text(moment - timedelta(seconds=90), moment, "ja") == "1分超過"
    assert until_text(moment + timedelta(hours=2, minutes=5), moment, "ja") == "2時間5分後"

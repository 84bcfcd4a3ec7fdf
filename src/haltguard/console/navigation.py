"""The console's navigation: one registry of screens, so a domain adds its own in one call.

A screen is a path under ``/console``, its title in both languages and the permission that
shows it. The menu lists the screens the operator's role allows, in the order registered;
each screen's route still checks the permission itself (the menu only hides, the route
refuses). The registry is a part of the app's context, made by the composition root
(``app/operations.py``): a later domain (the support desk, continuity, failover, trade
correction, customers) registers its screen there with :meth:`ScreenRegistry.register` and
includes its own router; ``docs/console.md`` shows how.
"""

from __future__ import annotations

from dataclasses import dataclass

from haltguard.security.permissions import Action, Role, is_allowed

SCREENS_MAX = 64


@dataclass(frozen=True)
class Screen:
    """One entry of the menu: ``path`` below ``/console`` (``/incidents``)."""

    path: str
    title_ja: str
    title_en: str
    permission: Action

    def title(self, language: str) -> str:
        return self.title_ja if language == "ja" else self.title_en


class ScreenRegistry:
    """The screens in menu order; a path is registered once."""

    def __init__(self) -> None:
        self._screens: list[Screen] = []

    def register(self, screen: Screen) -> Screen:
        if not screen.path.startswith("/") or screen.path.startswith("//"):
            raise ValueError(f"a console screen's path starts with one '/': {screen.path!r}")
        if any(known.path == screen.path for known in self._screens):
            raise ValueError(f"the console already has a screen at {screen.path}")
        if len(self._screens) >= SCREENS_MAX:
            raise ValueError(f"the console's menu holds at most {SCREENS_MAX} screens")
        self._screens.append(screen)
        return screen

    def visible_to(self, role: Role) -> list[Screen]:
        return [screen for screen in self._screens if is_allowed(role, screen.permission)]

    def all(self) -> list[Screen]:
        return list(self._screens)

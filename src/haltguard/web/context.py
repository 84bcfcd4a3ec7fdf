"""``OperationsContext``: everything the operations routes are given, put on the app once.

The composition root (``app/operations.py``) builds one context and attaches it to the app
(:func:`attach`); every route and dependency reads it through the one dependency
:func:`context`. Nothing else is kept on ``app.state``.

The fields every domain uses are typed fields (the database, the clock, the venue control).
Each domain's own objects (its settings, the login throttle, the status publisher, ...) are
*parts*, keyed by their class and read with :meth:`OperationsContext.part`, which checks the
type: ``web/`` sits below the domains (they import its plumbing), so it cannot name their
classes without an import cycle, and each domain reads its parts through its own typed
dependency (``security.dependencies.settings_of``, ``responders.views.responder_settings``,
...). A part that is absent is a wiring mistake of the root and says so.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from haltguard.common.clock import Clock
from haltguard.venue.control import VenueControl
from haltguard.web.settings import Settings

PartT = TypeVar("PartT")

_STATE_NAME = "context"


class ContextMissingError(RuntimeError):
    """The app was not built by the composition root, or a part was not given to it."""


@dataclass(frozen=True)
class OperationsContext:
    """What the operations app runs with; frozen, so no route can change it for others."""

    settings: Settings
    engine: Engine
    session_factory: sessionmaker[Session]
    clock: Clock
    venue_control: VenueControl | None
    parts: Mapping[type[Any], object] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        for kind, value in self.parts.items():
            if not isinstance(value, kind):
                raise TypeError(
                    f"the part registered as {kind.__name__} is a {type(value).__name__}"
                )
        object.__setattr__(self, "parts", MappingProxyType(dict(self.parts)))

    def part(self, kind: type[PartT]) -> PartT:
        """The part of class ``kind``; a missing one is a wiring mistake of the root."""
        value = self.parts.get(kind)
        if value is None:
            raise ContextMissingError(
                f"the operations context has no {kind.__name__}: build the app with "
                "haltguard.app.operations.create_app, which gives every domain its parts"
            )
        assert isinstance(value, kind)
        return value

    def optional_part(self, kind: type[PartT]) -> PartT | None:
        """The part of class ``kind`` where the root was given one."""
        value = self.parts.get(kind)
        assert value is None or isinstance(value, kind)
        return value

    def with_parts(self, values: Iterable[object]) -> OperationsContext:
        """This context with ``values`` added or replacing the parts of their classes."""
        parts = dict(self.parts)
        parts.update({type(value): value for value in values})
        return replace(self, parts=parts)


def parts_of(*values: object) -> Mapping[type[Any], object]:
    """``values`` keyed by their classes, for :attr:`OperationsContext.parts`."""
    return {type(value): value for value in values}


def attach(app: FastAPI, operations: OperationsContext) -> None:
    """Put ``operations`` on ``app``: the one attribute of its state the routes read."""
    setattr(app.state, _STATE_NAME, operations)


def context_of(app: FastAPI) -> OperationsContext:
    """The context the root attached to ``app``."""
    operations = getattr(app.state, _STATE_NAME, None)
    if not isinstance(operations, OperationsContext):
        raise ContextMissingError(
            "this app has no operations context: build it with "
            "haltguard.app.operations.create_app"
        )
    return operations


def context(request: Request) -> OperationsContext:
    """The dependency every operations route and dependency reads its context through."""
    return context_of(request.app)

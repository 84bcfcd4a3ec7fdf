"""The operations context: built once with typed parts, read through one dependency."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from fastapi import FastAPI
from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker

from haltguard.common.clock import ManualClock
from haltguard.web.context import (
    ContextMissingError,
    OperationsContext,
    attach,
    context_of,
    parts_of,
)
from haltguard.web.settings import Settings


class Limits:
    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute


class Other:
    pass


START = datetime(2026, 1, 5, tzinfo=UTC)


def make_context(*parts: object, keyed: dict[type, object] | None = None) -> OperationsContext:
    engine = create_engine("sqlite://")
    return OperationsContext(
        settings=Settings(database_url="sqlite://"), engine=engine,
        session_factory=sessionmaker(engine), clock=ManualClock(START), venue_control=None,
        parts=keyed if keyed is not None else parts_of(*parts),
    )


def test_a_part_is_found_by_its_class() -> None:
    limits = Limits(3)
    assert make_context(limits, Other()).part(Limits) is limits


def test_a_part_registered_under_another_class_is_refused_when_the_context_is_built() -> None:
    with pytest.raises(TypeError, match="the part registered as Limits is a Other"):
        make_context(keyed={Limits: Other()})


def test_a_missing_part_names_it_and_the_root_that_gives_it() -> None:
    with pytest.raises(ContextMissingError, match=r"no Limits: build the app with "
                                                  r"haltguard\.app\.operations\.create_app"):
        make_context(Other()).part(Limits)
    assert make_context(Other()).optional_part(Limits) is None


def test_replacing_a_part_makes_a_new_context_and_leaves_the_first_unchanged() -> None:
    first = make_context(Limits(3))
    second = first.with_parts([Limits(10)])
    assert (first.part(Limits).per_minute, second.part(Limits).per_minute) == (3, 10)


def test_the_parts_cannot_be_changed_in_place() -> None:
    context = make_context(Limits(3))
    with pytest.raises(TypeError):
        context.parts[Other] = Other()  # type: ignore[index]


def test_an_app_not_built_by_the_root_says_how_to_build_it() -> None:
    with pytest.raises(ContextMissingError, match=r"build it with haltguard\.app\.operations"):
        context_of(FastAPI())


def test_the_attached_context_is_the_one_the_app_reads() -> None:
    app = FastAPI()
    context = make_context(Limits(3))
    attach(app, context)
    assert context_of(app) is context

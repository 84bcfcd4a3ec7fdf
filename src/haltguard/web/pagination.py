"""One way to page through any list: ``limit`` and ``offset``, with a hard maximum.

Every list endpoint takes :class:`PageParams` and returns :class:`Page`, so clients page
through incidents, timelines and audit entries the same way.
"""

from __future__ import annotations

from typing import Annotated, Any, Generic, TypeVar

from fastapi import Depends, Query
from pydantic import BaseModel
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

LIMIT_DEFAULT = 50
LIMIT_MAX = 200

ItemT = TypeVar("ItemT")


class PageParams(BaseModel):
    limit: int = LIMIT_DEFAULT
    offset: int = 0


def page_params(
    limit: Annotated[int, Query(ge=1, le=LIMIT_MAX, description="Items per page.")] = (
        LIMIT_DEFAULT
    ),
    offset: Annotated[int, Query(ge=0, le=10_000_000, description="Items to skip.")] = 0,
) -> PageParams:
    return PageParams(limit=limit, offset=offset)


PageParamsDep = Annotated[PageParams, Depends(page_params)]


class Page(BaseModel, Generic[ItemT]):
    """One page. ``next_offset`` is where the next page starts, or ``None`` after the last."""

    items: list[ItemT]
    total: int
    limit: int
    offset: int
    next_offset: int | None


def paginate(session: Session, query: Select[Any], params: PageParams) -> tuple[list[Any], int]:
    """The rows of ``query`` on the requested page, and how many rows there are in all."""
    total = session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
    rows = list(session.scalars(query.limit(params.limit).offset(params.offset)))
    return rows, int(total or 0)


def make_page(items: list[ItemT], total: int, params: PageParams) -> Page[ItemT]:
    following = params.offset + len(items)
    return Page[ItemT](
        items=items,
        total=total,
        limit=params.limit,
        offset=params.offset,
        next_offset=following if following < total else None,
    )

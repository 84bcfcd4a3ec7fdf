"""What the rest of haltguard hears about pages: one small value per thing that happened.

The incident timeline subscribes with :func:`haltguard.responders.service.on_page_event`;
listeners run inside the same transaction as the change, so the timeline entry and the page
state commit together or not at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class PageEventKind(StrEnum):
    PAGED = "paged"
    """Level 1 was paged for a new page."""
    ESCALATED = "escalated"
    """A level timed out without acknowledgement and the next level was paged."""
    LEVEL_EMPTY = "level_empty"
    """A level resolved to nobody reachable; the page moved on at once."""
    ACKNOWLEDGED = "acknowledged"
    EXHAUSTED = "exhausted"
    """Every level (and repeat) was paged and nobody acknowledged."""
    CANCELLED = "cancelled"
    DELIVERY_FAILED = "delivery_failed"
    """One channel to one person failed after its last retry."""


@dataclass(frozen=True)
class PageEvent:
    page_id: int
    incident_id: str
    at: datetime
    kind: PageEventKind
    actor: str
    text_ja: str
    text_en: str
    level_number: int | None = None
    people: tuple[str, ...] = ()
    details: dict[str, Any] = field(default_factory=dict)

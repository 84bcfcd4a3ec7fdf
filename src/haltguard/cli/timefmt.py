"""Times in the CLI's tables, for a person reading at 80 columns: Japan time to the second
with UTC beside it (never an ISO string with microseconds), and how long until a due time.

The API answers ISO 8601 with a zone; these helpers take that text (or ``None``) and give
the cell. A cell is two short lines (``2025-01-06 09:30:05 JST`` over ``00:30:05 UTC``), so a
table of several times still fits 80 columns without breaking a word.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

JST = timezone(timedelta(hours=9), "JST")


Moment = str | datetime | None
"""An API field's ISO text, or a time read from the database (naive ones are UTC)."""


def parse(text: Moment) -> datetime | None:
    """The moment an API field names, or None when empty or not a time."""
    if isinstance(text, datetime):
        return text if text.tzinfo is not None else text.replace(tzinfo=UTC)
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def table_time(text: Moment, missing: str = "-") -> str:
    """``2025-01-06 09:30:05 JST`` over ``00:30:05 UTC`` (the UTC date too when it differs)."""
    moment = parse(text)
    if moment is None:
        return str(text or missing)
    local, utc = moment.astimezone(JST), moment.astimezone(UTC)
    utc_text = f"{utc:%H:%M:%S}" if utc.date() == local.date() else f"{utc:%m-%d %H:%M:%S}"
    return f"{local:%Y-%m-%d %H:%M:%S} JST\n{utc_text} UTC"


def line_time(text: Moment, missing: str = "-") -> str:
    """``2025-01-06 09:30:05 JST (00:30:05 UTC)``: the same on one line, for prose."""
    cell = table_time(text, missing)
    first, _, second = cell.partition("\n")
    return f"{first} ({second})" if second else first


def until(due: datetime, now: datetime) -> str:
    """``in 4 min``, ``in 1 h 5 min``, ``12 s overdue``."""
    seconds = int((due - now).total_seconds())
    amount = abs(seconds)
    if amount < 60:
        span = f"{amount} s"
    elif amount < 3600:
        span = f"{amount // 60} min"
    else:
        hours, minutes = divmod(amount // 60, 60)
        span = f"{hours} h {minutes} min"
    return f"in {span}" if seconds >= 0 else f"{span} overdue"


def due_in(text: Moment, now: datetime) -> str:
    """How long until the due time ``text`` (``in 4 min``, ``2 min overdue``), for prose."""
    moment = parse(text)
    return "-" if moment is None else until(moment, now)


def due_time(text: Moment, now: datetime) -> str:
    """A due time's cell: when (JST over UTC; the date only when it is not today in Japan)
    and how long until it."""
    moment = parse(text)
    if moment is None:
        return str(text or "-")
    local, utc = moment.astimezone(JST), moment.astimezone(UTC)
    day = "" if local.date() == now.astimezone(JST).date() else f"{local:%m-%d} "
    return f"{day}{local:%H:%M:%S} JST\n{utc:%H:%M:%S} UTC\n{until(moment, now)}"

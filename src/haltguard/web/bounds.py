"""The bounds every value read from a request keeps, declared once for every domain's routes.

A database row id or a count is a 64-bit integer in SQLite and PostgreSQL; a larger one sent
by a client would reach the driver and fail there as a 500. Path, query and body fields use
these types instead of a bare ``int`` or ``str``, so a value out of range is a 422 naming the
field and its limit before any query runs. Market symbols and asset codes follow the venue's
own grammar (:mod:`haltguard.venue.markets`), so nothing the venue would not accept is ever
put into a URL of its admin API.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from haltguard.venue.markets import (
    ASSET_CODE_LENGTH_MAX,
    ASSET_CODE_PATTERN,
    MARKET_SYMBOL_LENGTH_MAX,
    MARKET_SYMBOL_PATTERN,
)
from haltguard.venue.types import INT64_MAX

__all__ = ["INT64_MAX", "KEY_LENGTH_MAX", "AssetCode", "Count", "DbId", "Int64", "Key",
           "MarketSymbol"]

KEY_LENGTH_MAX = 200
"""The longest name, handle, key or filter value a path or query may carry."""

DbId = Annotated[int, Field(ge=1, le=INT64_MAX)]
"""The id of a stored row (incident, approval, page, notice, subscriber, ...)."""

Count = Annotated[int, Field(ge=0, le=INT64_MAX)]
"""A quantity that cannot be negative: customers affected, orders rejected, a sequence number."""

Int64 = Annotated[int, Field(ge=-INT64_MAX - 1, le=INT64_MAX)]
"""Any integer a database column holds; the domain checks its own narrower range after."""

Key = Annotated[str, Field(min_length=1, max_length=KEY_LENGTH_MAX)]
"""A name that selects something (an operator, a schedule, a component, a filter value)."""

MarketSymbol = Annotated[str, Field(min_length=3, max_length=MARKET_SYMBOL_LENGTH_MAX,
                                    pattern=MARKET_SYMBOL_PATTERN,
                                    description="A market, e.g. BTC-JPY.")]
"""A market symbol in the venue's grammar."""

AssetCode = Annotated[str, Field(min_length=1, max_length=ASSET_CODE_LENGTH_MAX,
                                 pattern=ASSET_CODE_PATTERN, description="An asset, e.g. BTC.")]
"""An asset code in the venue's grammar."""

"""The one timestamp type of API responses: UTC, always with an explicit offset.

SQLite hands back naive datetimes (it stores no zone) while PostgreSQL hands back aware ones; the
API must not show which database is behind it, and `date-time` (RFC 3339) requires an offset.
Every `*Public` schema declares its timestamps as `UtcDateTime`, so normalising happens here,
once, as a response is built: a naive value is read as the UTC it was written as (every writer
uses `utcnow()`), an aware one is converted to UTC, and Pydantic writes UTC with `Z`.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from pydantic import AfterValidator


def as_utc(value: dt.datetime) -> dt.datetime:
    """`value` as an aware UTC datetime (naive values are taken to be UTC already)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


UtcDateTime = Annotated[dt.datetime, AfterValidator(as_utc)]
"""A response timestamp: UTC with `Z`, declared as `format: date-time`."""

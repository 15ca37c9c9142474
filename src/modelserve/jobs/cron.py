"""Cron expressions of scheduled jobs, read with `cronsim` in the schedule's time zone.

Ticks are computed in the schedule's zone (so `0 3 * * *` in Europe/Paris is 03:00 there,
summer and winter: cronsim follows DST as cron does) and stored in UTC.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo

from cronsim import CronSim, CronSimError

from modelserve.errors import InvalidInputError


def zone(name: str) -> zoneinfo.ZoneInfo:
    """The IANA zone `name` (InvalidInputError, a 422, when there is none)."""
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise InvalidInputError(f"unknown time zone {name!r}") from None


def next_tick(cron: str, timezone: str, after: dt.datetime) -> dt.datetime:
    """The first time after `after` that `cron` names in `timezone`, in UTC.
    InvalidInputError (a 422) for an expression cron cannot read or that never fires."""
    if after.tzinfo is None:
        after = after.replace(tzinfo=dt.UTC)
    start = after.astimezone(zone(timezone))
    try:
        found = next(CronSim(cron, start))
    except CronSimError as exc:
        raise InvalidInputError(f"cron expression {cron!r}: {exc}") from None
    except StopIteration:
        raise InvalidInputError(f"cron expression {cron!r} never fires") from None
    return found.astimezone(dt.UTC)

"""Every ORM table, imported here so the metadata (and Alembic) sees all of them.

One module per domain: `registry.py` (models, versions, aliases, traffic), `auth.py` (users,
API keys, refresh tokens, audit events), `predictions.py` (the sampled prediction log),
`jobs.py` (batch jobs, their uploads, chunks and failed rows), `schedules.py` (scheduled jobs
and the ticks they claimed).
"""

from modelserve.db.tables import (
    auth,  # noqa: F401
    jobs,  # noqa: F401
    predictions,  # noqa: F401
    registry,  # noqa: F401
    schedules,  # noqa: F401
)

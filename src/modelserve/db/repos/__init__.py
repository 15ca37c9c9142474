"""Data access, one module per domain. Functions are keyword-only and take the session.

`Session` names the session type for layers that must not import SQLAlchemy themselves.
"""

from sqlalchemy.ext.asyncio import AsyncSession as Session

__all__ = ["Session"]

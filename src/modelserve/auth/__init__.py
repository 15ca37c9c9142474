"""Users, login sessions, scoped API keys, rate limits and the audit log (engine layer).

No HTTP here: `modelserve.http.auth_routes` and `modelserve.http.deps` translate. Start with
`AuthSystem` (`system.py`), which builds every part from Settings.
"""

from modelserve.auth.bootstrap import DevCredentials
from modelserve.auth.guard import AuthGuard
from modelserve.auth.signing import check_auth_settings
from modelserve.auth.system import AuthSystem

__all__ = ["AuthGuard", "AuthSystem", "DevCredentials", "check_auth_settings"]

"""The admin console: server-rendered pages at /console over the same services as the API.

    from modelserve.console import install_console
    install_console(app, settings)      # app from `create_app`, auth on

docs/console.md describes the pages, the security model and the settings (`ConsoleConfig`).
"""

from modelserve.console.app import install_console

__all__ = ["install_console"]

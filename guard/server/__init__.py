"""The HTTP server: ``create_app`` (the one place that builds things), thin routes,
the gate middleware, admission and moderation.
"""

from guard.server.app import create_app

__all__ = [
    "create_app",
]

"""``guard serve``: build the app from settings and run it under uvicorn."""

from __future__ import annotations

import math
import sys

from guard.errors import PolicyError


def cannot_start(exc: PolicyError) -> int:
    """Says what to fix, on stderr; the exit status for it."""
    print("guard cannot start; fix these problems:\n" + "\n".join(exc.problems), file=sys.stderr)
    return 2


def serve_with(overrides: dict[str, object]) -> int:
    import uvicorn

    from guard.logs import log_config
    from guard.server.app import create_app
    from guard.settings import Settings

    settings = Settings(**overrides)  # type: ignore[arg-type]
    try:
        app = create_app(settings)
    except PolicyError as exc:
        return cannot_start(exc)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        log_config=log_config(settings.log_format, settings.log_level),
        access_log=False,  # guard logs each request itself, with key, policy and request id
        timeout_graceful_shutdown=math.ceil(settings.shutdown_timeout_s),
    )
    return 0

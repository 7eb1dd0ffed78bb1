"""The ``guard`` command."""

from guard.cli.main import main

__all__ = [
    "main",
]

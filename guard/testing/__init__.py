"""A real OpenAI-compatible HTTP app for tests and benchmarks. A leaf."""

from guard.testing.fake_upstream import create_fake_upstream

__all__ = [
    "create_fake_upstream",
]

"""Fixtures for the long-running operations tests: a real PostgreSQL server (once per session)."""

from __future__ import annotations

from tests.postgres import postgres_url  # noqa: F401  (the session fixture)

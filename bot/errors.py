"""The domain's exceptions, in a module that imports nothing: the CLI catches them without
loading SQLAlchemy and the models first (``hotline-bot kb validate`` needs neither)."""
from __future__ import annotations

__all__ = ["ConversationError", "SchemaError", "StoreUnavailable"]


class ConversationError(Exception):
    """A request the conversation domain refuses. ``kind`` maps to HTTP in connectors/errors.py:
    invalid → 400, forbidden → 403, not_found → 404, conflict → 409, limited → 429."""

    def __init__(self, kind: str, message: str, field: str | None = None):
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.field = field


class StoreUnavailable(RuntimeError):
    """The database cannot be reached in time; the caller should answer 503, not crash."""


class SchemaError(RuntimeError):
    """The database schema is not what this release expects (run ``hotline-bot db upgrade``)."""

"""The error every dataset loader raises for unusable input (its own module so that io and cache share it
without importing each other)."""

from __future__ import annotations

__all__ = ["DataError"]


class DataError(ValueError):
    """A dataset file or folder that cannot be used as it is; the message says which and how to fix it."""

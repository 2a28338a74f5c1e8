"""Coordinator stores: SQLite (default, embedded) and Redis."""

from __future__ import annotations

from pathlib import Path

from coordinator.store.base import GlobalModel, RoundState, Store, StoreError

__all__ = ["GlobalModel", "RoundState", "Store", "StoreError", "open_store"]


def open_store(kind: str, location: str | Path, **options) -> Store:
    """The store a coordinator's settings name: ("sqlite", path) or ("redis", url, prefix=...).

    The backends are imported here so a SQLite coordinator does not need the redis package.
    """
    if kind == "sqlite":
        from coordinator.store.sqlite import SQLiteStore
        return SQLiteStore(location, **options)
    if kind == "redis":
        from coordinator.store.redis import RedisStore
        return RedisStore(str(location), **options)
    raise ValueError(f"unknown store kind {kind!r}: expected 'sqlite' or 'redis'")

"""Coordinator stores: SQLite (default, embedded) and Redis."""

from coordinator.store.base import GlobalModel, RoundState, Store, StoreError

__all__ = ["GlobalModel", "RoundState", "Store", "StoreError"]

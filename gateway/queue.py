"""The store-and-forward queue: uplinks on disk until the coordinator has answered them.

An uplink is written here (and the transaction committed) before the broker
gets its PUBACK, and removed only once the coordinator has given a verdict.
So a gateway restart, a coordinator outage or a power cut loses nothing a
device handed over. SQLite in WAL mode with synchronous=FULL: a commit is on
disk when it returns.

The same payload is stored once (keyed by its SHA-256): the broker delivers a
message again when the gateway did not acknowledge it before a disconnect.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

QUEUED, DUPLICATE, FULL = "queued", "duplicate", "full"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS uplinks (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    digest   BLOB NOT NULL UNIQUE,  -- SHA-256 of the payload
    device   TEXT NOT NULL,         -- pk_hex of the sending device, from its topic
    round_pk BLOB,                  -- the round key the gateway knew when it took the uplink
    received REAL NOT NULL,         -- unix time
    payload  BLOB NOT NULL
);
"""


def message_id(payload: bytes) -> str:
    """The "msg" field of an ack: the first 16 hex digits of SHA-256 of the uplink payload."""
    return hashlib.sha256(payload).hexdigest()[:16]


@dataclass(frozen=True)
class Uplink:
    id: int
    device: str
    payload: bytes
    round_pk: bytes | None
    received: float
    digest: bytes  # SHA-256 of the payload

    @property
    def msg(self) -> str:
        """The ack's "msg": the first 16 hex digits of the payload's SHA-256."""
        return self.digest[:8].hex()


@dataclass(frozen=True)
class Incoming:
    """An uplink to store: the device's pk_hex and the payload."""

    device: str
    payload: bytes


class UplinkQueue:
    """Bounded by message count and payload bytes; safe to use from several threads."""

    def __init__(self, path: str | Path, max_messages: int, max_bytes: int):
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.path = str(path)
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        count, size = self._db.execute("SELECT count(*), coalesce(sum(length(payload)), 0) "
                                       "FROM uplinks").fetchone()
        self.count, self.bytes = count, size

    def put(self, items: list[Incoming], round_pk: bytes | None) -> list[str]:
        """Store items in one transaction; for each: QUEUED, DUPLICATE (already queued) or
        FULL (refused: the queue is at max_messages or max_bytes)."""
        outcome = []
        now = time.time()
        with self._lock:
            count, size = self.count, self.bytes
            with self._transaction():
                for item in items:
                    digest = hashlib.sha256(item.payload).digest()
                    if self._db.execute("SELECT 1 FROM uplinks WHERE digest = ?", (digest,)).fetchone():
                        outcome.append(DUPLICATE)
                    elif count + 1 > self.max_messages or size + len(item.payload) > self.max_bytes:
                        outcome.append(FULL)
                    else:
                        self._db.execute("INSERT INTO uplinks (digest, device, round_pk, received, "
                                         "payload) VALUES (?, ?, ?, ?, ?)",
                                         (digest, item.device, round_pk, now, item.payload))
                        count, size = count + 1, size + len(item.payload)
                        outcome.append(QUEUED)
            self.count, self.bytes = count, size  # only once committed
        return outcome

    def head(self, limit: int, after: int = 0) -> list[Uplink]:
        """The oldest uplinks (those after the id `after`), first in first out."""
        with self._lock:
            rows = self._db.execute("SELECT id, device, payload, round_pk, received, digest FROM uplinks "
                                    "WHERE id > ? ORDER BY id LIMIT ?", (after, limit)).fetchall()
        return [Uplink(i, d, bytes(p), bytes(r) if r is not None else None, t, bytes(h))
                for i, d, p, r, t, h in rows]

    def remove(self, ids: list[int]) -> None:
        if not ids:
            return
        marks = ",".join("?" * len(ids))
        with self._lock:
            # A removal need not reach the disk at once: lost in a power cut, the uplink is sent
            # again and answered `duplicate`. The next FULL commit syncs it along anyway.
            self._db.execute("PRAGMA synchronous=NORMAL")
            try:
                with self._transaction():
                    gone, size = self._db.execute(
                        f"SELECT count(*), coalesce(sum(length(payload)), 0) FROM uplinks "
                        f"WHERE id IN ({marks})", ids).fetchone()
                    self._db.execute(f"DELETE FROM uplinks WHERE id IN ({marks})", ids)
            finally:
                self._db.execute("PRAGMA synchronous=FULL")
            self.count, self.bytes = self.count - gone, self.bytes - size

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _transaction(self):
        return _Transaction(self._db)


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on an exception."""

    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self):
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, *exc):
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")
        return False

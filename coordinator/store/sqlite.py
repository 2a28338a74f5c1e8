"""SQLite store: the default, one file next to the coordinator, no server to run.

WAL journal so readers do not block the writer; one connection shared by the
worker threads behind a lock, and every method is one transaction.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path

from coordinator.store.base import GlobalModel, RoundState, Store, StoreError

# _MIGRATIONS[i] takes the schema from version i to i + 1; the current version is its length.
# To change the schema, append a step: a store written by an older coordinator is upgraded on open.
_MIGRATIONS: list[tuple[str, ...]] = [
    (
        "CREATE TABLE state (id INTEGER PRIMARY KEY CHECK (id = 1), json TEXT NOT NULL)",
        "CREATE TABLE sum_dict (pk BLOB PRIMARY KEY, ephm_pk BLOB NOT NULL)",
        "CREATE TABLE update_participants (pk BLOB PRIMARY KEY)",
        "CREATE TABLE seeds (sum_pk BLOB NOT NULL, update_pk BLOB NOT NULL, seed BLOB NOT NULL,"
        " PRIMARY KEY (sum_pk, update_pk))",
        "CREATE TABLE aggregate (id INTEGER PRIMARY KEY CHECK (id = 1), mask BLOB NOT NULL,"
        " nb_models INTEGER NOT NULL)",
        # masks can be large: keyed by their digest rather than by the blob itself
        "CREATE TABLE votes (digest BLOB PRIMARY KEY, mask BLOB NOT NULL, count INTEGER NOT NULL)",
        "CREATE TABLE voters (pk BLOB PRIMARY KEY)",
        "CREATE TABLE global_models (round_id INTEGER PRIMARY KEY, weights BLOB NOT NULL,"
        " created REAL NOT NULL, meta TEXT NOT NULL)",
    ),
]
SCHEMA_VERSION = len(_MIGRATIONS)

_ROUND_TABLES = ("sum_dict", "update_participants", "seeds", "aggregate", "votes", "voters")


class SQLiteStore(Store):
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            # autocommit mode: transactions are begun and ended explicitly in _tx
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as e:
            raise StoreError(f"cannot open sqlite store {self.path}: {e}") from e
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._migrate()
        except sqlite3.Error as e:
            self._db.close()
            raise StoreError(f"cannot open sqlite store {self.path}: {e}") from e
        except StoreError:
            self._db.close()
            raise

    @contextmanager
    def _tx(self):
        """One transaction under the lock; sqlite errors come out as StoreError."""
        with self._lock:
            db = self._db
            if db is None:
                raise StoreError(f"sqlite store {self.path} is closed")
            try:
                db.execute("BEGIN IMMEDIATE")
                try:
                    yield db
                    db.execute("COMMIT")
                except BaseException:
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as e:
                raise StoreError(f"sqlite store {self.path}: {e}") from e

    def _migrate(self) -> None:
        with self._tx() as db:
            db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = db.execute("SELECT version FROM schema_version").fetchone()
            version = 0 if row is None else row[0]
            if not isinstance(version, int) or not 0 <= version <= SCHEMA_VERSION:
                raise StoreError(f"sqlite store {self.path} has schema version {version!r}; "
                                 f"this coordinator knows versions up to {SCHEMA_VERSION}")
            for step in _MIGRATIONS[version:]:
                for sql in step:
                    db.execute(sql)
            db.execute("DELETE FROM schema_version")
            db.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    # -- round state -------------------------------------------------------------------------

    def load_state(self) -> RoundState | None:
        with self._tx() as db:
            row = db.execute("SELECT json FROM state WHERE id = 1").fetchone()
        return None if row is None else RoundState.from_json(row[0])

    def save_state(self, state: RoundState) -> None:
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO state (id, json) VALUES (1, ?)", (state.to_json(),))

    def clear_round(self) -> None:
        with self._tx() as db:
            for table in _ROUND_TABLES:
                db.execute(f"DELETE FROM {table}")

    # -- Sum ---------------------------------------------------------------------------------

    def add_sum_participant(self, pk: bytes, ephm_pk: bytes) -> bool:
        with self._tx() as db:
            cur = db.execute("INSERT OR IGNORE INTO sum_dict (pk, ephm_pk) VALUES (?, ?)", (pk, ephm_pk))
            return cur.rowcount == 1

    def sum_dict(self) -> dict[bytes, bytes]:
        with self._tx() as db:
            return dict(db.execute("SELECT pk, ephm_pk FROM sum_dict"))

    # -- Update ------------------------------------------------------------------------------

    def add_updates(self, updates: list[tuple[bytes, dict[bytes, bytes]]], aggregate: bytes,
                    nb_models: int) -> list[bytes]:
        with self._tx() as db:
            seen = [pk for pk, _ in updates
                    if db.execute("SELECT 1 FROM update_participants WHERE pk = ?", (pk,)).fetchone()]
            if seen:
                return seen
            db.executemany("INSERT INTO update_participants (pk) VALUES (?)", [(pk,) for pk, _ in updates])
            db.executemany("INSERT OR REPLACE INTO seeds (sum_pk, update_pk, seed) VALUES (?, ?, ?)",
                           [(sum_pk, pk, seed) for pk, seeds in updates for sum_pk, seed in seeds.items()])
            db.execute("INSERT OR REPLACE INTO aggregate (id, mask, nb_models) VALUES (1, ?, ?)",
                       (aggregate, nb_models))
            return []

    def update_participants(self) -> set[bytes]:
        with self._tx() as db:
            return {row[0] for row in db.execute("SELECT pk FROM update_participants")}

    def update_count(self) -> int:
        with self._tx() as db:
            return db.execute("SELECT COUNT(*) FROM update_participants").fetchone()[0]

    def aggregate(self) -> tuple[bytes, int] | None:
        with self._tx() as db:
            row = db.execute("SELECT mask, nb_models FROM aggregate WHERE id = 1").fetchone()
        if row is None:
            return None
        mask, nb_models = row
        if not isinstance(mask, bytes) or not isinstance(nb_models, int):
            raise StoreError(f"sqlite store {self.path}: stored aggregate is unreadable")
        return mask, nb_models

    def seed_column(self, sum_pk: bytes) -> dict[bytes, bytes]:
        with self._tx() as db:
            return dict(db.execute("SELECT update_pk, seed FROM seeds WHERE sum_pk = ?", (sum_pk,)))

    # -- Sum2 --------------------------------------------------------------------------------

    def add_vote(self, sum_pk: bytes, mask: bytes) -> bool:
        with self._tx() as db:
            cur = db.execute("INSERT OR IGNORE INTO voters (pk) VALUES (?)", (sum_pk,))
            if cur.rowcount != 1:
                return False
            db.execute("INSERT INTO votes (digest, mask, count) VALUES (?, ?, 1)"
                       " ON CONFLICT (digest) DO UPDATE SET count = count + 1",
                       (hashlib.sha256(mask).digest(), mask))
            return True

    def votes(self) -> list[tuple[bytes, int]]:
        with self._tx() as db:
            return list(db.execute("SELECT mask, count FROM votes ORDER BY count DESC, digest"))

    # -- global models -----------------------------------------------------------------------

    def add_global_model(self, model: GlobalModel, keep: int) -> None:
        if keep < 1:
            raise ValueError(f"keep must be at least 1, not {keep}")
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO global_models (round_id, weights, created, meta)"
                       " VALUES (?, ?, ?, ?)",
                       (model.round_id, model.weights, model.created, json.dumps(model.meta)))
            db.execute("DELETE FROM global_models WHERE round_id NOT IN"
                       " (SELECT round_id FROM global_models ORDER BY round_id DESC LIMIT ?)", (keep,))

    def global_models(self, limit: int | None = None) -> list[GlobalModel]:
        with self._tx() as db:
            rows = db.execute("SELECT round_id, weights, created, meta FROM global_models"
                              " ORDER BY round_id DESC LIMIT ?", (-1 if limit is None else max(limit, 0),))
            rows = rows.fetchall()
        return [GlobalModel(round_id, weights, created, self._meta(meta, round_id))
                for round_id, weights, created, meta in rows]

    def update_model_meta(self, round_id: int, meta: dict) -> None:
        """A model trimmed from the history meanwhile is not an error: nothing to update."""
        with self._tx() as db:
            row = db.execute("SELECT meta FROM global_models WHERE round_id = ?", (round_id,)).fetchone()
            if row is not None:
                merged = self._meta(row[0], round_id) | meta
                db.execute("UPDATE global_models SET meta = ? WHERE round_id = ?", (json.dumps(merged), round_id))

    def _meta(self, text, round_id: int) -> dict:
        try:
            meta = json.loads(text)
        except (TypeError, ValueError):
            meta = None
        if not isinstance(meta, dict):
            raise StoreError(f"sqlite store {self.path}: meta of global model {round_id} is unreadable")
        return meta

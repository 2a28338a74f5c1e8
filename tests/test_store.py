"""Coordinator stores, SQLite and Redis, held to the same contract."""

from __future__ import annotations

import os
import socket
import sqlite3
import threading
import time
import uuid
from dataclasses import replace

import pytest
import redis

from coordinator.store import GlobalModel, RoundState, StoreError, open_store
from coordinator.store.redis import RedisStore
from coordinator.store.sqlite import SCHEMA_VERSION, SQLiteStore


class Backend:
    """Where one test's store lives: opens it (again) and writes raw garbage behind its back."""

    def __init__(self, kind: str, location, prefix: str = ""):
        self.kind, self.location, self.prefix = kind, location, prefix
        self.opened = []

    def open(self):
        options = {"prefix": self.prefix} if self.kind == "redis" else {}
        self.opened.append(open_store(self.kind, self.location, **options))
        return self.opened[-1]

    def write_raw_state(self, value: bytes) -> None:
        if self.kind == "sqlite":
            with sqlite3.connect(self.location) as db:
                db.execute("UPDATE state SET json = ? WHERE id = 1", (value,))
            db.close()
        else:
            with redis.Redis.from_url(self.location) as r:
                r.set(self.prefix + "state", value)


@pytest.fixture(params=["sqlite", "redis"])
def backend(request, tmp_path):
    if request.param == "sqlite":
        b = Backend("sqlite", tmp_path / "coordinator.db")
    else:
        b = Backend("redis", request.getfixturevalue("redis_url"), f"test:{uuid.uuid4().hex}:")
    yield b
    for store in b.opened:
        store.close()


@pytest.fixture
def store(backend):
    return backend.open()


def pk(i: int, tag: bytes = b"p") -> bytes:
    return tag + i.to_bytes(4, "big") + bytes(27)


def make_state(round_id: int = 3, phase: str = "update") -> RoundState:
    return RoundState(round_id, phase, bytes(range(32)), b"\x07" * 32, bytes(range(136)),
                      1700000000.25, {"sum": {"accepted": 4, "rejected": 1}})


def model(round_id: int, **meta) -> GlobalModel:
    return GlobalModel(round_id, round_id.to_bytes(8, "little") * 3, 1700000000.0 + round_id / 3, meta)


def fill_round(store) -> None:
    """A round part way through Sum2: two sum participants, three updates, two votes."""
    for i in range(2):
        assert store.add_sum_participant(pk(i, b"s"), pk(i, b"e"))
    for u in range(3):
        seeds = {pk(i, b"s"): bytes([u, i]) * 40 for i in range(2)}
        assert store.add_update(pk(u, b"u"), seeds, b"agg%d" % u, u + 1)
    assert store.add_vote(pk(0, b"s"), b"mask-a")
    assert store.add_vote(pk(1, b"s"), b"mask-a")


def assert_filled(store) -> None:
    assert store.sum_dict() == {pk(i, b"s"): pk(i, b"e") for i in range(2)}
    assert store.update_count() == 3
    assert store.aggregate() == (b"agg2", 3)
    for i in range(2):
        assert store.seed_column(pk(i, b"s")) == {pk(u, b"u"): bytes([u, i]) * 40 for u in range(3)}
    assert store.votes() == [(b"mask-a", 2)]


# -- the contract ---------------------------------------------------------------------------


def test_fresh_store_is_empty(store):
    assert store.load_state() is None
    assert store.sum_dict() == {}
    assert store.update_count() == 0
    assert store.aggregate() is None
    assert store.seed_column(pk(0)) == {}
    assert store.votes() == []
    assert store.global_models() == []
    assert store.latest_global_model() is None


def test_state_round_trip(store):
    state = make_state()
    store.save_state(state)
    assert store.load_state() == state
    later = replace(state, phase="sum2", phase_started=1700000100.5, counters={})
    store.save_state(later)
    assert store.load_state() == later


def test_sum_dict_rejects_a_second_entry_for_a_pk(store):
    assert store.add_sum_participant(pk(1), pk(1, b"e"))
    assert store.add_sum_participant(pk(2), pk(2, b"e"))
    assert not store.add_sum_participant(pk(1), pk(9, b"e"))
    assert store.sum_dict() == {pk(1): pk(1, b"e"), pk(2): pk(2, b"e")}


def test_duplicate_update_changes_nothing(store):
    seeds = {pk(0, b"s"): b"A" * 80, pk(1, b"s"): b"B" * 80}
    assert store.add_update(pk(7), seeds, b"first", 1)
    assert not store.add_update(pk(7), {pk(0, b"s"): b"X" * 80, pk(5, b"s"): b"Y" * 80}, b"second", 2)
    assert store.update_count() == 1
    assert store.aggregate() == (b"first", 1)
    assert store.seed_column(pk(0, b"s")) == {pk(7): b"A" * 80}
    assert store.seed_column(pk(1, b"s")) == {pk(7): b"B" * 80}
    assert store.seed_column(pk(5, b"s")) == {}


def test_a_batch_of_updates_is_stored_whole_or_not_at_all(store):
    sums = [pk(0, b"s"), pk(1, b"s")]
    batch = [(pk(i), {s: bytes([i]) * 80 for s in sums}) for i in (1, 2, 3)]
    assert store.add_updates(batch, b"agg3", 3) == []
    assert store.update_participants() == {pk(1), pk(2), pk(3)}
    assert store.seed_column(sums[1]) == {pk(i): bytes([i]) * 80 for i in (1, 2, 3)}
    again = [(pk(4), {s: b"\x04" * 80 for s in sums}), (pk(2), {s: b"\x09" * 80 for s in sums})]
    assert store.add_updates(again, b"agg5", 5) == [pk(2)]
    assert store.update_count() == 3 and store.aggregate() == (b"agg3", 3)
    assert pk(4) not in store.seed_column(sums[0])


def test_seed_columns_and_aggregate(store):
    fill_round(store)
    assert_filled(store)
    assert store.seed_column(pk(9, b"s")) == {}


def test_votes_most_first_and_one_per_voter(store):
    for i, mask in enumerate([b"m1", b"m2", b"m2", b"m3", b"m2", b"m1"]):
        assert store.add_vote(pk(i), mask)
    assert not store.add_vote(pk(0), b"m3")
    assert not store.add_vote(pk(1), b"m1")
    assert store.votes() == [(b"m2", 3), (b"m1", 2), (b"m3", 1)]


def test_clear_round_keeps_state_and_models(store):
    store.save_state(make_state())
    store.add_global_model(model(2), keep=5)
    fill_round(store)
    store.clear_round()
    assert store.sum_dict() == {}
    assert store.update_count() == 0
    assert store.aggregate() is None
    assert store.seed_column(pk(0, b"s")) == {} and store.seed_column(pk(1, b"s")) == {}
    assert store.votes() == []
    assert store.load_state() == make_state()
    assert store.global_models() == [model(2)]
    # the next round takes the same participants again
    fill_round(store)
    assert_filled(store)


def test_global_models_newest_first_trimmed_to_keep(store):
    for round_id in (1, 2, 3, 5, 4):
        store.add_global_model(model(round_id, participants=round_id), keep=3)
    assert store.global_models() == [model(5, participants=5), model(4, participants=4), model(3, participants=3)]
    assert [m.round_id for m in store.global_models(2)] == [5, 4]
    assert store.global_models(0) == []
    assert store.latest_global_model() == model(5, participants=5)
    store.add_global_model(model(1), keep=3)  # older than everything kept: gone at once
    assert [m.round_id for m in store.global_models()] == [5, 4, 3]
    store.add_global_model(model(6), keep=1)
    assert store.global_models() == [model(6)]
    with pytest.raises(ValueError):
        store.add_global_model(model(7), keep=0)


def test_update_model_meta_merges(store):
    store.add_global_model(model(4, participants={"sum": 3}, duration=12.5), keep=3)
    store.update_model_meta(4, {"evaluation": 0.123456789012345678, "duration": 13})
    store.update_model_meta(4, {"note": "ok"})
    assert store.latest_global_model().meta == {"participants": {"sum": 3}, "duration": 13,
                                                "evaluation": 0.123456789012345678, "note": "ok"}
    store.update_model_meta(99, {"evaluation": 1})  # not stored (trimmed): nothing to do
    assert [m.round_id for m in store.global_models()] == [4]


def test_everything_survives_close_and_reopen(backend, store):
    store.save_state(make_state())
    for round_id in range(3):
        store.add_global_model(model(round_id, n=round_id), keep=2)
    fill_round(store)
    store.close()
    again = backend.open()
    assert again.load_state() == make_state()
    assert_filled(again)
    assert again.global_models() == [model(2, n=2), model(1, n=1)]
    assert not again.add_update(pk(0, b"u"), {}, b"late", 9)
    assert not again.add_vote(pk(0, b"s"), b"mask-b")


def test_concurrent_writers_lose_nothing(store):
    """8 threads, 200 updates and 200 votes, each offered by two threads: every one counted once."""
    n, threads = 200, 8
    sum_pks = [pk(i, b"s") for i in range(3)]
    accepted = []
    barrier = threading.Barrier(threads)

    def work(t):
        barrier.wait()
        mine = [i for i in range(n) if i % threads in (t, (t + 1) % threads)]
        for i in mine:
            seeds = {s: i.to_bytes(2, "big") * 40 for s in sum_pks}
            accepted.append(("u", i, store.add_update(pk(i, b"u"), seeds, b"agg%d" % i, i + 1)))
            accepted.append(("v", i, store.add_vote(pk(i, b"v"), b"mask%d" % (i % 3))))

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()

    for kind in "uv":
        won = sorted(i for k, i, ok in accepted if k == kind and ok)
        assert won == list(range(n))  # each exactly once
    assert store.update_count() == n
    for s in sum_pks:
        assert store.seed_column(s) == {pk(i, b"u"): i.to_bytes(2, "big") * 40 for i in range(n)}
    mask, count = store.aggregate()
    assert mask == b"agg%d" % (count - 1)  # some whole update's aggregate, not a mix
    assert sorted(store.votes()) == [(b"mask0", 67), (b"mask1", 67), (b"mask2", 66)]


def test_garbage_state_is_a_store_error(backend, store):
    store.save_state(make_state())
    for garbage in (b"{not json", b"\xff\xfe", b'{"round_id": 1}', b"[]"):
        backend.write_raw_state(garbage)
        with pytest.raises(StoreError, match="state"):
            store.load_state()


# -- SQLite only ------------------------------------------------------------------------------


def test_sqlite_unopenable_path_names_it(tmp_path):
    missing = tmp_path / "no" / "such" / "dir" / "c.db"
    with pytest.raises(StoreError, match=str(missing)):
        SQLiteStore(missing)
    not_a_db = tmp_path / "garbage.db"
    not_a_db.write_bytes(os.urandom(4096))
    with pytest.raises(StoreError, match=str(not_a_db)):
        SQLiteStore(not_a_db)


def test_sqlite_schema_version_recorded_and_newer_refused(tmp_path):
    path = tmp_path / "c.db"
    SQLiteStore(path).close()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
        db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    db.close()
    with pytest.raises(StoreError, match="schema version"):
        SQLiteStore(path)


def test_sqlite_uses_wal(tmp_path):
    store = SQLiteStore(tmp_path / "c.db")
    try:
        with sqlite3.connect(tmp_path / "c.db") as db:
            assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        db.close()
    finally:
        store.close()


def test_sqlite_closed_store_is_a_store_error(tmp_path):
    store = SQLiteStore(tmp_path / "c.db")
    store.close()
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.load_state()


# -- Redis only -------------------------------------------------------------------------------


def test_redis_unreachable_is_a_quick_store_error():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        port = sock.getsockname()[1]
        url = f"redis://:hunter2@127.0.0.1:{port}/0"
        started = time.monotonic()
        with pytest.raises(StoreError) as err:
            RedisStore(url)
        assert time.monotonic() - started < 3
    assert f"127.0.0.1:{port}" in str(err.value)
    assert "hunter2" not in str(err.value)


def test_redis_prefixes_keep_stores_apart(redis_url):
    a, b = RedisStore(redis_url, f"a{uuid.uuid4().hex}:"), RedisStore(redis_url, f"b{uuid.uuid4().hex}:")
    try:
        fill_round(a)
        assert b.sum_dict() == {} and b.update_count() == 0 and b.votes() == []
        assert b.add_update(pk(0, b"u"), {}, b"x", 1)
    finally:
        a.close()
        b.close()


def test_redis_clear_round_leaves_no_round_keys(redis_url):
    prefix = f"test:{uuid.uuid4().hex}:"
    store = RedisStore(redis_url, prefix)
    try:
        store.save_state(make_state())
        store.add_global_model(model(1), keep=2)
        fill_round(store)
        store.clear_round()
        with redis.Redis.from_url(redis_url) as r:
            left = sorted(k.decode()[len(prefix):] for k in r.scan_iter(match=prefix + "*"))
        assert left == ["model:1", "models", "state"]
    finally:
        store.close()


def test_redis_data_survives_a_server_restart(tmp_path, redis_server_factory):
    server = redis_server_factory(data_dir=tmp_path / "data")
    store = RedisStore(server.url)
    try:
        store.save_state(make_state())
        store.add_global_model(model(1, n=1), keep=2)
        fill_round(store)
        server.restart()
        assert store.load_state() == make_state()  # the same client reconnects
        assert_filled(store)
        server.stop()
        with pytest.raises(StoreError, match=f"127.0.0.1:{server.port}"):
            store.load_state()
    finally:
        store.close()


def test_open_store_rejects_unknown_kind(tmp_path):
    with pytest.raises(ValueError, match="unknown store kind"):
        open_store("memcached", tmp_path / "x")

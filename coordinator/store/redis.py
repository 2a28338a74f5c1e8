"""Redis store: for a coordinator whose state should outlive its machine, or be shared.

Every key starts with the prefix, so several coordinators (or test runs) can
share one server. Layout, with P the prefix:

    P state            string   RoundState JSON
    P sum              hash     sum pk -> ephemeral pk
    P updates          set      update participants' pks
    P seeds:<hex pk>   hash     one per sum participant: update pk -> encrypted seed
    P seed_keys        set      names of the seed hashes, so clear_round finds them all
    P aggregate        hash     mask -> MaskObject bytes, nb_models -> model count
    P votes            zset     mask bytes, scored by their vote count
    P voters           set      sum pks that voted
    P models           zset     round ids of the global models, scored by round id
    P model:<round>    hash     weights, created, meta (JSON)

Writes that must check and change several keys together run as Lua scripts
(atomic on the server) or as WATCH/MULTI transactions.
"""

from __future__ import annotations

import json
import re
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import redis

from coordinator.store.base import GlobalModel, RoundState, Store, StoreError

# KEYS: updates, aggregate, seed_keys, then the seed hash of each sum pk (S of them).
# ARGV: mask, nb_models, then per update its pk and its S seeds in KEYS order.
_ADD_UPDATES = """
local s = #KEYS - 3
local seen = {}
for i = 3, #ARGV, s + 1 do
    if redis.call('SISMEMBER', KEYS[1], ARGV[i]) == 1 then seen[#seen + 1] = ARGV[i] end
end
if #seen > 0 then return seen end
for i = 3, #ARGV, s + 1 do
    redis.call('SADD', KEYS[1], ARGV[i])
    for j = 1, s do
        redis.call('HSET', KEYS[3 + j], ARGV[i], ARGV[i + j])
        redis.call('SADD', KEYS[3], KEYS[3 + j])
    end
end
redis.call('HSET', KEYS[2], 'mask', ARGV[1], 'nb_models', ARGV[2])
return seen
"""

# KEYS: voters, votes; ARGV: sum pk, mask.
_ADD_VOTE = """
if redis.call('SADD', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('ZINCRBY', KEYS[2], 1, ARGV[2])
return 1
"""


def redact(url: str) -> str:
    """The URL with its password (in the authority or the query) replaced, fit for messages and logs."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if parts.password is not None:
            netloc = f"{parts.username or ''}:***@{netloc.rpartition('@')[2]}"
        query = re.sub(r"(^|&)password=[^&]*", r"\1password=***", parts.query)
        if (netloc, query) == (parts.netloc, parts.query):
            return url
        return urlunsplit(parts._replace(netloc=netloc, query=query))
    except ValueError:
        return "<unparsable redis url>"


class RedisStore(Store):
    def __init__(self, url: str, prefix: str = "pet:"):
        self.url = redact(url)
        self.prefix = prefix
        try:
            self._r = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=30)
        except ValueError as e:
            raise StoreError(f"bad redis url {self.url}: {e}") from None  # the message may quote the password
        self._add_updates = self._r.register_script(_ADD_UPDATES)
        self._add_vote = self._r.register_script(_ADD_VOTE)
        try:
            with self._guard():
                self._r.ping()  # fail now rather than in the middle of a round
        except StoreError:
            self._r.close()
            raise

    def _key(self, name: str) -> str:
        return self.prefix + name

    def _seed_key(self, sum_pk: bytes) -> str:
        return self._key("seeds:" + sum_pk.hex())

    def _model_key(self, round_id: int) -> str:
        return self._key(f"model:{round_id}")

    @contextmanager
    def _guard(self):
        """Redis errors come out as StoreError naming the server."""
        try:
            yield
        except redis.RedisError as e:
            raise StoreError(f"redis store {self.url}: {e}") from e

    def close(self) -> None:
        self._r.close()

    # -- round state -------------------------------------------------------------------------

    def load_state(self) -> RoundState | None:
        with self._guard():
            raw = self._r.get(self._key("state"))
        if raw is None:
            return None
        try:
            text = raw.decode()
        except UnicodeDecodeError:
            raise StoreError(f"redis store {self.url}: stored round state is not UTF-8") from None
        return RoundState.from_json(text)

    def save_state(self, state: RoundState) -> None:
        with self._guard():
            self._r.set(self._key("state"), state.to_json())

    def clear_round(self) -> None:
        fixed = [self._key(k) for k in ("sum", "updates", "seed_keys", "aggregate", "votes", "voters")]

        def clear(pipe):
            seed_keys = pipe.smembers(self._key("seed_keys"))
            pipe.multi()
            pipe.delete(*fixed, *seed_keys)

        with self._guard():
            self._r.transaction(clear, self._key("seed_keys"))

    # -- Sum ---------------------------------------------------------------------------------

    def add_sum_participant(self, pk: bytes, ephm_pk: bytes) -> bool:
        with self._guard():
            return bool(self._r.hsetnx(self._key("sum"), pk, ephm_pk))  # one command: atomic

    def sum_dict(self) -> dict[bytes, bytes]:
        with self._guard():
            return self._r.hgetall(self._key("sum"))

    # -- Update ------------------------------------------------------------------------------

    def add_updates(self, updates: list[tuple[bytes, dict[bytes, bytes]]], aggregate: bytes,
                    nb_models: int) -> list[bytes]:
        sum_pks = sorted({sum_pk for _, seeds in updates for sum_pk in seeds})
        if any(len(seeds) != len(sum_pks) for _, seeds in updates):
            raise ValueError("every update of one batch must carry seeds for the same sum participants")
        keys = [self._key("updates"), self._key("aggregate"), self._key("seed_keys")]
        keys += [self._seed_key(sum_pk) for sum_pk in sum_pks]
        args = [aggregate, nb_models]
        for pk, seeds in updates:
            args += [pk, *(seeds[sum_pk] for sum_pk in sum_pks)]
        with self._guard():
            return list(self._add_updates(keys=keys, args=args))

    def update_participants(self) -> set[bytes]:
        with self._guard():
            return set(self._r.smembers(self._key("updates")))

    def update_count(self) -> int:
        with self._guard():
            return self._r.scard(self._key("updates"))

    def aggregate(self) -> tuple[bytes, int] | None:
        with self._guard():
            mask, nb_models = self._r.hmget(self._key("aggregate"), ["mask", "nb_models"])
        if mask is None:
            return None
        try:
            return mask, int(nb_models)
        except (TypeError, ValueError):
            raise StoreError(f"redis store {self.url}: stored aggregate is unreadable") from None

    def seed_column(self, sum_pk: bytes) -> dict[bytes, bytes]:
        with self._guard():
            return self._r.hgetall(self._seed_key(sum_pk))

    # -- Sum2 --------------------------------------------------------------------------------

    def add_vote(self, sum_pk: bytes, mask: bytes) -> bool:
        with self._guard():
            return self._add_vote(keys=[self._key("voters"), self._key("votes")], args=[sum_pk, mask]) == 1

    def votes(self) -> list[tuple[bytes, int]]:
        with self._guard():
            return [(mask, int(score)) for mask, score in self._r.zrevrange(self._key("votes"), 0, -1, withscores=True)]

    # -- global models -----------------------------------------------------------------------

    def add_global_model(self, model: GlobalModel, keep: int) -> None:
        if keep < 1:
            raise ValueError(f"keep must be at least 1, not {keep}")
        models = self._key("models")

        def add(pipe):
            ids = {int(i) for i in pipe.zrange(models, 0, -1)} | {model.round_id}
            dropped = sorted(ids, reverse=True)[keep:]
            pipe.multi()
            pipe.delete(self._model_key(model.round_id))
            pipe.hset(self._model_key(model.round_id), mapping={
                "weights": model.weights, "created": repr(float(model.created)), "meta": json.dumps(model.meta)})
            pipe.zadd(models, {str(model.round_id): model.round_id})
            if dropped:
                pipe.zrem(models, *map(str, dropped))
                pipe.delete(*map(self._model_key, dropped))

        with self._guard():
            self._r.transaction(add, models)

    def global_models(self, limit: int | None = None) -> list[GlobalModel]:
        if limit is not None and limit <= 0:
            return []
        with self._guard():
            ids = [int(i) for i in self._r.zrevrange(self._key("models"), 0, -1 if limit is None else limit - 1)]
            pipe = self._r.pipeline()
            for round_id in ids:
                pipe.hgetall(self._model_key(round_id))
            rows = pipe.execute()
        # a model trimmed between the two reads comes back empty: leave it out
        return [self._model(round_id, row) for round_id, row in zip(ids, rows) if row]

    def update_model_meta(self, round_id: int, meta: dict) -> None:
        """A model trimmed from the history meanwhile is not an error: nothing to update."""
        key = self._model_key(round_id)

        def merge(pipe):
            raw = pipe.hget(key, "meta")
            if raw is not None:
                merged = self._meta(raw, round_id) | meta
                pipe.multi()
                pipe.hset(key, "meta", json.dumps(merged))

        with self._guard():
            self._r.transaction(merge, key)

    def _model(self, round_id: int, row: dict[bytes, bytes]) -> GlobalModel:
        try:
            weights, created = row[b"weights"], float(row[b"created"])
        except (KeyError, ValueError):
            raise StoreError(f"redis store {self.url}: global model {round_id} is unreadable") from None
        return GlobalModel(round_id, weights, created, self._meta(row.get(b"meta"), round_id))

    def _meta(self, raw, round_id: int) -> dict:
        try:
            meta = json.loads(raw)
        except (TypeError, ValueError):
            meta = None
        if not isinstance(meta, dict):
            raise StoreError(f"redis store {self.url}: meta of global model {round_id} is unreadable")
        return meta

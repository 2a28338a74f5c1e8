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

and, for a coordinator whose messages are judged by several processes
(coordinator/worker.py):

    P partials         set      names of the partial aggregate hashes of this round
    P partial:<name>   hash     one worker process's partial aggregate (as P aggregate,
                                which holds the leader process's own)
    P chunk_index      zset     incomplete multipart messages: their hash's name, scored
                                by the time their first chunk came
    P chunk_charges    hash     bytes each incomplete message holds; "" holds the total
    P chunk:<pk>:<id>  hash     one incomplete message: meta, n, bytes, top, last, c<id>
    P setup            string   JSON: the settings every process must share, the leader's address
    P tally            hash     "<round>|<phase>|<kind>|<reason>" -> verdicts given by
                                workers, taken (read and emptied) by the leader
    P rejected         list     JSON of the workers' latest refused messages, taken likewise
    P workers          hash     worker name -> JSON of its pid, host, messages, last report

Writes that must check and change several keys together run as Lua scripts
(atomic on the server) or as WATCH/MULTI transactions. The scripts that
accept messages for several processes first check the phase in P state: once
the leader has saved the next phase, no process can add to the one that ended.
Every script takes keys of one prefix only: with the prefix in braces
("{fleet-a}:") they share one Redis Cluster hash slot.
"""

from __future__ import annotations

import json
import re
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import redis

from coordinator.store.base import GlobalModel, RoundState, Store, StoreError
from pet.multipart import CHUNK_OVERHEAD

# The phase check of the scripts below: ARGV[1] and ARGV[2] are the round id and phase the
# message was judged in; KEYS[1] is the state.
_IN_PHASE = """
local function in_phase()
    local raw = redis.call('GET', KEYS[1])
    if not raw then return false end
    local state = cjson.decode(raw)
    return string.format('%d', state.round_id) == ARGV[1] and state.phase == ARGV[2]
end
"""

# KEYS: state, updates, the partial aggregate, partials, seed_keys, then the seed hash of
# each sum pk (S of them).
# ARGV: round id, phase ("" for no phase check), count.max (0 for none), mask, nb_models,
# then per update its pk and its S seeds in KEYS order.
# Answers {"phase"}, {"seen", pk...}, {"full", room left} or {"ok", updates now}.
_ADD_UPDATES = _IN_PHASE + """
if ARGV[2] ~= '' and not in_phase() then return {'phase'} end
local s = #KEYS - 5
local seen = {}
for i = 6, #ARGV, s + 1 do
    if redis.call('SISMEMBER', KEYS[2], ARGV[i]) == 1 then seen[#seen + 1] = ARGV[i] end
end
if #seen > 0 then return {'seen', unpack(seen)} end
local held = redis.call('SCARD', KEYS[2])
local limit = tonumber(ARGV[3])
if limit > 0 and held + (#ARGV - 5) / (s + 1) > limit then return {'full', tostring(limit - held)} end
for i = 6, #ARGV, s + 1 do
    redis.call('SADD', KEYS[2], ARGV[i])
    for j = 1, s do
        redis.call('HSET', KEYS[5 + j], ARGV[i], ARGV[i + j])
        redis.call('SADD', KEYS[5], KEYS[5 + j])
    end
end
redis.call('HSET', KEYS[3], 'mask', ARGV[4], 'nb_models', ARGV[5])
redis.call('SADD', KEYS[4], KEYS[3])
return {'ok', tostring(redis.call('SCARD', KEYS[2]))}
"""

# KEYS: state, sum; ARGV: round id, phase, count.max, pk, ephemeral pk.
_ADD_SUM_PARTICIPANT = _IN_PHASE + """
if not in_phase() then return {'phase'} end
if redis.call('HLEN', KEYS[2]) >= tonumber(ARGV[3]) then return {'full'} end
if redis.call('HSETNX', KEYS[2], ARGV[4], ARGV[5]) == 0 then return {'duplicate'} end
return {'ok', tostring(redis.call('HLEN', KEYS[2]))}
"""

# KEYS: state, voters, votes; ARGV: round id, phase, count.max, sum pk, mask.
_ADD_VOTE_IN_PHASE = _IN_PHASE + """
if not in_phase() then return {'phase'} end
if redis.call('SCARD', KEYS[2]) >= tonumber(ARGV[3]) then return {'full'} end
if redis.call('SADD', KEYS[2], ARGV[4]) == 0 then return {'duplicate'} end
redis.call('ZINCRBY', KEYS[3], 1, ARGV[5])
return {'ok', tostring(redis.call('SCARD', KEYS[2]))}
"""

# One chunk of a multipart message, with the bounds of pet.multipart.Reassembler kept for all
# processes together. KEYS: the message's hash, chunk_index, chunk_charges.
# ARGV: now, max_age, max_pending_messages, max_pending_bytes, max_message_bytes, max_chunks,
# overhead charged per chunk, meta (tag and coordinator pk), chunk id, last ("1"/"0"), data.
# Answers {"held"} (kept, or an exact repeat), {"done", data of every chunk in order},
# {"full", why} (refused, the message stays pending) or {"bad", why} (the message is dropped).
_ADD_CHUNK = """
local msg, index, charges = KEYS[1], KEYS[2], KEYS[3]
local now, max_age = tonumber(ARGV[1]), tonumber(ARGV[2])
local max_messages, max_pending, max_bytes, max_chunks = tonumber(ARGV[3]), tonumber(ARGV[4]),
    tonumber(ARGV[5]), tonumber(ARGV[6])
local id, last, data = tonumber(ARGV[9]), ARGV[10] == '1', ARGV[11]
local charge = tonumber(ARGV[7]) + #data
local mid = msg:match('([^:]*)$')

local function forget(key)
    local held = tonumber(redis.call('HGET', charges, key) or '0')
    redis.call('HINCRBY', charges, '', -held)
    redis.call('HDEL', charges, key)
    redis.call('ZREM', index, key)
end
local function drop(why)
    forget(msg)
    redis.call('DEL', msg)
    return {'bad', why}
end
-- messages older than max_age are forgotten; their hashes expire on their own
for _, key in ipairs(redis.call('ZRANGEBYSCORE', index, '-inf', now - max_age)) do forget(key) end
local total = tonumber(redis.call('HGET', charges, '') or '0')

local n, bytes, top, last_id = 0, 0, -1, -1
if not redis.call('ZSCORE', index, msg) then
    redis.call('DEL', msg)
    if id >= max_chunks or 1 > max_chunks then
        return {'bad', 'message ' .. mid .. ' would need more than ' .. max_chunks .. ' chunks'}
    end
    if #data > max_bytes then
        return {'bad', 'message ' .. mid .. ' would exceed ' .. max_bytes .. ' bytes'}
    end
    local pending = redis.call('ZCARD', index)
    if pending >= max_messages then
        return {'full', 'reassembly buffer full: ' .. pending .. ' incomplete messages pending (limit ' ..
            max_messages .. ')'}
    end
else
    if redis.call('HGET', msg, 'meta') ~= ARGV[8] then
        return drop('chunk ' .. id .. ' of message ' .. mid .. ' has another tag or coordinator key ' ..
            'than earlier chunks')
    end
    local held = redis.call('HGET', msg, 'c' .. id)
    if held then
        if held == ARGV[10] .. data then return {'held'} end
        return drop('chunk ' .. id .. ' of message ' .. mid .. ' arrived twice with different contents')
    end
    n, bytes = tonumber(redis.call('HGET', msg, 'n')), tonumber(redis.call('HGET', msg, 'bytes'))
    top, last_id = tonumber(redis.call('HGET', msg, 'top')), tonumber(redis.call('HGET', msg, 'last'))
    if last_id >= 0 and (last or id > last_id) then
        return drop('chunk ' .. id .. ' of message ' .. mid .. ' comes after the last chunk ' .. last_id)
    end
    if last and top > id then
        return drop('chunk ' .. id .. ' of message ' .. mid .. ' is marked last, but a chunk with a ' ..
            'higher id was already received')
    end
    if id >= max_chunks or n + 1 > max_chunks then
        return drop('message ' .. mid .. ' would need more than ' .. max_chunks .. ' chunks')
    end
    if bytes + #data > max_bytes then
        return drop('message ' .. mid .. ' would exceed ' .. max_bytes .. ' bytes')
    end
end
if total + charge > max_pending then
    return {'full', 'reassembly buffer full: ' .. total .. ' bytes pending, ' .. charge ..
        ' more would exceed ' .. max_pending}
end
if n == 0 then
    redis.call('ZADD', index, now, msg)
    redis.call('EXPIRE', msg, math.ceil(max_age) + 1)
end
if last then last_id = id end
n, top = n + 1, math.max(top, id)
redis.call('HSET', msg, 'meta', ARGV[8], 'c' .. id, ARGV[10] .. data, 'n', n, 'bytes', bytes + #data,
    'top', top, 'last', last_id)
redis.call('HINCRBY', charges, msg, charge)
redis.call('HINCRBY', charges, '', charge)
if last_id < 0 or n ~= last_id + 1 then return {'held'} end
local parts = {'done'}
for i = 0, last_id do parts[#parts + 1] = string.sub(redis.call('HGET', msg, 'c' .. i), 2) end
forget(msg)
redis.call('DEL', msg)
return parts
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
    shared = True

    def __init__(self, url: str, prefix: str = "pet:"):
        self.url = redact(url)
        self.prefix = prefix
        try:
            self._r = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=30)
        except ValueError as e:
            raise StoreError(f"bad redis url {self.url}: {e}") from None  # the message may quote the password
        self._add_updates = self._r.register_script(_ADD_UPDATES)
        self._add_vote = self._r.register_script(_ADD_VOTE)
        self._add_sum_participant_in_phase = self._r.register_script(_ADD_SUM_PARTICIPANT)
        self._add_vote_in_phase = self._r.register_script(_ADD_VOTE_IN_PHASE)
        self._add_chunk = self._r.register_script(_ADD_CHUNK)
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
        fixed = [self._key(k) for k in ("sum", "updates", "seed_keys", "aggregate", "votes", "voters",
                                        "partials", "chunk_index", "chunk_charges")]
        listed = [self._key(k) for k in ("seed_keys", "partials")]

        def clear(pipe):
            keys = [k for name in listed for k in pipe.smembers(name)]
            keys += pipe.zrange(self._key("chunk_index"), 0, -1)
            pipe.multi()
            pipe.delete(*fixed, *keys)

        with self._guard():
            self._r.transaction(clear, *listed, self._key("chunk_index"))

    # -- Sum ---------------------------------------------------------------------------------

    def add_sum_participant(self, pk: bytes, ephm_pk: bytes) -> bool:
        with self._guard():
            return bool(self._r.hsetnx(self._key("sum"), pk, ephm_pk))  # one command: atomic

    def add_sum_participant_in_phase(self, round_id: int, count_max: int, pk: bytes,
                                     ephm_pk: bytes) -> tuple[str, int | None]:
        """add_sum_participant while the state is round_id's Sum phase and the sum dict holds
        fewer than count_max: ("ok", sum participants now), ("phase", None), ("full", None)
        or ("duplicate", None)."""
        with self._guard():
            answer = self._add_sum_participant_in_phase(keys=[self._key("state"), self._key("sum")],
                                                        args=[round_id, "sum", count_max, pk, ephm_pk])
        return answer[0].decode(), int(answer[1]) if len(answer) > 1 else None

    def sum_dict(self) -> dict[bytes, bytes]:
        with self._guard():
            return self._r.hgetall(self._key("sum"))

    # -- Update ------------------------------------------------------------------------------

    def add_updates(self, updates: list[tuple[bytes, dict[bytes, bytes]]], aggregate: bytes,
                    nb_models: int) -> list[bytes]:
        outcome, detail = self._store_updates(updates, aggregate, nb_models, "aggregate", 0, "", 0)
        return detail if outcome == "seen" else []

    def add_updates_in_phase(self, round_id: int, count_max: int, partial: str,
                             updates: list[tuple[bytes, dict[bytes, bytes]]], aggregate: bytes,
                             nb_models: int) -> tuple[str, object]:
        """add_updates for one of several processes: in one transaction, and only while the
        state is still round_id's Update phase, record the pks and seeds and replace this
        process's partial aggregate (P partial:<partial>, or P aggregate for "aggregate").
        ("phase", None) if the phase ended; ("seen", pks) if any pk already sent an update;
        ("full", room left) if count_max would be passed; else ("ok", updates now). Only
        "ok" changes anything."""
        key = "aggregate" if partial == "aggregate" else f"partial:{partial}"
        outcome, detail = self._store_updates(updates, aggregate, nb_models, key, round_id, "update", count_max)
        return outcome, int(detail) if outcome in ("full", "ok") else detail

    def _store_updates(self, updates, aggregate: bytes, nb_models: int, partial_key: str, round_id: int,
                       phase: str, count_max: int) -> tuple[str, object]:
        sum_pks = sorted({sum_pk for _, seeds in updates for sum_pk in seeds})
        if any(len(seeds) != len(sum_pks) for _, seeds in updates):
            raise ValueError("every update of one batch must carry seeds for the same sum participants")
        keys = [self._key(k) for k in ("state", "updates", partial_key, "partials", "seed_keys")]
        keys += [self._seed_key(sum_pk) for sum_pk in sum_pks]
        args = [round_id, phase, count_max, aggregate, nb_models]
        for pk, seeds in updates:
            args += [pk, *(seeds[sum_pk] for sum_pk in sum_pks)]
        with self._guard():
            answer = self._add_updates(keys=keys, args=args)
        outcome = answer[0].decode()
        return outcome, answer[1:] if outcome == "seen" else answer[1] if len(answer) > 1 else None

    def partial_aggregate(self, partial: str) -> tuple[bytes, int] | None:
        """One process's partial aggregate (see add_updates_in_phase) and its model count."""
        if partial == "aggregate":
            return self.aggregate()
        with self._guard():
            mask, nb_models = self._r.hmget(self._key(f"partial:{partial}"), ["mask", "nb_models"])
        return None if mask is None else (mask, int(nb_models))

    def partial_aggregates(self) -> list[tuple[bytes, int]]:
        """Every process's partial aggregate of this round and its model count (P aggregate too)."""
        names = {self._key("aggregate")}
        with self._guard():
            names |= {name.decode() for name in self._r.smembers(self._key("partials"))}
            pipe = self._r.pipeline(transaction=True)
            for name in sorted(names):
                pipe.hmget(name, ["mask", "nb_models"])
            rows = pipe.execute()
        try:
            return [(mask, int(nb_models)) for mask, nb_models in rows if mask is not None]
        except (TypeError, ValueError):
            raise StoreError(f"redis store {self.url}: a stored partial aggregate is unreadable") from None

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

    def add_vote_in_phase(self, round_id: int, count_max: int, sum_pk: bytes,
                          mask: bytes) -> tuple[str, int | None]:
        """add_vote while the state is round_id's Sum2 phase and fewer than count_max voted:
        ("ok", votes now), ("phase", None), ("full", None) or ("duplicate", None)."""
        keys = [self._key("state"), self._key("voters"), self._key("votes")]
        with self._guard():
            answer = self._add_vote_in_phase(keys=keys, args=[round_id, "sum2", count_max, sum_pk, mask])
        return answer[0].decode(), int(answer[1]) if len(answer) > 1 else None

    def votes(self) -> list[tuple[bytes, int]]:
        with self._guard():
            return [(mask, int(score)) for mask, score in self._r.zrevrange(self._key("votes"), 0, -1, withscores=True)]

    # -- several processes -------------------------------------------------------------------

    def add_chunk(self, pk: bytes, message_id: int, meta: bytes, chunk_id: int, last: bool, data: bytes,
                  limits: dict, now: float) -> tuple[str, object]:
        """One chunk into the reassembly all processes share, under the bounds of
        pet.multipart.Reassembler (limits: its keyword arguments). ("held", None) for a chunk
        kept (or an exact repeat), ("done", the payload) for the missing piece, ("full", why)
        when the buffer is full, ("bad", why) for a chunk that breaks a rule (its message is
        dropped). meta: what every chunk of the message must share (tag, coordinator pk)."""
        keys = [self._key(f"chunk:{pk.hex()}:{message_id}"), self._key("chunk_index"),
                self._key("chunk_charges")]
        args = [repr(float(now)), repr(float(limits["max_age"])), limits["max_pending_messages"],
                limits["max_pending_bytes"], limits["max_message_bytes"], limits["max_chunks"],
                CHUNK_OVERHEAD, meta, chunk_id, "1" if last else "0", data]
        with self._guard():
            answer = self._add_chunk(keys=keys, args=args)
        outcome = answer[0].decode()
        if outcome == "done":
            return outcome, b"".join(answer[1:])
        return outcome, answer[1].decode() if len(answer) > 1 else None

    def publish_setup(self, setup: dict) -> None:
        """What the leader tells the workers: the settings they must share, its address."""
        with self._guard():
            self._r.set(self._key("setup"), json.dumps(setup, sort_keys=True))

    def setup(self) -> dict | None:
        with self._guard():
            raw = self._r.get(self._key("setup"))
        if raw is None:
            return None
        try:
            setup = json.loads(raw)
        except ValueError:
            setup = None
        if not isinstance(setup, dict):
            raise StoreError(f"redis store {self.url}: the leader's setup is unreadable")
        return setup

    def report(self, name: str, tally: dict[str, int], rejected: list[dict], about: dict,
               keep_rejected: int) -> None:
        """A worker's verdicts since its last report, its latest refused messages and itself."""
        with self._guard():
            pipe = self._r.pipeline(transaction=True)
            for field, count in tally.items():
                pipe.hincrby(self._key("tally"), field, count)
            if rejected:
                pipe.lpush(self._key("rejected"), *(json.dumps(r) for r in rejected))
                pipe.ltrim(self._key("rejected"), 0, keep_rejected - 1)
            pipe.hset(self._key("workers"), name, json.dumps(about))
            pipe.execute()

    def take_reports(self, chunks_since: float) -> dict:
        """For the leader, in one transaction: how many sum participants, updates and votes
        the round holds, incomplete multipart messages begun after chunks_since, and the
        workers' reports (their verdicts and refused messages are taken: read and removed).
        tally: {"<round>|<phase>|<kind>|<reason>": count}; rejected: oldest first."""
        with self._guard():
            pipe = self._r.pipeline(transaction=True)
            pipe.hlen(self._key("sum"))
            pipe.scard(self._key("updates"))
            pipe.scard(self._key("voters"))
            pipe.zcount(self._key("chunk_index"), chunks_since, "+inf")
            pipe.hgetall(self._key("tally"))
            pipe.delete(self._key("tally"))
            pipe.lrange(self._key("rejected"), 0, -1)
            pipe.delete(self._key("rejected"))
            pipe.hgetall(self._key("workers"))
            sums, updates, votes, chunks, tally, _, rejected, _, workers = pipe.execute()
        try:
            return {"sums": sums, "updates": updates, "sum2": votes, "chunks": chunks,
                    "tally": {field.decode(): int(count) for field, count in tally.items()},
                    "rejected": [json.loads(r) for r in reversed(rejected)],
                    "workers": {name.decode(): json.loads(about) for name, about in workers.items()}}
        except (ValueError, UnicodeDecodeError):
            raise StoreError(f"redis store {self.url}: a worker's report is unreadable") from None

    def forget_workers(self, names: list[str]) -> None:
        if names:
            with self._guard():
                self._r.hdel(self._key("workers"), *names)

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

"""Judging messages in several processes that share one Redis store.

A coordinator on Redis runs its rounds in one process, the leader
(coordinator/leader.py). Any number of processes judge messages, the leader
among them, each with a `Worker`: it follows the round the leader keeps in
Redis (round id, phase, keys, sum dict), opens and checks each message, and
adds accepted masked models to a partial aggregate of its own. Every write
that accepts a message is one Lua script that first checks the round is
still in the message's phase, so that once the leader saves the next phase
nothing more is added to the one that ended; a participant counts once across
all processes because the scripts check the participant sets in Redis. Updates
are stored in batches, each batch and the new partial aggregate in one
script, and a message is answered only after its batch is stored: a worker
killed at any moment has lost nothing it acknowledged and stored nothing
twice. At the end of Update the leader adds up the partial aggregates.

Chunks of a multipart message may reach different processes, so they are
reassembled in Redis (the store's add_chunk), under the `[multipart]` bounds
for all processes together.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import secrets
import socket
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields, is_dataclass

from coordinator.pipeline import Rejected, RoundView, check_sum2, check_task, check_update, open_and_check
from coordinator.ratelog import RateLimitedLog
from coordinator.rounds import RECENT_REJECTIONS, SUM, SUM2, UPDATE
from coordinator.store import RoundState
from pet.crypto import EncryptKeyPair
from pet.errors import DecodeError
from pet.mask import Aggregation, MaskObject
from pet.verdict import ACCEPTED, Verdict, rejected
from pet.wire import PAYLOAD_TYPES, Message, RoundParameters, Tag

log = logging.getLogger("coordinator.worker")

FOLLOW_INTERVAL = 0.25  # seconds between two looks at the round (and reports) of a worker process
LEADER_PARTIAL = "aggregate"  # the leader process's partial is P aggregate: one process, the old layout
_TAG_OF_PHASE = {SUM: Tag.SUM, UPDATE: Tag.UPDATE, SUM2: Tag.SUM2}
# a message refused for one of these may belong to a round or phase this process has not seen yet
_STALE_VIEW = {"undecryptable", "wrong_phase", "wrong_coordinator_pk"}


# -- the settings every process shares ------------------------------------------------------------

def agreed_settings(settings) -> dict:
    """The settings every process of one coordinator must share, by dotted key. The token
    is there as its SHA-256: what Redis holds never lets anyone in."""
    flat = {}

    def walk(prefix: str, value) -> None:
        if is_dataclass(value):
            for f in fields(value):
                walk(f"{prefix}.{f.name}", getattr(value, f.name))
        else:
            flat[prefix] = value

    walk("pet", settings.pet)
    walk("multipart", settings.multipart)
    token = settings.api.token
    flat |= {"mask.config": settings.mask.name, "model.length": settings.model.length,
             "api.max_body_bytes": settings.api.max_body_bytes,
             "api.token": hashlib.sha256(token.encode()).hexdigest() if token else ""}
    return json.loads(json.dumps(flat))  # as it reads back from the store


def setup_differences(mine: dict, leaders: dict) -> list[str]:
    """What differs between this process's agreed settings and the leader's, in words."""
    out = []
    for key in sorted(set(mine) | set(leaders)):
        here, there = mine.get(key), leaders.get(key)
        if here == there:
            continue
        if key == "api.token":
            out.append("api.token differs")
        else:
            out.append(f"{key} is {json.dumps(here)} here, {json.dumps(there)} at the leader")
    return out


class NoLeader(Exception):
    """No leader has published its setup, or this process's settings differ from it."""


def check_setup(settings, store) -> dict:
    """The leader's setup, if this process may work for it; NoLeader says why not."""
    setup = store.setup()
    where = f"{store.url} (store.prefix {settings.store.prefix!r})"
    if setup is None:
        raise NoLeader(f"no leader at {where}: start the leader (pet-coordinator with the same "
                       f"--redis and store.prefix) first")
    differences = setup_differences(agreed_settings(settings), setup.get("settings", {}))
    if differences:
        raise NoLeader(f"the settings differ from the leader's at {where}: {'; '.join(differences)}; "
                       f"start every process with the same settings")
    return setup


# -- the round as a worker sees it ----------------------------------------------------------------

@dataclass(frozen=True)
class Round:
    round_id: int
    phase: str
    view: RoundView
    sum_dict: dict[bytes, bytes]  # final once Update began; empty before


def _round_of(state: RoundState, sum_dict: dict[bytes, bytes]) -> Round:
    keys = EncryptKeyPair.from_secret_key(state.round_sk)
    view = RoundView(state.round_id, _TAG_OF_PHASE.get(state.phase), keys.public_key, keys.secret_key,
                     RoundParameters.from_bytes(state.params))
    return Round(state.round_id, state.phase, view, sum_dict)


class Worker:
    """Judges messages for the round the leader keeps in the store.

    In a worker process it reports by itself: verdict counts, refused messages and
    a sign of life go to the store every FOLLOW_INTERVAL for the leader to take. In
    the leader's process `reports` is the leader, told of every verdict at once.
    """

    def __init__(self, settings, store, *, name: str | None = None, reports=None, executor=None,
                 clock=time.time):
        self.settings = settings
        self.store = store
        self.name = name or secrets.token_hex(6)
        self.reports = reports or self
        self.clock = clock
        self.executor = executor or ThreadPoolExecutor(max(1, settings.api.workers),
                                                       thread_name_prefix="worker")
        self._own_executor = executor is None
        pet = settings.pet
        self.count_max = {SUM: pet.sum.count.max, UPDATE: pet.update.count.max, SUM2: pet.sum2.count.max}
        self.config, self.length = settings.mask.config, settings.model.length
        m = settings.multipart
        self.multipart_limits = dict(max_message_bytes=m.max_message_bytes, max_chunks=m.max_chunks,
                                     max_age=m.max_age, max_pending_messages=m.max_pending_messages,
                                     max_pending_bytes=m.max_pending_bytes)
        self.round: Round | None = None
        self.partial: Aggregation | None = None    # this process's share of the round's aggregate
        self.partial_round: int | None = None
        self._refreshing = asyncio.Lock()
        self._looked = float("-inf")               # when the latest look at the store began
        self._queue: list = []
        self._committer: asyncio.Task | None = None
        self._task: asyncio.Task | None = None
        # what a worker process reports
        self.refusal: str | None = None            # why it takes no messages now
        self.leader_url: str | None = None
        self.messages = 0
        self._tally: Counter[str] = Counter()
        self._rejected: list[dict] = []
        self._log = RateLimitedLog(log)

    async def _thread(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    # -- following the round ----------------------------------------------------------------------

    async def start(self) -> None:
        await self.refresh()
        if self.reports is self:
            self._task = asyncio.create_task(self._follow(), name=f"worker-{self.name}")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            try:
                await self._report()
            except Exception as e:  # the store is away: these counts are lost, the messages are not
                log.warning("worker %s: the last report did not reach the store: %s", self.name, e)
        if self._own_executor:
            self.executor.shutdown(wait=True)

    async def _follow(self) -> None:
        while True:
            await asyncio.sleep(FOLLOW_INTERVAL)
            try:
                await self.refresh()
                await self._check_leader()
                await self._report()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the store is away: keep what is not reported, try again
                self._log.warning("follow", "worker %s: %s", self.name, e)

    async def refresh(self, unless_since: float | None = None) -> bool:
        """Take up the round and phase the store holds; True if they changed. With
        unless_since (time.monotonic()), nothing is read if a look begun since then was
        taken already: a flood of refused messages costs one look at a time."""
        async with self._refreshing:
            if unless_since is not None and self._looked >= unless_since:
                return False
            self._looked = time.monotonic()
            state = await self._thread(self.store.load_state)
            if state is None or (self.round and (state.round_id, state.phase) == (self.round.round_id,
                                                                                     self.round.phase)):
                return False
            sum_dict = await self._thread(self.store.sum_dict) if state.phase in (UPDATE, SUM2) else {}
            if state.phase == UPDATE and self.partial_round != state.round_id:
                stored = await self._thread(self.store.partial_aggregate, self.name)
                self.partial = (Aggregation.restore(MaskObject.from_bytes(stored[0]), stored[1]) if stored
                                else Aggregation(self.config, self.config, self.length))
                self.partial_round = state.round_id
            self.round = _round_of(state, sum_dict)
            return True

    def _refresh_soon(self) -> None:
        asyncio.get_running_loop().create_task(self.refresh())

    async def _check_leader(self) -> None:
        """A leader started again with other settings: take no messages until they agree."""
        try:
            setup = await self._thread(check_setup, self.settings, self.store)
        except NoLeader as e:
            if self.refusal != str(e):
                log.error("worker %s takes no messages: %s", self.name, e)
            self.refusal = str(e)
            return
        if self.refusal:
            log.info("worker %s: the leader's settings agree again; taking messages", self.name)
        self.refusal, self.leader_url = None, setup.get("leader_url")

    # -- reports (a worker process) ---------------------------------------------------------------

    def record(self, verdict: Verdict, phase: str | None = None, seconds: float | None = None) -> None:
        kind = "accepted" if verdict.accepted else "discarded" if verdict.reason == "phase_full" else "rejected"
        round_id = self.round.round_id if self.round else 0
        phase = phase or (self.round.phase if self.round else "idle")
        self._tally[f"{round_id}|{phase}|{kind}|{verdict.reason}"] += 1
        self.messages += 1
        if not verdict.accepted:
            self._rejected.append({"time": self.clock(), "round_id": round_id, "phase": phase,
                                   "reason": verdict.reason, "detail": verdict.detail[:200]})
            del self._rejected[:-RECENT_REJECTIONS]
            self._log.warning(verdict.reason, "round %d %s phase: rejected a message (%s): %s", round_id,
                              phase, verdict.reason, verdict.detail or "-")

    def chunk_received(self) -> None:
        round_id = self.round.round_id if self.round else 0
        self._tally[f"{round_id}|{self.round.phase if self.round else 'idle'}|chunk|"] += 1

    def counted(self, round_id: int, phase: str, count: int) -> None:
        """The leader learns the counts from the store."""

    def partial_stored(self, round_id: int, partial: Aggregation) -> None:
        """The leader adds up the partial aggregates from the store."""

    async def _report(self) -> None:
        tally, rejections = dict(self._tally), self._rejected  # rejections oldest first
        self._tally, self._rejected = Counter(), []
        about = {"pid": os.getpid(), "host": socket.gethostname(), "messages": self.messages,
                 "seen": self.clock()}
        try:
            await self._thread(self.store.report, self.name, tally, rejections, about, RECENT_REJECTIONS)
        except Exception:
            self._tally.update(tally)  # next time
            raise

    # -- messages ---------------------------------------------------------------------------------

    async def handle(self, sealed: bytes) -> Verdict:
        """The verdict for one POST /message body."""
        started = time.perf_counter()
        current = self.round
        try:
            if current is None:
                await self.refresh()
                current = self.round
                if current is None:
                    raise Rejected("wrong_phase", "no round has begun yet")
            try:
                msg = await self._thread(open_and_check, sealed, current.view)
            except Rejected as r:
                if r.reason not in _STALE_VIEW:
                    raise
                if self.round is current:  # the round may have moved on just now
                    await self.refresh(unless_since=time.monotonic())
                    if self.round is current:
                        raise
                current = self.round
                msg = await self._thread(open_and_check, sealed, current.view)
            if msg.is_multipart:
                msg = await self._reassemble(msg)
                if msg is None:
                    self.reports.chunk_received()
                    return ACCEPTED
                await self._thread(check_task, msg, current.view)
            verdict = await self._HANDLERS[msg.tag](self, msg, current)
        except Rejected as r:
            verdict = rejected(r.reason, r.detail)
        self.reports.record(verdict, current.phase if current else None, time.perf_counter() - started)
        return verdict

    async def _reassemble(self, msg: Message) -> Message | None:
        chunk = msg.payload
        meta = bytes([msg.tag]) + msg.coordinator_pk
        outcome, detail = await self._thread(self.store.add_chunk, msg.participant_pk, chunk.message_id, meta,
                                             chunk.id, chunk.last, chunk.data, self.multipart_limits,
                                             self.clock())
        if outcome == "held":
            return None
        if outcome != "done":
            raise Rejected("multipart", detail)
        try:
            payload = PAYLOAD_TYPES[msg.tag].from_bytes(detail)
        except DecodeError as e:
            raise Rejected("malformed", f"reassembled payload: {e}") from None
        return Message(msg.signature, msg.participant_pk, msg.coordinator_pk, msg.tag, False, payload)

    def _answer(self, outcome: str, count, current: Round, duplicate: str) -> Verdict:
        """The verdict for what a store script answered."""
        if outcome == "ok":
            self.reports.counted(current.round_id, current.phase, count)
            return ACCEPTED
        if outcome == "phase":
            self._refresh_soon()
            raise Rejected("wrong_phase", f"the {current.phase} phase ended while the message was checked")
        if outcome == "full":
            raise Rejected("phase_full", f"the {current.phase} phase already accepted "
                                         f"{self.count_max[current.phase]} messages")
        raise Rejected("duplicate", duplicate)

    async def _on_sum(self, msg: Message, current: Round) -> Verdict:
        outcome, count = await self._thread(self.store.add_sum_participant_in_phase, current.round_id,
                                            self.count_max[SUM], msg.participant_pk, msg.payload.ephm_pk)
        return self._answer(outcome, count, current, "this participant already sent a Sum message")

    async def _on_sum2(self, msg: Message, current: Round) -> Verdict:
        check_sum2(msg, current.sum_dict, self.config, self.length)
        outcome, count = await self._thread(self.store.add_vote_in_phase, current.round_id, self.count_max[SUM2],
                                            msg.participant_pk, msg.payload.model_mask.to_bytes())
        return self._answer(outcome, count, current, "this sum participant already sent its global mask")

    async def _on_update(self, msg: Message, current: Round) -> Verdict:
        """Updates are aggregated and stored in batches: one store script for all updates that
        arrived while the previous batch was being written."""
        check_update(msg, current.sum_dict, self.config, self.length)
        future = asyncio.get_running_loop().create_future()
        self._queue.append((msg, current, future))
        if self._committer is None or self._committer.done():
            self._committer = asyncio.create_task(self._commit_updates())
        return await future

    _HANDLERS = {Tag.SUM: _on_sum, Tag.UPDATE: _on_update, Tag.SUM2: _on_sum2}

    async def _commit_updates(self) -> None:
        while self._queue:
            batch, self._queue = self._queue, []
            try:
                await self._commit_batch(batch)
            except Exception as e:  # the store failed: these messages were not accepted
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(e)

    async def _commit_batch(self, batch: list) -> None:
        taken, pks = [], set()
        limit = self.config.max_models
        for msg, current, future in batch:
            if current.round_id != self.partial_round:
                future.set_result(rejected("wrong_phase", "the round ended while the message was checked"))
            elif msg.participant_pk in pks:
                future.set_result(rejected("duplicate", "this participant already sent an update"))
            elif self.partial.nb_models + len(taken) >= limit:
                future.set_result(rejected("bad_mask", f"the mask config aggregates at most {limit} models"))
            else:
                taken.append((msg, current, future))
                pks.add(msg.participant_pk)
        if not taken:
            return
        partial, round_id = self.partial, self.partial_round

        def aggregate_and_store():
            new = Aggregation.restore(partial.object, partial.nb_models)
            for msg, _, _ in taken:  # decoded objects are range-checked; check_update did the rest
                new.aggregate(msg.payload.masked_model, validated=True)
            updates = [(m.participant_pk, dict(m.payload.local_seed_dict)) for m, _, _ in taken]
            return new, self.store.add_updates_in_phase(round_id, self.count_max[UPDATE], self.name, updates,
                                                        new.object.to_bytes(), new.nb_models)
        new, (outcome, detail) = await self._thread(aggregate_and_store)
        if outcome == "ok":
            if self.partial is partial:
                self.partial = new
                self.reports.partial_stored(round_id, new)
            for _, _, future in taken:
                future.set_result(ACCEPTED)
            self.reports.counted(round_id, UPDATE, detail)
            return
        if outcome == "phase":
            self._refresh_soon()
            for _, _, future in taken:
                future.set_result(rejected("wrong_phase", "the update phase ended while the message was checked"))
            return
        if outcome == "seen":  # the store already has some (sent to another process too): store the rest
            seen = set(detail)
            rest = [t for t in taken if t[0].participant_pk not in seen]
            for msg, _, future in taken:
                if msg.participant_pk in seen:
                    future.set_result(rejected("duplicate", "this participant already sent an update"))
        else:  # "full": as many as there is room for
            rest = taken[:max(0, detail)]
            for _, _, future in taken[len(rest):]:
                future.set_result(rejected("phase_full", f"the update phase already accepted "
                                                         f"{self.count_max[UPDATE]} messages"))
        await self._commit_batch(rest)

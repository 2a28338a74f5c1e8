"""The coordinator's round state machine (spec sections 1-2) with verdicts and resumption.

Phases: idle -> sum -> update -> sum2 -> unmask -> idle; any error or timeout
-> failure -> a new round with new keys and a new seed. Sum, Update and Sum2
follow XayNet's counting rule: messages are handled for `time.min` seconds
(at most `count.max` accepted), then until `count.min` are accepted, failing
at `time.max`. Deadlines are wall-clock times kept in the store, so a
restarted coordinator resumes the interrupted round where it stood.

Everything slow (unsealing, signatures, aggregation, store writes) runs in
worker threads; state changes are serialized by one asyncio lock.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from coordinator.metrics import GatewayReports, Metrics
from coordinator.pipeline import Rejected, RoundView, check_phase, check_task, check_update, open_and_check
from coordinator.ratelog import RateLimitedLog
from coordinator.store import GlobalModel, RoundState, Store, StoreError
from pet import crypto
from pet.crypto import CryptoError, EncryptKeyPair
from pet.errors import DecodeError
from pet.mask import Aggregation, MaskObject, UnmaskError, unmask
from pet.multipart import MultipartError, Reassembler
from pet.verdict import ACCEPTED, Verdict, rejected
from pet.wire import MaskConfigPair, Message, Model, RoundParameters, Sum, Sum2, SumDict, Tag, UpdateSeedDict

log = logging.getLogger("coordinator.rounds")

IDLE, SUM, UPDATE, SUM2, UNMASK, FAILURE = "idle", "sum", "update", "sum2", "unmask", "failure"
PHASE_CODES = {IDLE: 0, SUM: 1, UPDATE: 2, SUM2: 3, UNMASK: 4, FAILURE: 5, "shutdown": 6}
_TAG_OF_PHASE = {SUM: Tag.SUM, UPDATE: Tag.UPDATE, SUM2: Tag.SUM2}
HISTORY_ROUNDS = 100     # past rounds GET /rounds shows
RECENT_REJECTIONS = 20   # rejected messages GET /rejections shows


def _open_signed(sealed: bytes, view: RoundView) -> Message | None:
    """The message, if it opens with the round key and its signature verifies; else None."""
    try:
        plain = crypto.seal_open(sealed, view.round_pk, view.round_sk)
        msg = Message.decode(plain)
    except (CryptoError, DecodeError):
        return None
    return msg if crypto.verify_message(plain) and msg.coordinator_pk == view.round_pk else None


def _figures(result) -> dict[str, float]:
    """What the evaluation hook returned, as {name: finite number} (JSON has no NaN)."""
    if not isinstance(result, dict):
        raise TypeError(f"it returned a {type(result).__name__}, not a dict of figures")
    figures = {str(name): float(value) for name, value in result.items()
               if isinstance(value, (int, float, np.number)) and not isinstance(value, bool)
               and math.isfinite(value)}
    left_out = [str(name) for name in result if str(name) not in figures]
    if left_out:
        log.warning("evaluation figures that are not finite numbers were left out: %s", ", ".join(left_out))
    return figures


def _completed(model: GlobalModel) -> dict:
    """A completed round as GET /rounds shows it: what its global model's meta holds."""
    return {"round_id": model.round_id, "outcome": "completed", "ended": model.created, **model.meta}


class PhaseFailed(Exception):
    """The round cannot go on: too few messages in time, no clear mask, ..."""


@dataclass
class PhaseWindow:
    count_min: int
    count_max: int
    time_min: float
    time_max: float


class Coordinator:
    def __init__(self, settings, store: Store, *, clock=time.time, evaluate=None, keygen=None):
        self.settings = settings
        self.store = store
        self.clock = clock
        # round_id -> the round's X25519 key pair; fresh random keys unless a test fixes them
        self.keygen = keygen or (lambda round_id: EncryptKeyPair.generate())
        self.evaluate = evaluate  # optional: weights (np.ndarray) -> dict of figures
        pet = settings.pet
        self.config = settings.mask.config
        self.length = settings.model.length
        self.windows = {
            SUM: PhaseWindow(pet.sum_count_min, pet.sum.count.max, pet.sum.time.min, pet.sum.time.max),
            UPDATE: PhaseWindow(pet.update.count.min, pet.update.count.max,
                                pet.update.time.min, pet.update.time.max),
            SUM2: PhaseWindow(pet.sum2.count.min, pet.sum2.count.max, pet.sum2.time.min, pet.sum2.time.max),
        }
        self.metrics = Metrics()
        self.rejections_log = RateLimitedLog(log)
        self.executor = ThreadPoolExecutor(max(1, settings.api.workers), thread_name_prefix="coordinator")
        self._lock = asyncio.Lock()
        self._progress = asyncio.Event()
        self._task: asyncio.Task | None = None
        self.state: RoundState | None = None
        self.latest_model: GlobalModel | None = None
        self.history: deque[dict] = deque(maxlen=HISTORY_ROUNDS)  # past rounds, oldest first
        self.recent_rejections: deque[dict] = deque(maxlen=RECENT_REJECTIONS)  # newest first
        self.gateways = GatewayReports()
        self.round_started = clock()
        self._model_cache: dict[tuple[int, str], bytes] = {}
        self._update_queue: list = []
        self._committer: asyncio.Task | None = None

    # -- helpers ---------------------------------------------------------------------------

    async def _thread(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    @property
    def phase(self) -> str:
        return self.state.phase if self.state else IDLE

    def _reset_round_memory(self) -> None:
        self.accepted = 0
        self.counters = {"accepted": 0, "rejected": 0, "discarded": 0}
        self.round_messages = dict(self.counters)  # the same, for the whole round
        self.round_reasons: Counter[str] = Counter()  # rejected and discarded, by reason
        self.sum_dict: dict[bytes, bytes] = {}
        self.updaters: set[bytes] = set()
        self.aggregation: Aggregation | None = None
        self.reassembler = Reassembler(**self._multipart_limits())
        self._sums_bytes: bytes | None = None
        self._seed_columns: dict[bytes, bytes] = {}

    def _multipart_limits(self) -> dict:
        m = self.settings.multipart
        return dict(max_message_bytes=m.max_message_bytes, max_chunks=m.max_chunks, max_age=m.max_age,
                    max_pending_messages=m.max_pending_messages, max_pending_bytes=m.max_pending_bytes)

    def _make_view(self) -> None:
        params = RoundParameters.from_bytes(self.state.params)
        keys = EncryptKeyPair.from_secret_key(self.state.round_sk)
        self.params = params
        self.view = RoundView(self.state.round_id, _TAG_OF_PHASE.get(self.state.phase), keys.public_key,
                              keys.secret_key, params)

    def _round_params(self, pk: bytes, seed: bytes) -> RoundParameters:
        pet = self.settings.pet
        return RoundParameters(pk, pet.sum.prob, pet.update.prob, seed,
                               MaskConfigPair(self.config, self.config), self.length)

    async def _save(self) -> None:
        self.state.counters = dict(self.counters)
        await self._thread(self.store.save_state, self.state)

    async def _enter(self, phase: str) -> None:
        self.state.phase = phase
        self.state.phase_started = self.clock()
        self.accepted = 0
        self.counters = {"accepted": 0, "rejected": 0, "discarded": 0}
        self._make_view()  # before any await: messages are judged by the phase /status shows
        self.metrics.phase.set(PHASE_CODES[phase])
        await self._save()
        log.info("round %d: %s phase", self.state.round_id, phase)

    # -- start, stop, resume ---------------------------------------------------------------

    async def start(self) -> None:
        self._reset_round_memory()
        models = await self._thread(self.store.global_models, self.settings.history.keep)  # newest first
        self.latest_model = models[0] if models else None
        self.history.extend(_completed(m) for m in reversed(models))
        state = await self._thread(self.store.load_state)
        if state and self.settings.store.resume and state.phase in _TAG_OF_PHASE and self._same_setup(state):
            await self._resume(state)
        else:
            if state and state.phase in _TAG_OF_PHASE:
                log.warning("not resuming round %d (%s): %s", state.round_id, state.phase,
                            "resume is off" if not self.settings.store.resume else "the settings changed")
            self.state = state
            await self._new_round()
        self._task = asyncio.create_task(self._run(), name="coordinator-rounds")

    def _same_setup(self, state: RoundState) -> bool:
        try:
            stored = RoundParameters.from_bytes(state.params)
        except DecodeError:
            return False
        want = self._round_params(stored.pk, stored.seed)
        return stored == want

    async def _resume(self, state: RoundState) -> None:
        self.state = state
        self._make_view()
        self.counters = {"accepted": 0, "rejected": 0, "discarded": 0, **state.counters}
        self.round_messages = dict(self.counters)  # earlier phases' counts were not kept
        self.round_started = state.phase_started
        self.sum_dict = await self._thread(self.store.sum_dict)
        if state.phase in (UPDATE, SUM2):
            self._sums_bytes = SumDict(self.sum_dict).to_bytes()
            self.updaters = await self._thread(self.store.update_participants)
            self.aggregation = await self._stored_aggregation()
        self.accepted = {SUM: lambda: len(self.sum_dict),
                         UPDATE: lambda: self.aggregation.nb_models,
                         SUM2: lambda: sum(n for _, n in self.store.votes())}[state.phase]()
        self.metrics.phase.set(PHASE_CODES[state.phase])
        self.metrics.round_id.set(state.round_id)
        left = self.windows[state.phase].time_max - (self.clock() - state.phase_started)
        log.info("resuming round %d in the %s phase: %d accepted, %.0f s until time.max",
                 state.round_id, state.phase, self.accepted, left)

    async def _stored_aggregation(self) -> Aggregation:
        """The round's aggregate as the store holds it (a resumed round)."""
        stored = await self._thread(self.store.aggregate)
        if stored:
            return Aggregation.restore(MaskObject.from_bytes(stored[0]), stored[1])
        return Aggregation(self.config, self.config, self.length)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self.metrics.phase.set(PHASE_CODES["shutdown"])
        self.executor.shutdown(wait=True)

    # -- the phase loop --------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            try:
                phase = self.phase
                if phase in self.windows:
                    await self._wait_for_quorum(phase)
                    async with self._lock:
                        await {SUM: self._end_sum, UPDATE: self._end_update, SUM2: self._end_sum2}[phase]()
                else:
                    await self._new_round()
            except PhaseFailed as e:
                await self._failure(str(e))
            except StoreError as e:
                log.error("store error: %s; retrying in 5 s", e)
                await asyncio.sleep(5)
                await self._failure(f"store error: {e}")
            except asyncio.CancelledError:
                raise
            except Exception:  # keep the coordinator alive; the round is lost, not the process
                log.exception("unexpected error in round %s", self.state.round_id if self.state else "-")
                await asyncio.sleep(1)
                await self._failure("internal error")

    async def _sleep_until(self, t: float) -> None:
        delay = t - self.clock()
        if delay > 0:
            await asyncio.sleep(delay)

    async def _wait_for_quorum(self, phase: str) -> None:
        w = self.windows[phase]
        started = self.state.phase_started
        await self._sleep_until(started + w.time_min)
        while self.accepted < w.count_min:
            left = started + w.time_max - self.clock()
            if left <= 0:
                raise PhaseFailed(f"{phase} phase: {self.accepted} of the {w.count_min} messages needed "
                                  f"arrived within time.max ({w.time_max:g} s)")
            self._progress.clear()
            try:
                await asyncio.wait_for(self._progress.wait(), left)
            except TimeoutError:
                pass

    async def _new_round(self) -> None:
        previous = self.state
        round_id = previous.round_id + 1 if previous else 1
        old_seed = previous.seed if previous else bytes(32)
        keys = self.keygen(round_id)
        pet = self.settings.pet
        seed = crypto.next_round_seed(old_seed, keys.secret_key, pet.sum.prob, pet.update.prob)
        params = self._round_params(keys.public_key, seed)
        await self._thread(self.store.clear_round)
        self._reset_round_memory()
        self.state = RoundState(round_id, SUM, keys.secret_key, seed, params.to_bytes(), self.clock(), {})
        self.round_started = self.clock()
        await self._enter(SUM)
        self.metrics.round_id.set(round_id)

    async def _failure(self, why: str) -> None:
        log.warning("round %d failed: %s", self.state.round_id if self.state else 0, why)
        self.metrics.rounds.labels(outcome="failed").inc()
        if self.state and self.state.phase in (SUM, UPDATE, SUM2, UNMASK):
            now = self.clock()
            self.history.append({
                "round_id": self.state.round_id, "outcome": "failed", "phase": self.state.phase,
                "failure": why, "started": self.round_started, "ended": now,
                "duration": now - self.round_started, **self._participants(),
                "messages": dict(self.round_messages), "reasons": dict(self.round_reasons)})
        if self.state:
            self.state.phase = FAILURE
            await self._save()
            self.metrics.phase.set(PHASE_CODES[FAILURE])
        async with self._lock:
            await self._new_round()

    async def _end_sum(self) -> None:
        if not self.sum_dict:
            raise PhaseFailed("sum phase ended without a sum participant")
        self._sums_bytes = SumDict(self.sum_dict).to_bytes()
        self.aggregation = Aggregation(self.config, self.config, self.length)
        self.metrics.participants.labels(role="sum").set(len(self.sum_dict))
        await self._enter(UPDATE)

    async def _end_update(self) -> None:
        if not self.aggregation or self.aggregation.nb_models == 0:
            raise PhaseFailed("update phase ended without an update")
        self.metrics.participants.labels(role="update").set(self.aggregation.nb_models)
        await self._enter(SUM2)

    async def _end_sum2(self) -> None:
        self.state.phase = UNMASK
        self.metrics.phase.set(PHASE_CODES[UNMASK])
        votes = await self._thread(self.store.votes)
        if not votes:
            raise PhaseFailed("no global mask was sent")
        if len(votes) > 1 and votes[1][1] == votes[0][1]:
            raise PhaseFailed(f"no mask has a strict majority ({votes[0][1]} votes each for the top two)")
        try:
            mask = MaskObject.from_bytes(votes[0][0])
            weights = await self._thread(unmask, self.aggregation.object, mask, self.aggregation.nb_models)
        except (DecodeError, UnmaskError) as e:
            raise PhaseFailed(f"the winning mask does not unmask the aggregate: {e}") from None
        meta = {"updates": self.aggregation.nb_models, "sums": len(self.sum_dict),
                "sum2": sum(n for _, n in votes), "mask_votes": votes[0][1],
                "started": self.round_started, "duration": self.clock() - self.round_started,
                "messages": dict(self.round_messages), "reasons": dict(self.round_reasons)}
        if self.evaluate:
            try:
                meta["evaluation"] = _figures(await self._thread(self.evaluate, weights))
            except Exception:
                log.exception("the evaluation hook failed")
        model = GlobalModel(self.state.round_id, weights.astype("<f8").tobytes(), self.clock(), meta)
        await self._thread(self.store.add_global_model, model, self.settings.history.keep)
        self.latest_model = model
        self.history.append(_completed(model))
        self._model_cache.clear()
        self.metrics.rounds.labels(outcome="completed").inc()
        log.info("round %d: global model from %d updates (%d of %d mask votes)", self.state.round_id,
                 meta["updates"], votes[0][1], meta["sum2"])
        await self._new_round()

    # -- messages --------------------------------------------------------------------------

    async def handle(self, sealed: bytes) -> Verdict:
        """The verdict for one POST /message body."""
        started = time.perf_counter()
        view = self.view
        phase = self.phase
        try:
            msg = await self._thread(open_and_check, sealed, view)
            if msg.is_multipart:
                try:
                    msg = self.reassembler.add(msg)
                except MultipartError as e:
                    raise Rejected("multipart", str(e)) from None
                except DecodeError as e:
                    raise Rejected("malformed", f"reassembled payload: {e}") from None
                if msg is None:
                    self.metrics.chunks.inc()
                    return ACCEPTED
                await self._thread(check_task, msg, view)
            if msg.tag is Tag.UPDATE:
                verdict = await self._submit_update(msg, view)
            else:
                async with self._lock:
                    self._check_current(msg, view)
                    verdict = await self._HANDLERS[msg.tag](self, msg)
        except Rejected as r:
            if r.reason == "wrong_phase":
                r = await self._resent(sealed, view) or r
            verdict = rejected(r.reason, r.detail)
        self.record(verdict, phase, time.perf_counter() - started)
        return verdict

    def record(self, verdict: Verdict, phase: str | None = None, seconds: float | None = None) -> None:
        """Count a verdict (also those the HTTP layer gives: too large, unauthorized)."""
        kind = "accepted" if verdict.accepted else "discarded" if verdict.reason == "phase_full" else "rejected"
        self.counters[kind] += 1
        self.round_messages[kind] += 1
        if not verdict.accepted:
            self.round_reasons[verdict.reason] += 1
            self.recent_rejections.appendleft({
                "time": self.clock(), "round_id": self.state.round_id, "phase": phase or self.phase,
                "reason": verdict.reason, "detail": verdict.detail[:200]})
            self.rejections_log.warning(verdict.reason, "round %d %s phase: rejected a message (%s): %s",
                                        self.state.round_id, phase or self.phase, verdict.reason,
                                        verdict.detail or "-")
        self.metrics.messages.labels(phase=phase or self.phase,
                                     verdict="accepted" if verdict.accepted else "rejected",
                                     reason=verdict.reason or "accepted").inc()
        if seconds is not None:
            self.metrics.latency.observe(seconds)

    async def _resent(self, sealed: bytes, view: RoundView) -> Rejected | None:
        """`duplicate` for a Sum or Update of this round sent again after its phase ended by a
        participant whose message was accepted: its answer was lost (a broker or gateway
        restart), and wrong_phase would make it give up a round it is part of."""
        msg = await self._thread(_open_signed, sealed, view)
        if msg is None or view.round_id != self.state.round_id:
            return None
        if msg.tag is Tag.SUM and msg.participant_pk in self.sum_dict:
            return Rejected("duplicate", "this participant already sent a Sum message")
        if msg.tag is Tag.UPDATE and msg.participant_pk in self.updaters:
            return Rejected("duplicate", "this participant already sent an update")
        return None

    def _check_current(self, msg: Message, view: RoundView) -> None:
        """The phase may have moved on while the message was being checked."""
        if self.view is not view:
            if self.view.round_id != view.round_id:
                raise Rejected("wrong_phase", "the round ended while the message was checked")
            check_phase(msg.tag, self.view)

    def _accept(self) -> Verdict:
        self.accepted += 1
        self._progress.set()
        return ACCEPTED

    def _check_room(self) -> None:
        if self.accepted >= self.windows[self.phase].count_max:
            raise Rejected("phase_full", f"the {self.phase} phase already accepted "
                                         f"{self.windows[self.phase].count_max} messages")

    async def _on_sum(self, msg: Message) -> Verdict:
        p: Sum = msg.payload
        self._check_room()
        if not await self._thread(self.store.add_sum_participant, msg.participant_pk, p.ephm_pk):
            raise Rejected("duplicate", "this participant already sent a Sum message")
        self.sum_dict[msg.participant_pk] = p.ephm_pk
        return self._accept()

    async def _submit_update(self, msg: Message, view: RoundView) -> Verdict:
        """Updates are aggregated and stored in batches: one store transaction for all
        updates that arrived while the previous batch was being written."""
        future = asyncio.get_running_loop().create_future()
        self._update_queue.append((msg, view, future))
        if self._committer is None or self._committer.done():
            self._committer = asyncio.create_task(self._commit_updates())
        return await future

    async def _commit_updates(self) -> None:
        while self._update_queue:
            batch, self._update_queue = self._update_queue, []
            try:
                async with self._lock:
                    await self._commit_batch(batch)
            except Exception as e:  # the store failed: these messages were not accepted
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(e)

    def _check_update(self, msg: Message, view: RoundView, batch_pks: set[bytes]) -> None:
        self._check_current(msg, view)
        pk = msg.participant_pk
        w = self.windows[UPDATE]
        if self.accepted + len(batch_pks) >= w.count_max:
            raise Rejected("phase_full", f"the update phase already accepted {w.count_max} messages")
        if pk in self.updaters or pk in batch_pks:
            raise Rejected("duplicate", "this participant already sent an update")
        check_update(msg, self.sum_dict, self.config, self.length)
        agg = self.aggregation
        limit = min(agg.vect_config.max_models, agg.unit_config.max_models)
        if agg.nb_models + len(batch_pks) >= limit:
            raise Rejected("bad_mask", f"the mask config aggregates at most {limit} models")

    async def _commit_batch(self, batch: list) -> None:
        taken, pks = [], set()
        for msg, view, future in batch:
            try:
                self._check_update(msg, view, pks)
            except Rejected as r:
                future.set_result(rejected(r.reason, r.detail))
                continue
            taken.append((msg, future))
            pks.add(msg.participant_pk)
        if not taken:
            return

        def aggregate_and_store():
            new = Aggregation.restore(self.aggregation.object, self.aggregation.nb_models)
            for msg, _ in taken:  # decoded objects are range-checked; _check_update did the rest
                new.aggregate(msg.payload.masked_model, validated=True)
            seen = self.store.add_updates([(m.participant_pk, dict(m.payload.local_seed_dict)) for m, _ in taken],
                                          new.object.to_bytes(), new.nb_models)
            return new, seen
        new, seen = await self._thread(aggregate_and_store)
        if seen:  # the store already has some (an answer lost before a restart): store the rest
            self.updaters |= set(seen)
            for msg, future in taken:
                if msg.participant_pk in self.updaters:
                    future.set_result(rejected("duplicate", "this participant already sent an update"))
            await self._commit_batch([(m, self.view, f) for m, f in taken if not f.done()])
            return
        self.aggregation = new
        self.updaters |= pks
        for _, future in taken:
            future.set_result(self._accept())

    async def _on_sum2(self, msg: Message) -> Verdict:
        p: Sum2 = msg.payload
        if msg.participant_pk not in self.sum_dict:
            raise Rejected("unknown_sum_participant", "the sender is not in this round's sum dict")
        self._check_room()
        mask = p.model_mask
        if mask.vect.config != self.config or mask.unit.config != self.config or len(mask.vect) != self.length:
            raise Rejected("bad_mask", f"the mask is not a {self.config.name} mask of {self.length} weights")
        if not await self._thread(self.store.add_vote, msg.participant_pk, mask.to_bytes()):
            raise Rejected("duplicate", "this sum participant already sent its global mask")
        return self._accept()

    _HANDLERS = {Tag.SUM: _on_sum, Tag.SUM2: _on_sum2}

    # -- what the REST routes serve --------------------------------------------------------

    def params_bytes(self) -> bytes:
        return self.state.params

    def sums_bytes(self) -> bytes | None:
        return self._sums_bytes if self.phase in (UPDATE, SUM2) else None

    async def seeds_bytes(self, sum_pk: bytes) -> bytes | None:
        if self.phase != SUM2 or sum_pk not in self.sum_dict:
            return None
        if sum_pk not in self._seed_columns:
            column = await self._thread(self.store.seed_column, sum_pk)
            self._seed_columns[sum_pk] = UpdateSeedDict(column).to_bytes()
        return self._seed_columns[sum_pk]

    async def model_bytes(self, fmt: str = "bincode") -> bytes | None:
        """The latest global model: XayNet's bincode rationals, or our float32 stream."""
        model = self.latest_model
        if model is None:
            return None
        key = (model.round_id, fmt)
        if key not in self._model_cache:
            weights = np.frombuffer(model.weights, dtype="<f8")
            if fmt == "f32":
                data = (model.round_id.to_bytes(8, "little") + len(weights).to_bytes(4, "little")
                        + weights.astype("<f4").tobytes())
            else:
                data = await self._thread(lambda: Model(Fraction(float(w)) for w in weights).to_bytes())
            self._model_cache = {key: data}
        return self._model_cache[key]

    def _participants(self) -> dict:
        """Sum participants, accepted updates and Sum2 messages of this round so far."""
        return {"sums": len(self.sum_dict),
                "updates": self.aggregation.nb_models if self.aggregation else 0,
                "sum2": self.accepted if self.phase in (SUM2, UNMASK) else 0}

    def _pending_chunks(self) -> int:
        """Multipart messages begun and not complete yet."""
        return self.reassembler.pending_messages

    def rounds(self) -> list[dict]:
        """Past rounds, completed and failed, oldest first."""
        return list(self.history)

    def rejections(self) -> list[dict]:
        """The latest rejected and discarded messages, newest first."""
        return list(self.recent_rejections)

    def status(self) -> dict:
        w = self.windows.get(self.phase)
        started = self.state.phase_started
        latest = self.latest_model
        return {
            "round_id": self.state.round_id,
            "phase": self.phase,
            "phase_started": started,
            "deadline_min": started + w.time_min if w else None,
            "deadline_max": started + w.time_max if w else None,
            "needed": w.count_min if w else None,
            "accepted": self.accepted,
            "counters": dict(self.counters),
            "reasons": dict(self.round_reasons),
            "sum_participants": len(self.sum_dict),
            "updates": self._participants()["updates"],
            "sum2": self._participants()["sum2"],
            "mask_config": self.config.name,
            "model_length": self.length,
            "latest_model": None if latest is None else {"round_id": latest.round_id, "created": latest.created,
                                                         **latest.meta},
            "pending_chunks": self._pending_chunks(),
            "now": self.clock(),
        }

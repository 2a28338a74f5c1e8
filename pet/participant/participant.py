"""The reference participant: XayNet's participant state machine (spec section 8).

Each `step()` first fetches the round parameters; new parameters start a new
round from any state (unfinished work of the old round is dropped). Parameters
of a round it has already left are ignored: a broker restarted from its saved
state briefly serves the retained parameters of an earlier round. Otherwise
the current phase does its own step:

  AWAITING       nothing until the round changes
  NEW_ROUND      sortition -> SUM, UPDATE or AWAITING
  SUM            fresh ephemeral X25519 keys, Sum message -> SENDING_SUM
  SENDING_SUM    one sealed message per step, then -> SUM2
  SUM2           fetch the own seed column, open the seeds, add up the masks,
                 Sum2 message -> SENDING_SUM2 (-> AWAITING)
  UPDATE         fetch the sum dict, take the model from the app, mask it, seal
                 the mask seed to every sum participant -> SENDING_UPDATE (-> AWAITING)

A step returns True when it made progress (call again), False when it has to
wait. All state, the outbox of sealed messages included, is persisted after
every change, so a restarted participant resumes where it stopped; a message
the coordinator already accepted and that is sent again is answered
`duplicate`, which counts as done.
"""

from __future__ import annotations

import enum
import logging
import threading
from collections import deque
from dataclasses import dataclass
from typing import Callable

import numpy as np

from pet import crypto
from pet.crypto import CryptoError, EncryptKeyPair, SigningKeyPair
from pet.mask import MaskingError, aggregate_masks, mask_model
from pet.multipart import DEFAULT_MAX_MESSAGE_SIZE, encode_messages, max_payload_size
from pet.participant.store import MemoryStore, StateStore
from pet.participant.transport import Transport, TransportError
from pet.sortition import Task, select_task
from pet.wire import LocalSeedDict, Model, RoundParameters, Sum, Sum2, Update

log = logging.getLogger("pet.participant")


class Phase(str, enum.Enum):
    AWAITING = "awaiting"
    NEW_ROUND = "new_round"
    SUM = "sum"
    SENDING_SUM = "sending_sum"
    SUM2 = "sum2"
    SENDING_SUM2 = "sending_sum2"
    UPDATE = "update"
    SENDING_UPDATE = "sending_update"


_AFTER_SENDING = {Phase.SENDING_SUM: Phase.SUM2, Phase.SENDING_SUM2: Phase.AWAITING,
                  Phase.SENDING_UPDATE: Phase.AWAITING}


@dataclass
class Settings:
    scalar: float = 1.0
    """Aggregation weight of this participant's model (e.g. its number of samples)."""
    max_message_size: int | None = DEFAULT_MAX_MESSAGE_SIZE
    """Largest sealed message to send; larger payloads are chunked. None: never chunk."""


# train(round_params, global_model or None) -> weights, or (weights, scalar), or None if not ready
ModelHook = Callable[[RoundParameters, "np.ndarray | None"], object]
GlobalModelHook = Callable[[np.ndarray], None]


class Participant:
    def __init__(self, transport: Transport, train: ModelHook, *,
                 settings: Settings | None = None, store: StateStore | None = None,
                 keys: SigningKeyPair | None = None, on_global_model: GlobalModelHook | None = None):
        self.transport = transport
        self.train = train
        self.settings = settings or Settings()
        self.store = store or MemoryStore()
        self.keys = self.store.load_or_create_keys(keys)
        self.on_global_model = on_global_model
        self.global_model: np.ndarray | None = None
        self._global_model_key: bytes | None = None
        self._left: deque[bytes] = deque(maxlen=100)  # seeds of the rounds left behind
        self._load()

    # -- persistence ---------------------------------------------------------------------------

    def _load(self) -> None:
        state = self.store.load_state() or {}
        self.phase = Phase(state.get("phase", Phase.AWAITING.value))
        raw = state.get("params")
        self.params = RoundParameters.from_bytes(bytes.fromhex(raw)) if raw else None
        self.sum_signature = bytes.fromhex(state["sum_signature"]) if state.get("sum_signature") else None
        self.update_signature = (bytes.fromhex(state["update_signature"])
                                 if state.get("update_signature") else None)
        ephm = state.get("ephm_sk")
        self.ephm = EncryptKeyPair.from_secret_key(bytes.fromhex(ephm)) if ephm else None
        if self.phase is not Phase.AWAITING:
            log.info("resuming in phase %s", self.phase.value)

    def _save(self) -> None:
        self.store.save_state({
            "phase": self.phase.value,
            "params": self.params.to_bytes().hex() if self.params else None,
            "sum_signature": self.sum_signature.hex() if self.sum_signature else None,
            "update_signature": self.update_signature.hex() if self.update_signature else None,
            "ephm_sk": self.ephm.secret_key.hex() if self.ephm else None,
        })

    def _enter(self, phase: Phase) -> bool:
        if phase is not self.phase:
            log.debug("%s -> %s", self.phase.value, phase.value)
        self.phase = phase
        if phase is Phase.AWAITING:
            self.ephm = None
            self.store.clear_outbox()
        self._save()
        return True

    # -- the state machine ---------------------------------------------------------------------

    @property
    def public_key(self) -> bytes:
        return self.keys.public_key

    def step(self) -> bool:
        """One transition; True when progress was made."""
        try:
            params = self.transport.params()
        except TransportError as e:
            log.debug("coordinator unreachable: %s", e)
            return False
        if params is None:
            return False
        if params != self.params:
            if params.seed in self._left:
                log.debug("ignoring the parameters of an earlier round (seed %s)", params.seed[:4].hex())
                return False
            return self._new_round(params)
        try:
            return self._PHASE_STEPS[self.phase](self)
        except TransportError as e:
            log.debug("coordinator unreachable: %s", e)
            return False

    def _new_round(self, params: RoundParameters) -> bool:
        log.info("new round (seed %s)", params.seed[:4].hex())
        if self.params is not None:
            self._left.append(self.params.seed)
        self.params = params
        self.sum_signature = self.update_signature = None
        self.store.clear_outbox()
        self._enter(Phase.NEW_ROUND)
        self._fetch_global_model()
        return True

    def _fetch_global_model(self) -> None:
        try:
            model = self.transport.model()
        except TransportError:
            return
        if model is None:
            return
        key = Model(model).to_bytes()
        if key == self._global_model_key:
            return
        self._global_model_key = key
        self.global_model = np.array([float(w) for w in model], dtype=np.float64)
        if self.on_global_model:
            self.on_global_model(self.global_model)

    def _step_awaiting(self) -> bool:
        return False

    def _step_new_round(self) -> bool:
        p = self.params
        task, self.sum_signature, self.update_signature = select_task(self.keys, p.seed, p.sum, p.update)
        log.info("sortition: %s", task.name.lower())
        return self._enter({Task.SUM: Phase.SUM, Task.UPDATE: Phase.UPDATE}.get(task, Phase.AWAITING))

    def _step_sum(self) -> bool:
        self.ephm = EncryptKeyPair.generate()
        self._queue(Sum(self.sum_signature, self.ephm.public_key))
        return self._enter(Phase.SENDING_SUM)

    def _step_update(self) -> bool:
        p = self.params
        sums = self.transport.sums()
        if sums is None:
            return False
        local = self.train(p, self.global_model)
        if local is None:
            return False
        weights, scalar = local if isinstance(local, tuple) else (local, self.settings.scalar)
        if len(weights) != p.model_length:
            log.error("the model has %d weights, the round wants %d: skipping the round",
                      len(weights), p.model_length)
            return self._enter(Phase.AWAITING)
        try:
            mask_seed, masked = mask_model(weights, scalar, p.mask_config.vect, p.mask_config.unit)
        except MaskingError as e:
            log.error("cannot mask the model: %s; skipping the round", e)
            return self._enter(Phase.AWAITING)
        seeds = LocalSeedDict((sum_pk, crypto.seal(mask_seed, ephm_pk)) for sum_pk, ephm_pk in sums.items())
        self._queue(Update(self.sum_signature, self.update_signature, masked, seeds))
        return self._enter(Phase.SENDING_UPDATE)

    def _step_sum2(self) -> bool:
        p = self.params
        column = self.transport.seeds(self.public_key)
        if column is None:
            return False
        try:
            seeds = [crypto.seal_open(box, self.ephm.public_key, self.ephm.secret_key)
                     for box in column.values()]
            if any(len(s) != 32 for s in seeds):
                raise CryptoError("a mask seed is not 32 bytes")
            global_mask = aggregate_masks(seeds, p.model_length, p.mask_config.vect, p.mask_config.unit)
        except (CryptoError, ValueError) as e:
            log.error("cannot build the global mask: %s; skipping the round", e)
            return self._enter(Phase.AWAITING)
        self._queue(Sum2(self.sum_signature, global_mask))
        return self._enter(Phase.SENDING_SUM2)

    def _step_sending(self) -> bool:
        sealed = self.store.outbox_head()
        if sealed is None:
            return self._enter(_AFTER_SENDING[self.phase])
        verdict = self.transport.send(sealed)
        if verdict.retry_later:
            log.info("message not taken (%s); sending it again later", verdict.reason)
            return False
        if verdict.accepted or verdict.already_done:
            self.store.pop_outbox()
            if self.store.outbox_len() == 0:
                log.info("%s sent", self.phase.value.removeprefix("sending_"))
                return self._enter(_AFTER_SENDING[self.phase])
            return True
        log.warning("message rejected (%s: %s); skipping the round", verdict.reason, verdict.detail)
        return self._enter(Phase.AWAITING)

    _PHASE_STEPS = {
        Phase.AWAITING: _step_awaiting, Phase.NEW_ROUND: _step_new_round, Phase.SUM: _step_sum,
        Phase.SENDING_SUM: _step_sending, Phase.SUM2: _step_sum2, Phase.SENDING_SUM2: _step_sending,
        Phase.UPDATE: _step_update, Phase.SENDING_UPDATE: _step_sending,
    }

    def _queue(self, payload) -> None:
        """Chunk, sign and seal a payload into the outbox."""
        messages = encode_messages(self.public_key, self.params.pk, payload,
                                   max_payload_size(self.settings.max_message_size))
        sealed = [crypto.seal(crypto.sign_message(m.encode(), self.keys), self.params.pk) for m in messages]
        self.store.set_outbox(sealed)

    # -- driving it ----------------------------------------------------------------------------

    def run(self, stop: threading.Event | None = None, min_sleep: float = 0.1, max_sleep: float = 10.0,
            until: Callable[[], bool] | None = None) -> None:
        """Step until stopped, sleeping 100 ms x 1.2 per idle step (at most max_sleep)."""
        stop = stop or threading.Event()
        sleep = min_sleep
        while not stop.is_set() and not (until and until()):
            if self.step():
                sleep = min_sleep
                continue
            stop.wait(sleep)
            sleep = min(sleep * 1.2, max_sleep)


"""Attacks on a real coordinator (and on the gateway in front of it).

Each test drives one round by hand over HTTP: honest sum and update participants
with known models and mask seeds, and an attack in the middle of a phase. Every
attack message must get its verdict reason and be counted in /metrics, and the
round must still end with exactly the global model the honest participants make
(the same float64 values as unmasking their masked models offline).

Phases end as soon as the honest messages are in (time.min 0, count.min = the
honest count), so the last honest message of a phase waits until the attack is
done. tests/test_coordinator.py covers the basic verdicts (garbage, a bit flip,
a zero coordinator key, wrong phase, a duplicate Sum, an empty or unknown seed
dict, short masks, a conflicting chunk, a full phase, the token, a large body).
"""

from __future__ import annotations

import base64
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass

import numpy as np
import pytest

from gateway.settings import load_settings as gateway_settings
from pet import crypto
from pet.crypto import EncryptKeyPair, SigningKeyPair
from pet.mask import Aggregation, MaskObject, MaskUnit, MaskVect, aggregate_masks, mask_model, unmask
from pet.mask.config import MaskConfig
from pet.multipart import encode_messages
from pet.participant.mqtt import DeviceClient
from pet.sortition import Task, is_eligible, select_task, update_signature
from pet.verdict import REASONS
from pet.wire import HEADER_LENGTH, Chunk, LocalSeedDict, Message, RoundParameters, Sum, Sum2, SumDict, \
    Update, UpdateSeedDict
from tests.coordinator_harness import RunningCoordinator, fast_settings
from tests.test_gateway import RunningGateway, broker_address, gateway_env, wait_for

# Ed25519's group order: a signature whose S is not below it is not canonical
ED25519_L = 2 ** 252 + 27742317777372353535851937790883648493


# -- one round, by hand ------------------------------------------------------------------------

def http(url: str, path: str, body: bytes | None = None, headers=None) -> tuple[int, bytes]:
    req = urllib.request.Request(url + path, data=body, method="POST" if body is not None else "GET",
                                 headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def reason_of(status: int, body: bytes) -> str:
    """'accepted' for a 200, else the verdict's reason (the status must be the reason's)."""
    if status == 200:
        return "accepted"
    reason = json.loads(body)["reason"]
    assert status == REASONS[reason][0], (status, reason)
    return reason


def signed(msg: Message, keys: SigningKeyPair) -> bytes:
    return crypto.sign_message(msg.encode(), keys)


def resign(plain: bytes, keys: SigningKeyPair) -> bytes:
    """Sign bytes [64:] into [0:64] whatever the header says (an attacker's own signature)."""
    return keys.sign(plain[64:]) + plain[64:]


@dataclass
class Summer:
    keys: SigningKeyPair
    sum_signature: bytes
    ephm: EncryptKeyPair


@dataclass
class Updater:
    keys: SigningKeyPair
    sum_signature: bytes
    update_signature: bytes
    weights: np.ndarray
    mask_seed: bytes
    masked: MaskObject


def keys_with_task(params: RoundParameters, task: Task, count: int, start: int, avoid=()):
    """`count` (keys, selection) with this task in this round, from seeds start, start+1, ..."""
    found, i = [], start
    while len(found) < count:
        keys = SigningKeyPair.from_seed(i.to_bytes(32, "little"))
        sel = select_task(keys, params.seed, params.sum, params.update)
        if sel.task is task and keys.public_key not in avoid:
            found.append((keys, sel))
        i += 1
        assert i < start + 5000, f"no {task} keys"
    return found


def coordinator(sums: int = 2, updates: int = 3, **overrides) -> RunningCoordinator:
    """A coordinator whose phases end as soon as `sums` Sum, `updates` Update and `sums` Sum2
    messages are in."""
    settings = {"pet.sum.prob": 0.4, "pet.update.prob": 0.5,
                "pet.sum.count.min": sums, "pet.sum2.count.min": sums, "pet.update.count.min": updates,
                "pet.sum.time.min": 0, "pet.update.time.min": 0, "pet.sum2.time.min": 0,
                "pet.sum.time.max": 60, "pet.update.time.max": 60, "pet.sum2.time.max": 60}
    return RunningCoordinator(fast_settings(**(settings | overrides)), key_label=uuid.uuid4().bytes)


class Round:
    """The current round of coordinator c, with `sums` honest sum and `updates` honest update
    participants (keys from seed `first_key` on)."""

    def __init__(self, c: RunningCoordinator, sums: int = 2, updates: int = 3, first_key: int = 10_000):
        self.c, self.url = c, c.url
        self.round_id = c.status()["round_id"]
        self.params = RoundParameters.from_bytes(http(self.url, "/params")[1])
        self.pk = self.params.pk
        self.config = self.params.mask_config.vect
        self.length = self.params.model_length
        rs = np.random.default_rng(first_key)
        self.summers = [Summer(k, sel.sum_signature, EncryptKeyPair.generate())
                        for k, sel in keys_with_task(self.params, Task.SUM, sums, first_key)]
        self.updaters = []
        for k, sel in keys_with_task(self.params, Task.UPDATE, updates, first_key):
            weights = rs.uniform(-1, 1, self.length).astype(np.float32)
            mask_seed, masked = mask_model(weights, 1.0, self.config, seed=rs.bytes(32))
            self.updaters.append(Updater(k, sel.sum_signature, sel.update_signature, weights, mask_seed,
                                         masked))
        self.done: set[bytes] = set()  # participants whose honest message was accepted this phase
        self.captured: dict[str, list[tuple[bytes, bytes]]] = {"sum": [], "update": [], "sum2": []}

    # -- messages --------------------------------------------------------------------------

    def seal(self, plain: bytes) -> bytes:
        return crypto.seal(plain, self.pk)

    def sum_message(self, s: Summer, ephm_pk: bytes | None = None) -> Message:
        return Message.from_payload(s.keys.public_key, self.pk, Sum(s.sum_signature, ephm_pk or s.ephm.public_key))

    def local_seed_dict(self, u: Updater) -> LocalSeedDict:
        sums = SumDict.from_bytes(http(self.url, "/sums")[1])
        return LocalSeedDict((pk, crypto.seal(u.mask_seed, ephm_pk)) for pk, ephm_pk in sums.items())

    def update_message(self, u: Updater, masked: MaskObject | None = None,
                       seeds: LocalSeedDict | None = None) -> Message:
        seeds = self.local_seed_dict(u) if seeds is None else seeds
        return Message.from_payload(u.keys.public_key, self.pk, Update(
            u.sum_signature, u.update_signature, u.masked if masked is None else masked, seeds))

    def global_mask(self, s: Summer) -> MaskObject:
        """What an honest sum participant sends: its seed column, opened and added up."""
        pk = urllib.parse.quote(base64.b64encode(s.keys.public_key).decode(), safe="")
        status, body = http(self.url, f"/seeds?pk={pk}")
        assert status == 200
        seeds = [crypto.seal_open(box, s.ephm.public_key, s.ephm.secret_key)
                 for box in UpdateSeedDict.from_bytes(body).values()]
        return aggregate_masks(seeds, self.length, self.config)

    def sum2_message(self, s: Summer, mask: MaskObject | None = None) -> Message:
        mask = self.global_mask(s) if mask is None else mask
        return Message.from_payload(s.keys.public_key, self.pk, Sum2(s.sum_signature, mask))

    # -- sending ---------------------------------------------------------------------------

    def post(self, body: bytes, path: str = "/message", headers=None) -> str:
        return reason_of(*http(self.url, path, body, headers))

    def send(self, msg: Message, keys: SigningKeyPair) -> str:
        return self.post(self.seal(signed(msg, keys)))

    def honest(self, who) -> None:
        """Send the honest message of a summer or updater for the current phase."""
        phase = self.c.status()["phase"]
        if phase == "sum":
            msg = self.sum_message(who)
        elif phase == "update":
            msg = self.update_message(who)
        else:
            msg = self.sum2_message(who)
        plain = signed(msg, who.keys)
        sealed = self.seal(plain)
        self.captured[phase].append((plain, sealed))
        assert self.post(sealed) == "accepted", (phase, who.keys.public_key.hex()[:8])
        self.done.add(who.keys.public_key)

    def _phase(self, name: str, people: list, attack) -> None:
        self.wait_phase(name)
        self.done = set()
        if attack:
            attack(self)
        for who in people:
            if who.keys.public_key not in self.done:
                self.honest(who)

    def wait_phase(self, name: str) -> None:
        wait_for(lambda: self.c.status()["phase"] == name or self.c.status()["round_id"] != self.round_id,
                 what=f"the {name} phase")
        assert self.c.status()["round_id"] == self.round_id, f"the round ended before {name}"

    def run(self, on_sum=None, on_update=None, on_sum2=None) -> None:
        """The round with these attacks, ending in exactly the honest global model."""
        self._phase("sum", self.summers, on_sum)
        self._phase("update", self.updaters, on_update)
        self.wait_phase("sum2")  # the aggregate the Update phase made
        assert self.c.coordinator.aggregation.object == self.honest_aggregate()
        self._phase("sum2", self.summers, on_sum2)
        wait_for(lambda: self.c.status()["round_id"] > self.round_id, what="the end of the round")
        latest = self.c.coordinator.latest_model
        assert latest is not None and latest.round_id == self.round_id, "the round did not complete"
        assert np.array_equal(np.frombuffer(latest.weights, "<f8"), self.honest_model())
        assert latest.meta["updates"] == len(self.updaters)
        assert np.allclose(self.honest_model(), np.mean([u.weights for u in self.updaters], axis=0), atol=1e-5)

    def honest_aggregate(self) -> MaskObject:
        agg = Aggregation(self.config, self.config, self.length)
        for u in self.updaters:
            agg.aggregate(u.masked)
        return agg.object

    def honest_model(self) -> np.ndarray:
        mask = aggregate_masks([u.mask_seed for u in self.updaters], self.length, self.config)
        return unmask(self.honest_aggregate(), mask, len(self.updaters))

    def rejected(self, reason: str, phase: str) -> float:
        return self.c.coordinator.metrics.registry.get_sample_value(
            "pet_messages_total", {"phase": phase, "verdict": "rejected", "reason": reason}) or 0.0


# -- replay -----------------------------------------------------------------------------------

def test_messages_of_an_earlier_round_are_refused():
    with coordinator() as c:
        first = Round(c)
        first.run()
        old = first.captured
        r = Round(c, first_key=20_000)
        assert r.pk != first.pk and r.params.seed != first.params.seed

        def replay(phase):
            def attack(r):
                for plain, sealed in old[phase]:
                    # the sealed bytes as they were: sealed to the old round key
                    assert r.post(sealed) == "undecryptable"
                    # the signed message sealed to the new key: it names the old coordinator key
                    assert r.post(r.seal(plain)) == "wrong_coordinator_pk"
                    # re-signed by its sender with the new coordinator key: the sortition
                    # signatures are those of the old round seed
                    msg = Message.decode(plain)
                    msg.coordinator_pk = r.pk
                    keys = next(p.keys for p in first.summers + first.updaters
                                if p.keys.public_key == msg.participant_pk)
                    assert r.send(msg, keys) == "not_eligible"
                n = len(old[phase])
                assert n >= 2
                for reason in ("undecryptable", "wrong_coordinator_pk", "not_eligible"):
                    assert r.rejected(reason, phase) == n
            return attack
        r.run(on_sum=replay("sum"), on_update=replay("update"), on_sum2=replay("sum2"))


# -- duplicates and signatures ------------------------------------------------------------------

def test_duplicates_are_refused_and_counted_once():
    with coordinator() as c:
        r = Round(c)

        def on_sum(r):
            s = r.summers[0]
            r.honest(s)
            assert r.send(r.sum_message(s, EncryptKeyPair.generate().public_key), s.keys) == "duplicate"
            assert r.rejected("duplicate", "sum") == 1

        def on_update(r):
            u = r.updaters[0]
            r.honest(u)
            _, sealed = r.captured["update"][-1]
            assert r.post(sealed) == "duplicate"                      # the same bytes again
            other = u.masked.vect.data.copy()
            other[0] ^= 1                                              # another model, same sender
            changed = MaskObject(MaskVect(r.config, other), u.masked.unit)
            assert r.send(r.update_message(u, masked=changed), u.keys) == "duplicate"
            # both at once in one POST /messages: one verdict each, neither taken
            body = b"".join(len(m).to_bytes(4, "big") + m for m in (sealed, sealed))
            status, answer = http(r.url, "/messages", body)
            assert status == 200 and [v["reason"] for v in json.loads(answer)] == ["duplicate", "duplicate"]
            assert r.rejected("duplicate", "update") == 4

        def on_sum2(r):
            s = r.summers[0]
            r.honest(s)
            mask = r.global_mask(s)
            assert r.send(r.sum2_message(s, mask), s.keys) == "duplicate"
            other = mask.vect.data.copy()
            other[1] ^= 1
            assert r.send(r.sum2_message(s, MaskObject(MaskVect(r.config, other), mask.unit)), s.keys) == "duplicate"
            assert r.rejected("duplicate", "sum2") == 2
        r.run(on_sum, on_update, on_sum2)


def test_forged_and_invalid_signatures_are_refused():
    with coordinator() as c:
        r = Round(c)
        attacker = SigningKeyPair.from_seed(b"\x01" * 32)

        def forgeries(msg: Message, victim: SigningKeyPair) -> list[bytes]:
            """Plaintexts whose signature does not verify with the pk they name."""
            good = signed(msg, victim)
            s = int.from_bytes(good[32:64], "little")
            other = Message.decode(good)
            other.payload.sum_signature = bytes(64)  # the signature of one message on another
            return [bytes(64) + good[64:],                                   # zeros
                    os.urandom(64) + good[64:],                              # random
                    good[:32] + (s + ED25519_L).to_bytes(32, "little") + good[64:],  # S not canonical
                    good[:64] + other.encode()[64:],                         # another message's
                    resign(good, attacker)]                                  # the attacker's key

        def on_sum(r):
            victim = r.summers[0]
            for plain in forgeries(r.sum_message(victim), victim.keys):
                assert r.post(r.seal(plain)) == "bad_signature"
            assert r.rejected("bad_signature", "sum") == 5

        def on_update(r):
            victim = r.updaters[0]
            for plain in forgeries(r.update_message(victim), victim.keys):
                assert r.post(r.seal(plain)) == "bad_signature"
            # the attacker's own key with a victim's sortition signatures, or made-up ones
            # whose hash would make it eligible
            stolen = Message.from_payload(attacker.public_key, r.pk, Update(
                victim.sum_signature, victim.update_signature, victim.masked, r.local_seed_dict(victim)))
            assert r.send(stolen, attacker) == "not_eligible"
            made_up = next(sig for sig in (os.urandom(64) for _ in range(1000))
                           if is_eligible(sig, r.params.update) and not is_eligible(sig, r.params.sum))
            stolen.payload.sum_signature, stolen.payload.update_signature = made_up, made_up
            assert r.send(stolen, attacker) == "not_eligible"
            assert r.rejected("bad_signature", "update") == 5
            assert r.rejected("not_eligible", "update") == 2

        def on_sum2(r):
            victim = r.summers[0]
            for plain in forgeries(r.sum2_message(victim), victim.keys):
                assert r.post(r.seal(plain)) == "bad_signature"
            assert r.rejected("bad_signature", "sum2") == 5
        r.run(on_sum, on_update, on_sum2)


def test_participants_without_the_task_are_refused():
    with coordinator() as c:
        r = Round(c)
        (idle, idle_sel), = keys_with_task(r.params, Task.NONE, 1, 30_000)
        (other_summer, other_sel), = keys_with_task(r.params, Task.SUM, 1, 30_000)
        updater = r.updaters[0]
        idle_update_sig = update_signature(idle, r.params.seed)

        def on_sum(r):
            # a key with no task, and an update participant, claim the sum task
            assert r.send(Message.from_payload(idle.public_key, r.pk, Sum(idle_sel.sum_signature, bytes(32))),
                          idle) == "not_eligible"
            assert r.send(Message.from_payload(updater.keys.public_key, r.pk,
                                               Sum(updater.sum_signature, bytes(32))), updater.keys) == "not_eligible"
            assert r.rejected("not_eligible", "sum") == 2

        def on_update(r):
            # a sum participant's real signatures (it may sum, so it may not update), a key
            # with no task with its own real signatures
            summer = r.summers[0]
            as_summer = Message.from_payload(summer.keys.public_key, r.pk, Update(
                summer.sum_signature, update_signature(summer.keys, r.params.seed), updater.masked,
                r.local_seed_dict(updater)))
            assert r.send(as_summer, summer.keys) == "not_eligible"
            as_idle = Message.from_payload(idle.public_key, r.pk, Update(
                idle_sel.sum_signature, idle_update_sig, updater.masked, r.local_seed_dict(updater)))
            assert r.send(as_idle, idle) == "not_eligible"
            assert r.rejected("not_eligible", "update") == 2

        def on_sum2(r):
            mask = r.global_mask(r.summers[0])
            # an update participant sends a global mask; a sum participant that sent no Sum
            assert r.send(Message.from_payload(updater.keys.public_key, r.pk, Sum2(updater.sum_signature, mask)),
                          updater.keys) == "not_eligible"
            assert r.send(Message.from_payload(other_summer.public_key, r.pk, Sum2(other_sel.sum_signature, mask)),
                          other_summer) == "unknown_sum_participant"
            assert r.rejected("not_eligible", "sum2") == 1
            assert r.rejected("unknown_sum_participant", "sum2") == 1
        r.run(on_sum, on_update, on_sum2)


# -- masks and seed dicts ---------------------------------------------------------------------

def test_masks_of_another_config_or_length_are_refused():
    with coordinator() as c:
        r = Round(c)
        u = r.updaters[0]
        w64, w32_b3 = MaskConfig.mcu(2, 10, wide=True), MaskConfig.mcu(3, 9)
        zeros = np.zeros(r.length, dtype=np.float32)
        wrong = [mask_model(zeros, 1.0, w64)[1],                            # 64-bit words
                 mask_model(zeros, 1.0, w32_b3)[1],                         # another bound, same size
                 MaskObject(u.masked.vect, MaskUnit(w32_b3, 0)),           # only the scalar's differs
                 mask_model(np.zeros(r.length + 1, np.float32), 1.0, r.config)[1],
                 mask_model(np.zeros(0, np.float32), 1.0, r.config)[1]]

        def on_update(r):
            for masked in wrong:
                assert r.send(r.update_message(u, masked=masked), u.keys) == "bad_mask"
            # a config that does not exist does not even decode
            plain = bytearray(signed(r.update_message(u), u.keys))
            plain[HEADER_LENGTH + 128] = 9                               # group type 9
            assert r.post(r.seal(resign(bytes(plain), u.keys))) == "malformed"
            assert r.rejected("bad_mask", "update") == len(wrong)
            assert r.rejected("malformed", "update") == 1

        def on_sum2(r):
            s = r.summers[0]
            for mask in wrong:
                assert r.send(r.sum2_message(s, mask), s.keys) == "bad_mask"
            assert r.rejected("bad_mask", "sum2") == len(wrong)
        r.run(on_update=on_update, on_sum2=on_sum2)


def test_elements_not_below_the_group_order_are_refused():
    """Only XayNet's configs have numbers that can reach the order (the MCU profile's words
    are the whole ring): Prime/F32/B0/M3, order 20,000,000,000,021 in 6 bytes."""
    with coordinator(**{"mask.config": "Prime/F32/B0/M3"}) as c:
        r = Round(c)
        order = r.config.order
        u, s = r.updaters[0], r.summers[0]

        def out_of_range(obj: MaskObject) -> list[MaskObject]:
            out = []
            for value in (order, order + 1, 2 ** 48 - 1):
                vect = obj.vect.data.copy()
                vect[len(vect) // 2] = value
                out.append(MaskObject(MaskVect(r.config, vect), obj.unit))
            out.append(MaskObject(obj.vect, MaskUnit(r.config, order)))
            return out

        def on_update(r):
            for masked in out_of_range(u.masked):
                assert not masked.is_valid()
                assert r.send(r.update_message(u, masked=masked), u.keys) == "malformed"
            assert r.rejected("malformed", "update") == 4

        def on_sum2(r):
            for mask in out_of_range(r.global_mask(s)):
                assert r.send(r.sum2_message(s, mask), s.keys) == "malformed"
            assert r.rejected("malformed", "sum2") == 4
        r.run(on_update=on_update, on_sum2=on_sum2)


def test_seed_dicts_that_do_not_match_the_sum_dict_are_refused():
    with coordinator(sums=3) as c:
        r = Round(c, sums=3)
        u = r.updaters[0]
        stranger = SigningKeyPair.from_seed(b"\x02" * 32).public_key

        def on_update(r):
            full = r.local_seed_dict(u)
            entries = list(full.items())
            missing = LocalSeedDict(entries[:2])
            swapped = LocalSeedDict(entries[:2] + [(stranger, entries[2][1])])
            extra = LocalSeedDict(entries + [(stranger, entries[0][1])])
            assert r.send(r.update_message(u, seeds=missing), u.keys) == "seed_dict_mismatch"
            assert r.send(r.update_message(u, seeds=swapped), u.keys) == "unknown_sum_participant"
            assert r.send(r.update_message(u, seeds=extra), u.keys) == "unknown_sum_participant"
            # a key twice: the decoder refuses it before any count is compared
            plain = bytearray(signed(r.update_message(u), u.keys))
            plain[-112:-80] = plain[-224:-192]
            assert r.post(r.seal(resign(bytes(plain), u.keys))) == "malformed"
            assert r.rejected("seed_dict_mismatch", "update") == 1
            assert r.rejected("unknown_sum_participant", "update") == 2
            assert r.rejected("malformed", "update") == 1
        r.run(on_update=on_update)


def test_seeds_that_do_not_open_make_the_round_fail_without_a_model():
    """An update participant may seal garbage instead of its mask seed: the coordinator
    cannot tell (the seeds are sealed to the sum participants), it accepts the update, and no
    sum participant can build the global mask. The round fails; nothing is unmasked."""
    with coordinator(**{"pet.sum2.time.max": 2}) as c:
        r = Round(c)

        def on_update(r):
            u = r.updaters[0]
            junk = LocalSeedDict((pk, os.urandom(80)) for pk in r.local_seed_dict(u))
            assert r.send(r.update_message(u, seeds=junk), u.keys) == "accepted"
            r.done.add(u.keys.public_key)
        r._phase("sum", r.summers, None)
        r._phase("update", r.updaters, on_update)
        r.wait_phase("sum2")
        for s in r.summers:
            with pytest.raises(crypto.CryptoError):
                r.global_mask(s)
        wait_for(lambda: c.status()["round_id"] > r.round_id, what="the round to fail")
        assert c.coordinator.latest_model is None
        assert c.coordinator.metrics.registry.get_sample_value("pet_rounds_total", {"outcome": "failed"}) == 1


# -- Sum2: a minority of wrong masks ---------------------------------------------------------

def wrong_mask(r: Round, s: Summer) -> MaskObject:
    mask = r.global_mask(s)
    vect = mask.vect.data.copy()
    vect[0] += 1
    return MaskObject(MaskVect(r.config, vect), mask.unit)


def test_a_minority_of_wrong_global_masks_is_outvoted():
    with coordinator(sums=3) as c:
        r = Round(c, sums=3)

        def on_sum2(r):
            cheat = r.summers[0]
            # well-formed, from a real sum participant: a vote like any other
            assert r.send(r.sum2_message(cheat, wrong_mask(r, cheat)), cheat.keys) == "accepted"
            r.done.add(cheat.keys.public_key)
        r.run(on_sum2=on_sum2)
        meta = c.coordinator.latest_model.meta
        assert (meta["sum2"], meta["mask_votes"]) == (3, 2)


def test_a_tie_between_global_masks_fails_the_round():
    with coordinator(sums=2) as c:
        r = Round(c, sums=2)

        def on_sum2(r):
            cheat = r.summers[0]
            assert r.send(r.sum2_message(cheat, wrong_mask(r, cheat)), cheat.keys) == "accepted"
            r.done.add(cheat.keys.public_key)
        r._phase("sum", r.summers, None)
        r._phase("update", r.updaters, None)
        r._phase("sum2", r.summers, on_sum2)
        wait_for(lambda: c.status()["round_id"] > r.round_id, what="the end of the round")
        assert c.coordinator.latest_model is None
        assert c.coordinator.metrics.registry.get_sample_value("pet_rounds_total", {"outcome": "failed"}) == 1


# -- chunks and bodies ------------------------------------------------------------------------

def test_chunk_floods_and_unfinished_messages_stay_bounded():
    limits = {"multipart.max_pending_messages": 20, "multipart.max_pending_bytes": 64 * 1024,
              "multipart.max_chunks": 16, "multipart.max_message_bytes": 4096, "multipart.max_age": 1.0}
    with coordinator(**limits) as c:
        r = Round(c)
        flooder = SigningKeyPair.from_seed(b"\x03" * 32)  # any key can send chunks: no task needed yet

        def chunk(keys, message_id, chunk_id, last=False, data=b"x" * 100) -> bytes:
            msg = Message(bytes(64), keys.public_key, r.pk, 2, True, Chunk(chunk_id, message_id, last, data))
            return r.seal(signed(msg, keys))

        def on_update(r):
            reassembler = c.coordinator.reassembler
            # 30 messages that never finish: 20 are held, then the buffer is full
            verdicts = [r.post(chunk(flooder, i, 0)) for i in range(30)]
            assert verdicts == ["accepted"] * 20 + ["multipart"] * 10
            # an honest updater's own unfinished message counts against the same bound
            assert r.post(chunk(r.updaters[1].keys, 7, 0)) == "multipart"
            assert reassembler.pending_messages == 20
            assert reassembler.pending_bytes <= 64 * 1024
            assert c.status()["pending_chunks"] == 20
            # once they expire, room again; a chunk id past max_chunks, a message past
            # max_message_bytes and one chunk after the last are each refused
            time.sleep(1.2)
            assert r.post(chunk(flooder, 100, 16)) == "multipart"
            assert reassembler.pending_messages == 0
            for i in range(5):
                assert r.post(chunk(flooder, 101, i, data=b"y" * 1000)) == ("accepted" if i < 4 else "multipart")
            assert r.post(chunk(flooder, 102, 1, last=True)) == "accepted"
            assert r.post(chunk(flooder, 102, 2)) == "multipart"
            # chunks that complete into garbage
            assert r.post(chunk(flooder, 103, 0, last=True, data=b"z" * 50)) == "malformed"
            assert r.rejected("multipart", "update") == 10 + 1 + 1 + 1 + 1
            assert r.rejected("malformed", "update") == 1
            assert reassembler.pending_bytes <= 64 * 1024
            # an honest update in chunks gets through the same reassembler
            u = r.updaters[0]
            msg = r.update_message(u)
            for part in encode_messages(u.keys.public_key, r.pk, msg.payload, 300):
                verdict = r.post(r.seal(signed(part, u.keys)))
                assert verdict == "accepted"
            r.done.add(u.keys.public_key)
        r.run(on_update=on_update)
        assert c.coordinator.metrics.registry.get_sample_value("pet_chunks_total") >= 20


def test_oversized_bodies_are_refused_however_they_are_sent():
    with coordinator(**{"api.max_body_bytes": 8192}) as c:
        r = Round(c)

        def chunked(data: bytes, path: str = "/message") -> str:
            """A body without Content-Length (chunked transfer encoding)."""
            req = urllib.request.Request(r.url + path, data=iter([data[i:i + 1000] for i in range(0, len(data), 1000)]),
                                         method="POST")
            try:
                with urllib.request.urlopen(req, timeout=20) as answer:
                    return reason_of(answer.status, answer.read())
            except urllib.error.HTTPError as e:
                return reason_of(e.code, e.read())

        def on_update(r):
            assert r.post(os.urandom(8193)) == "too_large"
            assert chunked(os.urandom(9000)) == "too_large"
            assert chunked(os.urandom(9000), "/messages") == "too_large"
            assert r.post(os.urandom(8193), "/messages") == "too_large"
            # more messages in one POST /messages than the coordinator takes at once
            assert r.post(bytes(4) * 1001, "/messages") == "malformed"
            assert r.rejected("too_large", "update") == 4
            assert r.rejected("malformed", "update") == 1
            # below the limit, without Content-Length too: an honest update goes in
            u = r.updaters[0]
            assert chunked(r.seal(signed(r.update_message(u), u.keys))) == "accepted"
            r.done.add(u.keys.public_key)
        r.run(on_update=on_update)


# -- the gateway -------------------------------------------------------------------------------

@pytest.fixture
def broker(mosquitto_url) -> tuple[str, int]:
    return broker_address(mosquitto_url)


@pytest.fixture
def prefix() -> str:
    return f"adv-{uuid.uuid4().hex[:8]}"


def test_malformed_mqtt_uplinks_get_their_verdicts_and_leave_the_round_alone(broker, prefix, tmp_path):
    with coordinator() as c, RunningGateway(gateway_settings(env=gateway_env(
            broker, c.url, tmp_path / "q.db", prefix, **{"queue.max_message_bytes": 4096}))) as gw:
        r = Round(c)
        device = DeviceClient(broker, prefix, r.updaters[0].keys.public_key)

        def on_update(r):
            u = r.updaters[0]
            r.honest(u)
            _, sealed = r.captured["update"][-1]
            flipped = bytearray(sealed)
            flipped[len(flipped) // 2] ^= 0x10
            uplinks = {  # payload -> the reason its ack must carry
                b"": "malformed",
                b"\x00": "undecryptable",
                os.urandom(47): "undecryptable",         # shorter than a sealed box
                os.urandom(300): "undecryptable",
                os.urandom(4097): "too_large",           # more than queue.max_message_bytes
                bytes(flipped): "undecryptable",
                sealed[:-1]: "undecryptable",
                sealed + b"\x00": "undecryptable",
                sealed: "duplicate",                     # accepted over HTTP already
            }
            for payload, reason in uplinks.items():
                msg = device.publish(payload)
                ack = device.ack(msg, 20)
                assert ack is not None and (ack["accepted"], ack["reason"]) == (False, reason), (len(payload), ack)
            # topics that name no device: no ack, counted; a deeper topic is not even delivered
            pk_hex = u.keys.public_key.hex()
            bad = [f"{prefix}/dev/{pk_hex.upper()}/msg", f"{prefix}/dev/{pk_hex[:-1]}/msg",
                   f"{prefix}/dev//msg", f"{prefix}/dev/{'é' * 64}/msg", f"{prefix}/dev/{pk_hex}/msg/x",
                   f"{prefix}/dev/{'ab' * 32}/ack"]
            for topic in bad:
                device.publish(os.urandom(200), topic=topic)
            wait_for(lambda: gw.metric("pet_gateway_uplinks_dropped_total", reason="bad_topic") == 4,
                     what="the bad topics to be counted")
            assert gw.metric("pet_gateway_uplinks_dropped_total", reason="empty") == 1
            assert gw.metric("pet_gateway_uplinks_dropped_total", reason="too_large") == 1
            assert gw.metric("pet_gateway_uplinks_rejected_total", reason="undecryptable") == 6
            assert gw.metric("pet_gateway_uplinks_rejected_total", reason="duplicate") == 1
            assert len(device.acks) == len(uplinks)  # one ack each, none for the bad topics
            assert r.rejected("undecryptable", "update") == 6 and r.rejected("duplicate", "update") == 1
            wait_for(lambda: gw.metric("pet_gateway_queue_messages") == 0, what="an empty queue")
        try:
            r.run(on_update=on_update)
        finally:
            device.close()


def test_a_gateway_without_the_token_keeps_its_uplinks_until_it_has_it(broker, prefix, tmp_path):
    with coordinator(**{"api.token": "s3cret"}) as c:
        r = Round(c)
        queue = tmp_path / "q.db"
        s = r.summers[0]
        sealed = r.seal(signed(r.sum_message(s), s.keys))
        device = DeviceClient(broker, prefix, s.keys.public_key)
        try:
            with RunningGateway(gateway_settings(env=gateway_env(broker, c.url, queue, prefix))) as gw:
                wait_for(lambda: device.topic("round/params") == r.params.to_bytes(), what="the round parameters")
                msg = device.publish(sealed)
                wait_for(lambda: gw.metric("pet_gateway_coordinator_errors_total", route="/message") >= 2,
                         what="the coordinator to refuse the gateway")
                assert gw.metric("pet_gateway_queue_messages") == 1  # kept, not dropped
                assert device.acks == []                          # the device is not blamed
                assert r.rejected("unauthorized", "sum") >= 2
                assert c.status()["sum_participants"] == 0
            with RunningGateway(gateway_settings(env=gateway_env(broker, c.url, queue, prefix,
                                                                 **{"coordinator.token": "s3cret"}))) as gw:
                ack = device.ack(msg, 20)
                assert ack is not None and ack["accepted"] is True
                wait_for(lambda: gw.metric("pet_gateway_queue_messages") == 0, what="an empty queue")
            assert c.status()["sum_participants"] == 1
            assert c.coordinator.sum_dict == {s.keys.public_key: s.ephm.public_key}
        finally:
            device.close()


def test_round_state_overwritten_on_the_broker_is_put_back(broker, prefix, tmp_path):
    """A broker without the ACL of pet-provision lets any client write the retained round
    topics (tests/test_provision.py shows that the ACL refuses it). The gateway puts back
    what the coordinator says, so that devices do not seal to a key the writer chose."""
    with coordinator() as c, RunningGateway(gateway_settings(env=gateway_env(
            broker, c.url, tmp_path / "q.db", prefix))) as gw:
        Round(c).run()  # a global model, and round 2 waits for its sum participants
        params = c.coordinator.params_bytes()
        model = c.call(c.coordinator.model_bytes("f32"))
        forged_params = bytearray(params)
        forged_params[8:40] = EncryptKeyPair.generate().public_key
        watcher = DeviceClient(broker, prefix, bytes(32), watch=f"{prefix}/round/#")
        rogue = DeviceClient(broker, prefix, bytes(32))
        try:
            wait_for(lambda: watcher.topic("round/params") == params and watcher.topic("model/global") == model,
                     what="the round parameters and the global model")
            for topic, kind, forged, want in (
                    ("round/params", "params", bytes(forged_params), params),
                    ("round/params", "params", b"", params),                     # cleared
                    ("model/global", "model", model[:12] + bytes(len(model) - 12), model),
                    ("round/sums", "clear", b"forged", None)):                   # no sums in Sum
                before = gw.metric("pet_gateway_downlink_publishes_total", topic=kind)
                rogue.client.publish(f"{prefix}/{topic}", forged, qos=1, retain=True).wait_for_publish(5)
                wait_for(lambda: gw.metric("pet_gateway_downlink_publishes_total", topic=kind) > before
                         and watcher.topic(topic) == want, what=f"the gateway to put {topic} right")
        finally:
            watcher.close()
            rogue.close()

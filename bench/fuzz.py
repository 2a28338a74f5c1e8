"""Fuzzing: mutated valid messages and random bytes against the decoders and the
coordinator's whole pipeline (unseal, decode, signature, sortition, reassembly, phase
handlers, aggregation), in-process and over HTTP.

One real round on a coordinator with a SQLite file store, served on loopback: honest
participants with known models send their messages, and in each phase, before the last
honest message of that phase, the fuzz cases go in. A case starts from a valid message
or chunk of the round (of any phase) and is changed by bit flips, byte edits,
truncation, extension, insertion, deletion, splices or overwrites from other messages,
or edits of a length, count, id, tag, flag or config field, at one of four layers:

  sealed    the sealed bytes themselves
  plain     the signed plaintext, then sealed to the round key (half the time changed in
            place only; else half the time with the header's length field set to the new
            length, so that the payload decoders run)
  resigned  the plaintext, then signed again by its sender and sealed: past the
            signature check into sortition, reassembly and the phase handlers
  raw       random bytes: as the body, sealed, or as a payload signed by a random key
  chunks    all chunks of a message under a new message id, one of them mutated, in
            order, shuffled, with one twice or one missing; signed again and sealed

Every case must get a verdict of pet.verdict within --time-limit seconds; an exception
is a crash, a late verdict a hang. No case may change the round (sum dict, aggregate,
accepted count): senders of re-signed cases have sent their honest message of the phase
already, and the last honest participant of each phase is never mutated. At the end the
aggregate and the global model must be exactly those of the honest participants.

The decoder portion feeds mutated messages, payloads, REST bodies (round parameters,
sum dict, seed dict, model), chunks (into a bounded Reassembler), POST /messages
framing, verdict JSON and MQTT topics to their parsers directly: only the parser's own
error may come out (DecodeError; MultipartError for reassembly; ValueError for the
framing; nothing for verdicts and topics), each case under a SIGALRM time limit.

Usage: python bench/fuzz.py [--cases 100000] [--seed 1] [--decoder-share 0.3]
       [--http-share 0.05] [--time-limit 5] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import resource
import signal
import sys
import tempfile
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import aiohttp
import numpy as np

# the repository first: this file's own directory would make "coordinator" mean this file
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from coordinator.server import split_frames  # noqa: E402
from coordinator.settings import load_settings  # noqa: E402
from gateway.api import _verdicts  # noqa: E402
from gateway.mqtt import Topics  # noqa: E402
from pet import crypto  # noqa: E402
from pet.crypto import EncryptKeyPair, SigningKeyPair, sha256  # noqa: E402
from pet.errors import DecodeError  # noqa: E402
from pet.mask import Aggregation, MaskObject, MaskUnit, MaskVect, aggregate_masks, mask_model, unmask  # noqa: E402
from pet.mask.config import MaskConfig  # noqa: E402
from pet.multipart import MultipartError, Reassembler, encode_messages  # noqa: E402
from pet.sortition import Task, select_task  # noqa: E402
from pet.verdict import REASONS, Verdict  # noqa: E402
from pet.wire import (HEADER_LENGTH, Chunk, LocalSeedDict, Message, Model, RoundParameters, Sum,  # noqa: E402
                      Sum2, SumDict, Tag, Update, UpdateSeedDict)
from tests.coordinator_harness import RunningCoordinator  # noqa: E402

SUMS, UPDATES = 3, 4
LENGTH = 40
KEY_LABEL = b"fuzz"  # fixed round keys: the same round, so the same roles, on every run
# Incomplete multipart messages expire after MAX_AGE seconds. Fuzz cases fill the reassembly
# buffer (anyone may send chunks: the sender's task is checked once a message is complete), so
# the honest chunked messages of a phase wait until the last phase's leftovers have expired.
MAX_AGE = 2.0
LAYERS = ("sealed", "plain", "resigned", "raw")  # and "chunks": CaseMaker.group
LAYER_WEIGHTS = (10, 25, 50, 15)
INTERESTING = (0x00, 0x01, 0x7F, 0x80, 0xFF)
IN_PLACE = ("flip", "byte", "field", "overwrite")
RESIZING = ("truncate", "extend", "insert", "delete", "splice")


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# -- mutations --------------------------------------------------------------------------------

def message_fields(plain: bytes) -> list[tuple[int, int]]:
    """(offset, size) of the big-endian length, count, id, tag, flag and config fields of a
    plaintext message: the header's, and its payload's."""
    fields = [(128, 4), (132, 1), (133, 1)]
    msg = Message.decode(plain)
    at = HEADER_LENGTH
    if msg.is_multipart:
        return fields + [(at, 2), (at + 2, 2), (at + 4, 1)]
    p = msg.payload
    if isinstance(p, Update):
        vect = at + 128
        unit = vect + p.masked_model.vect.byte_len()
        return fields + [(vect, 4), (vect + 4, 4), (unit, 4), (len(plain) - p.local_seed_dict.byte_len(), 4)]
    if isinstance(p, Sum2):
        vect = at + 64
        return fields + [(vect, 4), (vect + 4, 4), (vect + p.model_mask.vect.byte_len(), 4)]
    return fields


class Mutator:
    """Changes bytes; every choice comes from `rng` (a random.Random, or hypothesis' randoms)."""

    def __init__(self, rng: random.Random, donors: list[bytes]):
        self.rng = rng
        self.donors = donors  # other valid bytes to splice in

    def mutate(self, data: bytes, fields: list[tuple[int, int]] = (), endian: str = "big",
               in_place: bool = False) -> bytes:
        """Some of: bit flips, byte edits, field edits, overwrites from a donor (these keep the
        length; only they when in_place), truncation, extension, insertion, deletion, splices."""
        rng, buf = self.rng, bytearray(data)
        for _ in range(rng.choice((1, 1, 1, 2, 3))):
            op = rng.choice(IN_PLACE if in_place else IN_PLACE + RESIZING)
            n = len(buf)
            if op == "flip" and n:
                for _ in range(rng.randint(1, 8)):
                    buf[rng.randrange(n)] ^= 1 << rng.randrange(8)
            elif op == "byte" and n:
                for _ in range(rng.randint(1, 4)):
                    buf[rng.randrange(n)] = rng.choice(INTERESTING) if rng.random() < 0.5 else rng.randrange(256)
            elif op == "truncate":
                del buf[rng.randint(0, n):]
            elif op == "extend":
                if n and rng.random() < 0.5:
                    i = rng.randrange(n)
                    buf += buf[i:i + rng.randint(1, 256)]
                else:
                    buf += rng.randbytes(rng.randint(1, 64))
            elif op == "insert":
                i = rng.randint(0, n)
                buf[i:i] = rng.randbytes(rng.randint(1, 16))
            elif op == "delete" and n:
                i = rng.randrange(n)
                del buf[i:i + rng.randint(1, 64)]
            elif op == "overwrite" and self.donors and n:
                donor = rng.choice(self.donors)
                i, j = rng.randrange(n), rng.randint(0, len(donor))
                piece = donor[j:j + min(rng.randint(1, 128), n - i)]
                buf[i:i + len(piece)] = piece
            elif op == "splice" and self.donors:
                donor = rng.choice(self.donors)
                i, j = rng.randint(0, n), rng.randint(0, len(donor))
                k = rng.randint(1, 128)
                buf[i:i + k] = donor[j:j + k]
            elif op == "field" and fields:
                offset, size = rng.choice(fields)
                if offset + size <= n:
                    old = int.from_bytes(buf[offset:offset + size], endian)
                    top = (1 << 8 * size) - 1
                    value = rng.choice((0, 1, top, old + 1, old - 1, old + rng.randint(-1000, 1000),
                                        rng.getrandbits(8 * size), n, n - offset, old * 2))
                    buf[offset:offset + size] = (value & top).to_bytes(size, endian)
        return bytes(buf)


def resign(plain: bytes, keys: SigningKeyPair) -> bytes:
    """Sign bytes [64:] into [0:64], whatever the header says."""
    return keys.sign(plain[64:]) + plain[64:] if len(plain) >= 64 else plain


@dataclass
class Seed:
    """A valid message of the round: plaintext, sealed, sender, mutable fields."""

    plain: bytes
    sealed: bytes
    keys: SigningKeyPair
    fields: list[tuple[int, int]]


class CaseMaker:
    def __init__(self, rng: random.Random, seeds: list[Seed], round_pk: bytes):
        self.rng, self.seeds, self.round_pk = rng, seeds, round_pk
        self.mutator = Mutator(rng, [s.plain for s in seeds])
        # the chunks of each chunked message, in order (a message's chunk 0 starts a group)
        self.phase_tag: int | None = None  # sequences of chunks go to this phase's messages
        self.chunk_groups: list[list[Seed]] = []
        for s in seeds:
            if s.plain[133] & 1:
                if s.plain[136:138] == bytes(2):
                    self.chunk_groups.append([])
                self.chunk_groups[-1].append(s)

    def restructure(self, plain: bytes) -> bytes:
        """The message with one part changed and encoded again, well-formed: a seed dict entry
        dropped, added or given another key; a mask one number shorter or longer, or of
        another config."""
        msg, rng = Message.decode(plain), self.rng
        p = msg.payload
        if isinstance(p, Update):
            entries = list(p.local_seed_dict.items())
            op = rng.randrange(4)
            if op == 0:
                entries.pop(rng.randrange(len(entries)))
            elif op == 1:
                entries.insert(rng.randint(0, len(entries)), (rng.randbytes(32), rng.randbytes(80)))
            elif op == 2:
                i = rng.randrange(len(entries))
                entries[i] = (rng.randbytes(32), entries[i][1])
            else:
                p.masked_model = self.reshaped(p.masked_model)
            p.local_seed_dict = LocalSeedDict(entries)
        elif isinstance(p, Sum2):
            p.model_mask = self.reshaped(p.model_mask)
        return msg.encode()

    def reshaped(self, obj: MaskObject) -> MaskObject:
        vect, unit, rng = obj.vect, obj.unit, self.rng
        op = rng.randrange(4)
        if op == 0:
            return MaskObject(MaskVect(vect.config, vect.data[:-1]), unit)
        if op == 1:
            return MaskObject(MaskVect(vect.config, np.append(vect.data, np.uint64(7))), unit)
        other = MaskConfig.mcu(3, vect.config.model_type - 1) if vect.config.is_mcu else vect.config
        if op == 2:
            return MaskObject(MaskVect(other, vect.data), unit)
        return MaskObject(vect, MaskUnit(other, unit.data))

    def plain(self, seed: Seed) -> bytes:
        """A mutated plaintext: half the time of the same length, so that its structure holds
        and the checks after decoding are reached; sometimes changed in its structure first."""
        start = seed.plain
        if self.rng.random() < 0.15:
            start = self.restructure(start)
            if self.rng.random() < 0.5:
                return start
        return self.fix_length(self.mutator.mutate(start, seed.fields, in_place=self.rng.random() < 0.5))

    def fix_length(self, buf: bytes) -> bytes:
        """Half the time, the header's length field set to the length: into the payload decoders."""
        if len(buf) >= 132 and self.rng.random() < 0.5:
            buf = buf[:128] + len(buf).to_bytes(4, "big") + buf[132:]
        return buf

    def group(self) -> list[tuple[str, bytes]]:
        """One case, or now and then a sequence of chunks: every chunk of one message (of the
        current phase, if there is one) under a
        new message id, one of them mutated, in order or shuffled, sometimes with one chunk
        twice or one left out, each signed again by the sender. The chunks of a sequence are
        judged one after another."""
        rng = self.rng
        if not self.chunk_groups or rng.random() >= 0.15:
            return [self.case()]
        current = [g for g in self.chunk_groups if g[0].plain[132] == self.phase_tag]
        chunks = rng.choice(current or self.chunk_groups)
        message_id = rng.getrandbits(16).to_bytes(2, "big")
        plains = [c.plain[:138] + message_id + c.plain[140:] for c in chunks]
        i = rng.randrange(len(plains))
        plains[i] = self.fix_length(self.mutator.mutate(plains[i], chunks[i].fields, in_place=rng.random() < 0.7))
        shape = rng.random()
        if shape < 0.2:
            rng.shuffle(plains)
        elif shape < 0.3:
            plains.insert(rng.randint(0, len(plains)), rng.choice(plains))
        elif shape < 0.4:
            plains.pop(rng.randrange(len(plains)))
        return [("chunks", crypto.seal(resign(p, chunks[0].keys), self.round_pk)) for p in plains]

    def case(self) -> tuple[str, bytes]:
        """(layer, body) of one case."""
        rng = self.rng
        layer = rng.choices(LAYERS, LAYER_WEIGHTS)[0]
        seed = rng.choice(self.seeds)
        if layer == "sealed":
            return layer, self.mutator.mutate(seed.sealed)
        if layer == "plain":
            return layer, crypto.seal(self.plain(seed), self.round_pk)
        if layer == "resigned":
            return layer, crypto.seal(resign(self.plain(seed), seed.keys), self.round_pk)
        kind = rng.randrange(3)
        junk = rng.randbytes(rng.choice((0, 1, 47, 48, 49, 136, 184, 185, rng.randint(0, 2000))))
        if kind == 0:
            return layer, junk
        if kind == 1:
            return layer, crypto.seal(junk, self.round_pk)
        header = seed.plain[:HEADER_LENGTH]
        plain = header[:64] + rng.randbytes(32) + header[96:128] + (HEADER_LENGTH + len(junk)).to_bytes(4, "big") \
            + bytes([rng.randint(0, 4), rng.randint(0, 1), 0, 0]) + junk
        keys = SigningKeyPair.from_seed(rng.randbytes(32))
        plain = plain[:64] + keys.public_key + plain[96:]
        return layer, crypto.seal(resign(plain, keys), self.round_pk)


# -- one round under fuzzing -----------------------------------------------------------------

def fuzz_settings(store_path: str, length: int = LENGTH, **extra: str):
    env = {
        "PET__PET__SUM__PROB": "0.4", "PET__PET__UPDATE__PROB": "0.5",
        "PET__PET__SUM__COUNT__MIN": str(SUMS), "PET__PET__SUM2__COUNT__MIN": str(SUMS),
        "PET__PET__UPDATE__COUNT__MIN": str(UPDATES),
        "PET__PET__SUM__TIME__MIN": "0", "PET__PET__UPDATE__TIME__MIN": "0", "PET__PET__SUM2__TIME__MIN": "0",
        "PET__PET__SUM__TIME__MAX": "7200", "PET__PET__UPDATE__TIME__MAX": "7200",
        "PET__PET__SUM2__TIME__MAX": "7200",
        "PET__MODEL__LENGTH": str(length), "PET__STORE__PATH": store_path,
        # small reassembly bounds, so that chunk floods reach them
        "PET__MULTIPART__MAX_PENDING_MESSAGES": "150", "PET__MULTIPART__MAX_PENDING_BYTES": str(1 << 20),
        "PET__MULTIPART__MAX_MESSAGE_BYTES": str(64 << 10), "PET__MULTIPART__MAX_AGE": str(MAX_AGE),
    } | extra
    return load_settings(None, env=env)


@dataclass
class Report:
    cases: Counter = field(default_factory=Counter)        # target or layer -> cases
    verdicts: Counter = field(default_factory=Counter)     # reason -> count
    by_layer: Counter = field(default_factory=Counter)     # (layer, reason) -> count
    crashes: list = field(default_factory=list)            # (where, error, input hex)
    hangs: list = field(default_factory=list)
    changed: list = field(default_factory=list)            # cases that changed the round
    http_errors: list = field(default_factory=list)        # 5xx or answers that are no verdict
    seconds: Counter = field(default_factory=Counter)
    peak_pending_bytes: int = 0
    reassembly: dict = field(default_factory=dict)         # the main round's Reassembler counters
    checks: dict = field(default_factory=dict)             # final verification -> True/False

    def crash(self, where: str, error: BaseException, data: bytes) -> None:
        if len(self.crashes) < 1000:
            text = "".join(traceback.format_exception_only(type(error), error)).strip()
            self.crashes.append((where, text, data[:512].hex()))

    @property
    def total(self) -> int:
        return sum(self.cases.values())

    @property
    def ok(self) -> bool:
        return not (self.crashes or self.hangs or self.changed or self.http_errors) and all(self.checks.values())


class FuzzRound:
    """A coordinator's round with honest participants, driven phase by phase."""

    def __init__(self, store_path: str, length: int = LENGTH, fresh_updaters: int = 0, **settings: str):
        """fresh_updaters: that many more update participants, who send nothing honest."""
        self.running = RunningCoordinator(fuzz_settings(store_path, length, **settings), key_label=KEY_LABEL)
        self.c = self.running.coordinator
        self.params = self.c.params
        self.pk, self.config, self.length = self.params.pk, self.params.mask_config.vect, length
        summers, updaters, i = [], [], 0
        while len(summers) < SUMS or len(updaters) < UPDATES + fresh_updaters:
            keys = SigningKeyPair.from_seed(sha256(b"fuzz participant" + i.to_bytes(8, "little")))
            sel = select_task(keys, self.params.seed, self.params.sum, self.params.update)
            if sel.task is Task.SUM and len(summers) < SUMS:
                summers.append((keys, sel, EncryptKeyPair.from_seed(sha256(b"ephemeral" + keys.public_key))))
            elif sel.task is Task.UPDATE and len(updaters) < UPDATES + fresh_updaters:
                updaters.append((keys, sel))
            i += 1
        self.summers = summers
        updaters, self.fresh_updaters = updaters[:UPDATES], updaters[UPDATES:]
        rs = np.random.default_rng(7)
        self.models = [rs.uniform(-1, 1, length).astype(np.float32) for _ in updaters]
        masked = [mask_model(w, 1.0, self.config, seed=rs.bytes(32)) for w in self.models]
        self.mask_seeds = [seed for seed, _ in masked]
        self.masked = [m for _, m in masked]
        self.global_mask = aggregate_masks(self.mask_seeds, length, self.config)
        # the honest messages, in the order they are sent; the last of each phase is the gate
        self.sums = [(k, Sum(sel.sum_signature, e.public_key)) for k, sel, e in summers]
        self.updates = []
        for (k, sel), seed, m in zip(updaters, self.mask_seeds, self.masked):
            seeds = LocalSeedDict((sk.public_key, crypto.seal(seed, e.public_key)) for sk, _, e in summers)
            self.updates.append((k, Update(sel.sum_signature, sel.update_signature, m, seeds)))
        self.sum2s = [(k, Sum2(sel.sum_signature, self.global_mask)) for k, sel, _ in summers]
        # payload size limits of the honest messages sent in chunks (0: whole), by phase
        self.chunking = {"sum": (40, 0, 0), "update": (300, 120, 0, 0), "sum2": (300, 120, 0)}

    def stop(self) -> None:
        self.running.stop()

    def call(self, coro, timeout: float = 60):
        return self.running.call(coro, timeout)

    # -- messages --------------------------------------------------------------------------

    def sealed_parts(self, keys: SigningKeyPair, payload, limit: int = 0) -> list[tuple[bytes, bytes]]:
        """(plaintext, sealed) of the message, or of its chunks for a payload limit."""
        out = []
        message_id = len(payload.to_bytes()) & 0xFFFF
        for msg in encode_messages(keys.public_key, self.pk, payload, limit, message_id=message_id):
            plain = crypto.sign_message(msg.encode(), keys)
            out.append((plain, crypto.seal(plain, self.pk)))
        return out

    def seeds(self) -> list[Seed]:
        """Every honest message but the gates', whole and in chunks: the fuzz corpus."""
        out = []
        for messages in (self.sums, self.updates, self.sum2s):
            for keys, payload in messages[:-1]:
                for limit in (0, 300, 120, 40):
                    out += [Seed(p, s, keys, message_fields(p)) for p, s in self.sealed_parts(keys, payload, limit)]
        return out

    def rest_bodies(self) -> dict[str, list[bytes]]:
        """Valid bodies of the REST decoders, from this round."""
        sum_dict = SumDict((k.public_key, e.public_key) for k, _, e in self.summers)
        column = UpdateSeedDict((k.public_key, p.local_seed_dict[self.summers[0][0].public_key])
                                for k, p in self.updates)
        model = Model(Fraction(float(w)) for w in self.models[0][:8])
        return {"round_parameters": [self.params.to_bytes()], "sum_dict": [sum_dict.to_bytes()],
                "update_seed_dict": [column.to_bytes()], "model": [model.to_bytes()]}

    # -- the round -------------------------------------------------------------------------

    def phase_messages(self, phase: str) -> list:
        return {"sum": self.sums, "update": self.updates, "sum2": self.sum2s}[phase]

    def send_honest(self, phase: str, gate: bool = False) -> None:
        """The honest messages of the phase but the last (or the last alone)."""
        messages = self.phase_messages(phase)
        for i, (keys, payload) in enumerate(messages):
            if (i == len(messages) - 1) != gate:
                continue
            if phase == "sum2":
                self.check_column(keys)
            limit = self.chunking[phase][i]
            for _, sealed in self.sealed_parts(keys, payload, limit):
                verdict = self.call(self.c.handle(sealed))
                if not verdict.accepted:
                    raise RuntimeError(f"an honest {phase} message was rejected: {verdict.reason}: {verdict.detail}")

    def check_column(self, keys: SigningKeyPair) -> None:
        """The seed column the coordinator serves opens to the mask seeds the updaters sealed."""
        column = UpdateSeedDict.from_bytes(self.call(self.c.seeds_bytes(keys.public_key)))
        ephm = next(e for k, _, e in self.summers if k.public_key == keys.public_key)
        opened = sorted(crypto.seal_open(box, ephm.public_key, ephm.secret_key) for box in column.values())
        if opened != sorted(self.mask_seeds):
            raise RuntimeError("a seed column does not hold the updaters' mask seeds")

    def wait_phase(self, tag: Tag | None, round_id: int = 1, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not (self.c.view.round_id == round_id and self.c.view.phase is tag):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the coordinator did not reach {tag} of round {round_id} ({self.c.phase})")
            time.sleep(0.005)

    def snapshot(self) -> tuple:
        """What no fuzz case may change."""
        agg = self.c.aggregation
        return (self.c.view.round_id, self.c.phase, self.c.accepted, len(self.c.sum_dict), id(agg),
                agg.nb_models if agg else None)

    def honest_aggregate(self, count: int = UPDATES) -> MaskObject:
        agg = Aggregation(self.config, self.config, self.length)
        for m in self.masked[:count]:
            agg.aggregate(m)
        return agg.object

    def verify(self, report: Report) -> None:
        """After the round: the global model is exactly the honest one."""
        self.wait_phase(Tag.SUM, round_id=2)
        latest = self.c.latest_model
        expected = unmask(self.honest_aggregate(), self.global_mask, len(self.masked))
        report.checks["round 1 completed"] = latest is not None and latest.round_id == 1
        report.checks["global model == honest one (exact)"] = latest is not None and np.array_equal(
            np.frombuffer(latest.weights, "<f8"), expected)
        report.checks["global model ~ average of the honest models"] = bool(np.allclose(
            expected, np.mean(self.models, axis=0), atol=1e-5))
        report.checks["no round failed"] = not self.c.metrics.registry.get_sample_value(
            "pet_rounds_total", {"outcome": "failed"})


# -- the pipeline portions -------------------------------------------------------------------

async def _judge(c, body: bytes, limit: float):
    return await asyncio.wait_for(c.handle(body), limit)


def check_verdict(verdict) -> str | None:
    """The problem with a verdict, if any."""
    if not isinstance(verdict, Verdict):
        return f"not a verdict: {verdict!r}"
    if not verdict.accepted and verdict.reason not in REASONS:
        return f"unknown reason {verdict.reason!r}"
    return None


def fuzz_in_process(fr: FuzzRound, maker: CaseMaker, count: int, report: Report, limit: float,
                    batch: int = 16, label: str = "") -> None:
    done, last = 0, time.monotonic()
    started = time.perf_counter()
    while done < count:
        groups, n = [], 0
        while n < min(batch, count - done):
            groups.append(maker.group()[:count - done - n])
            n += len(groups[-1])
        cases = [case for g in groups for case in g]
        before = fr.snapshot()

        async def run_group(group):
            out = []
            for _, body in group:
                try:
                    out.append(await _judge(fr.c, body, limit))
                except Exception as e:  # noqa: BLE001  (reported below)
                    out.append(e)
            return out

        async def run_batch():
            return [v for g in await asyncio.gather(*(run_group(g) for g in groups)) for v in g]
        results = fr.call(run_batch(), timeout=limit * len(cases) + 60)
        for (layer, body), result in zip(cases, results):
            report.cases[f"pipeline/{layer}"] += 1
            if isinstance(result, TimeoutError):
                report.hangs.append((f"pipeline/{layer}", body[:512].hex()))
                continue
            if isinstance(result, BaseException):
                report.crash(f"pipeline/{layer}", result, body)
                continue
            problem = check_verdict(result)
            if problem:
                report.crash(f"pipeline/{layer}", RuntimeError(problem), body)
                continue
            reason = result.reason or "accepted (chunk pending)"
            report.verdicts[reason] += 1
            report.by_layer[(layer, reason)] += 1
        if fr.snapshot() != before:
            report.changed.append(("pipeline", [body[:512].hex() for _, body in cases]))
        report.peak_pending_bytes = max(report.peak_pending_bytes, fr.c.reassembler.pending_bytes)
        done += len(cases)
        if time.monotonic() - last > 5:
            last = time.monotonic()
            rate = done / (time.perf_counter() - started)
            progress(f"  {label}: {done}/{count} cases, {rate:.0f}/s, {len(report.crashes)} crashes, "
                     f"{len(report.hangs)} hangs")
    report.seconds["pipeline"] += time.perf_counter() - started


def fuzz_http(fr: FuzzRound, maker: CaseMaker, count: int, report: Report, limit: float) -> None:
    """POST /message with a case, or POST /messages with several (and sometimes broken framing)."""
    url = fr.running.url
    started = time.perf_counter()

    async def one(session, path: str, body: bytes, frames: int):
        try:
            async with session.post(url + path, data=body, timeout=aiohttp.ClientTimeout(total=limit + 30)) as r:
                return path, r.status, await r.read(), frames
        except Exception as e:  # noqa: BLE001  (a dropped connection is a finding too)
            return path, None, repr(e).encode(), frames

    async def run_all():
        async with aiohttp.ClientSession() as session:
            done = 0
            while done < count:
                requests = []
                while len(requests) < 8 and done < count:
                    if maker.rng.random() < 0.7:
                        requests.append(("/message", maker.case()[1], 1))
                        done += 1
                    else:
                        k = min(maker.rng.randint(1, 6), count - done)
                        body = b"".join(len(b).to_bytes(4, "big") + b for _, b in (maker.case() for _ in range(k)))
                        if maker.rng.random() < 0.3:
                            body = maker.mutator.mutate(body, [(0, 4)])
                        requests.append(("/messages", body, k))
                        done += k
                before = fr.snapshot()
                answers = await asyncio.gather(*(one(session, *req) for req in requests))
                if fr.snapshot() != before:
                    report.changed.append(("http", [b[:512].hex() for _, b, _ in requests]))
                for (path, body, _), (_, status, answer, frames) in zip(requests, answers):
                    report.cases[f"http{path}"] += frames
                    for problem in http_problems(path, status, answer, report):
                        report.http_errors.append((path, problem, body[:512].hex()))
    fr.call(run_all(), timeout=3600)
    report.seconds["http"] += time.perf_counter() - started


def http_problems(path: str, status, answer: bytes, report: Report) -> list[str]:
    if status is None or status >= 500:
        return [f"HTTP {status}: {answer[:200]!r}"]
    if status == 200 and path == "/message":
        report.verdicts["accepted (chunk pending)"] += 1
        return []
    try:
        body = json.loads(answer)
    except ValueError:
        return [f"HTTP {status}: not JSON: {answer[:200]!r}"]
    verdicts = body if status == 200 and path == "/messages" else [body]
    problems = []
    for v in verdicts:
        verdict = Verdict(v.get("accepted"), v.get("reason", ""), v.get("detail", "")) if isinstance(v, dict) else v
        problem = check_verdict(verdict)
        if problem:
            problems.append(problem)
        else:
            report.verdicts[verdict.reason or "accepted (chunk pending)"] += 1
            if not verdict.accepted and status != 200 and status != REASONS[verdict.reason][0]:
                problems.append(f"HTTP {status} for {verdict.reason}")
    return problems


def fuzz_fresh_updates(store_path: str, rng: random.Random, count: int, report: Report, limit: float,
                       batch: int = 16) -> None:
    """Update messages of update participants that sent none yet, mutated and signed again,
    into a second coordinator's Update phase: past the duplicate check into the seed dict and
    mask checks. A case that passes every check is accepted, so the check here is that the
    aggregate always is exactly the honest updates plus the masked models of the accepted
    cases, as decoded from what was sent (a mask config for 2^16 models: room for them all).
    The cases are whole messages (the multipart flag cleared), so that what was accepted is
    known; chunks are fuzzed in the main round."""
    keys_needed = count // 2 + 10
    fr = FuzzRound(store_path, fresh_updaters=keys_needed, PET__MASK__CONFIG="W32/F32/b2/m16",
                   PET__PET__UPDATE__COUNT__MIN="60000", PET__PET__UPDATE__COUNT__MAX="60000")
    try:
        fr.wait_phase(Tag.SUM)
        fr.send_honest("sum")
        fr.send_honest("sum", gate=True)
        fr.wait_phase(Tag.UPDATE)
        fr.send_honest("update")
        template_keys, template = fr.updates[0]
        seeds = []
        for keys, sel in fr.fresh_updaters:
            payload = Update(sel.sum_signature, sel.update_signature, template.masked_model, template.local_seed_dict)
            (plain, sealed), = fr.sealed_parts(keys, payload)
            seeds.append(Seed(plain, sealed, keys, message_fields(plain)))
        maker = CaseMaker(rng, seeds, fr.pk)
        expected = Aggregation.restore(fr.honest_aggregate(UPDATES - 1), UPDATES - 1)
        started, done = time.perf_counter(), 0
        while done < count:
            cases = []
            for _ in range(min(batch, count - done)):
                seed = rng.choice(seeds)
                plain = bytearray(maker.plain(seed))
                if len(plain) > 133:
                    plain[133] &= 0xFE  # whole messages only: chunks are the main round's
                plain = resign(bytes(plain), seed.keys)
                cases.append((plain, crypto.seal(plain, fr.pk)))

            async def run_batch():
                return await asyncio.gather(*(_judge(fr.c, body, limit) for _, body in cases),
                                            return_exceptions=True)
            results = fr.call(run_batch(), timeout=limit * len(cases) + 60)
            for (plain, body), result in zip(cases, results):
                report.cases["pipeline/fresh updates"] += 1
                if isinstance(result, TimeoutError):
                    report.hangs.append(("pipeline/fresh updates", body[:512].hex()))
                    continue
                if isinstance(result, BaseException) or check_verdict(result):
                    report.crash("pipeline/fresh updates", result if isinstance(result, BaseException)
                                 else RuntimeError(check_verdict(result)), body)
                    continue
                report.verdicts[result.reason or "accepted"] += 1
                report.by_layer[("fresh updates", result.reason or "accepted")] += 1
                if result.accepted:
                    try:
                        expected.aggregate(Message.decode(plain).payload.masked_model)
                    except Exception as e:  # noqa: BLE001  (accepted, yet not a valid update)
                        report.changed.append(("fresh updates", f"accepted an invalid update: {e}", body[:512].hex()))
            if fr.c.aggregation.object != expected.object or fr.c.aggregation.nb_models != expected.nb_models:
                report.changed.append(("fresh updates", "the aggregate is not the sum of the accepted updates",
                                       [b[:512].hex() for _, b in cases]))
                expected = Aggregation.restore(fr.c.aggregation.object, fr.c.aggregation.nb_models)
            done += len(cases)
        report.checks["fresh updates: aggregate == honest + accepted ones (exact, after every batch)"] = \
            not any(c[0] == "fresh updates" for c in report.changed)
        report.seconds["pipeline"] += time.perf_counter() - started
    finally:
        fr.stop()


# -- the decoder portion -----------------------------------------------------------------------

class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang()


def decoder_targets(fr: FuzzRound, seeds: list[Seed]) -> dict:
    """name -> (parse function, errors it may raise, valid inputs, fields, byte order)."""
    plains = [s.plain for s in seeds]
    whole = [Message.decode(p) for p in plains]
    payloads = {t: [m.payload.to_bytes() for m in whole if not m.is_multipart and m.tag is t] for t in Tag}
    chunks = [m.payload.to_bytes() for m in whole if m.is_multipart]
    updates = [m.payload for m in whole if not m.is_multipart and m.tag is Tag.UPDATE]
    rest = fr.rest_bodies()
    reassembler = Reassembler(max_message_bytes=4096, max_chunks=8, max_age=60, max_pending_messages=50,
                              max_pending_bytes=64 << 10)

    def reassemble(buf):
        msg = Message.decode(buf)
        if msg.is_multipart:
            reassembler.add(msg)
    topics = Topics("pet")
    verdict_json = [json.dumps([{"accepted": True, "reason": "", "detail": ""},
                                {"accepted": False, "reason": "duplicate", "detail": "x"}]).encode()]
    frames = [b"".join(len(p).to_bytes(4, "big") + p for p in plains[:3])]
    pk_hex = fr.summers[0][0].public_key.hex()
    big = [(0, 8)]
    return {
        "Message.decode": (Message.decode, DecodeError, plains, [f for s in seeds for f in s.fields], "big"),
        "Sum.from_bytes": (Sum.from_bytes, DecodeError, payloads[Tag.SUM], [], "big"),
        "Update.from_bytes": (Update.from_bytes, DecodeError, payloads[Tag.UPDATE], [(128, 4), (132, 4)], "big"),
        "Sum2.from_bytes": (Sum2.from_bytes, DecodeError, payloads[Tag.SUM2], [(64, 4), (68, 4)], "big"),
        "Chunk.from_bytes": (Chunk.from_bytes, DecodeError, chunks, [(0, 2), (2, 2), (4, 1)], "big"),
        "LocalSeedDict.from_bytes": (LocalSeedDict.from_bytes, DecodeError,
                                     [u.local_seed_dict.to_bytes() for u in updates], [(0, 4)], "big"),
        "MaskObject.from_bytes": (MaskObject.from_bytes, DecodeError,
                                  [u.masked_model.to_bytes() for u in updates], [(0, 4), (4, 4)], "big"),
        "RoundParameters.from_bytes": (RoundParameters.from_bytes, DecodeError, rest["round_parameters"],
                                       [(0, 8), (56, 8), (96, 4), (100, 4), (104, 4), (112, 4), (128, 8)],
                                       "little"),
        "SumDict.from_bytes": (SumDict.from_bytes, DecodeError, rest["sum_dict"], big + [(8, 8), (48, 8)],
                               "little"),
        "UpdateSeedDict.from_bytes": (UpdateSeedDict.from_bytes, DecodeError, rest["update_seed_dict"],
                                      big + [(8, 8), (48, 8)], "little"),
        "Model.from_bytes": (Model.from_bytes, DecodeError, rest["model"], big + [(9, 8)], "little"),
        "Reassembler.add": (reassemble, (DecodeError, MultipartError), [s.plain for s in seeds
                                                                         if Message.decode(s.plain).is_multipart],
                            [(136, 2), (138, 2), (140, 1)], "big"),
        "split_frames (POST /messages)": (split_frames, ValueError, frames, [(0, 4)], "big"),
        "verdict JSON (gateway)": (lambda b: _verdicts(b, 2), (), verdict_json, [], "big"),
        "uplink topic (gateway)": (lambda b: topics.device_of(b.decode(errors="replace")), (),
                                   [f"pet/dev/{pk_hex}/msg".encode()], [], "big"),
    }


def fuzz_decoders(fr: FuzzRound, seeds: list[Seed], rng: random.Random, count: int, report: Report,
                  limit: float) -> None:
    targets = decoder_targets(fr, seeds)
    names = list(targets)
    mutator = Mutator(rng, [s.plain for s in seeds])
    started, last = time.perf_counter(), time.monotonic()
    previous = signal.signal(signal.SIGALRM, _alarm)
    try:
        for i in range(count):
            name = names[i % len(names)]
            parse, allowed, valid, fields, endian = targets[name]
            data = rng.randbytes(rng.randint(0, 600)) if rng.random() < 0.1 else \
                mutator.mutate(rng.choice(valid), fields, endian)
            report.cases[f"decoder/{name}"] += 1
            signal.setitimer(signal.ITIMER_REAL, limit)
            try:
                parse(data)
            except Hang:
                report.hangs.append((f"decoder/{name}", data[:512].hex()))
            except allowed:
                pass
            except Exception as e:  # noqa: BLE001  (that is the point: anything else is a crash)
                report.crash(f"decoder/{name}", e, data)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            if time.monotonic() - last > 5:
                last = time.monotonic()
                progress(f"  decoders: {i + 1}/{count} cases, {(i + 1) / (time.perf_counter() - started):.0f}/s, "
                         f"{len(report.crashes)} crashes, {len(report.hangs)} hangs")
    finally:
        signal.signal(signal.SIGALRM, previous)
    report.seconds["decoders"] += time.perf_counter() - started


# -- everything ---------------------------------------------------------------------------------

def run(cases: int, seed: int = 1, decoder_share: float = 0.3, http_share: float = 0.05,
        fresh_share: float = 0.1, time_limit: float = 5.0, length: int = LENGTH,
        store_dir: str | None = None) -> Report:
    """Fuzz with `cases` cases in all; the report says what happened."""
    rng = random.Random(seed)
    report = Report()
    n_decoder = round(cases * decoder_share)
    n_http = round(cases * http_share)
    n_fresh = round(cases * fresh_share)
    n_pipeline = cases - n_decoder - n_http - n_fresh
    with tempfile.TemporaryDirectory(dir=store_dir) as tmp:
        if n_fresh:
            progress(f"fuzzing: {n_fresh} Update messages of fresh update participants")
            fuzz_fresh_updates(str(Path(tmp) / "fresh.db"), rng, n_fresh, report, time_limit)
        fr = FuzzRound(str(Path(tmp) / "coordinator.db"), length)
        try:
            seeds = fr.seeds()
            maker = CaseMaker(rng, seeds, fr.pk)
            progress(f"fuzzing: {len(seeds)} valid messages and chunks as seeds; {n_pipeline} pipeline, "
                     f"{n_http} HTTP, {n_decoder} decoder cases")
            fuzz_decoders(fr, seeds, rng, n_decoder, report, time_limit)
            for i, (phase, tag) in enumerate((("sum", Tag.SUM), ("update", Tag.UPDATE), ("sum2", Tag.SUM2))):
                fr.wait_phase(tag)
                if phase != "sum":
                    time.sleep(MAX_AGE + 0.2)  # the leftovers of the last phase's cases expire
                fr.send_honest(phase)
                share = (lambda n: n // 3 + (1 if i < n % 3 else 0))
                maker.phase_tag = tag
                fuzz_in_process(fr, maker, share(n_pipeline), report, time_limit, label=f"{phase} phase")
                fuzz_http(fr, maker, share(n_http), report, time_limit)
                if phase == "update":
                    report.checks["aggregate == honest one before the last update (exact)"] = \
                        fr.c.aggregation.object == fr.honest_aggregate(UPDATES - 1)
                if phase == "sum2":
                    r = fr.c.reassembler
                    report.reassembly = {"completed": r.completed, "refused (buffer full)": r.refused,
                                         "expired": r.expired, "dropped (bad chunk)": r.dropped,
                                         "pending at the end": r.pending_messages}
                    votes = fr.c.store.votes()
                    report.checks["the votes are the honest ones"] = votes == [(fr.global_mask.to_bytes(), SUMS - 1)]
                fr.send_honest(phase, gate=True)
                if phase == "update":
                    fr.wait_phase(Tag.SUM2)
                    report.checks["aggregate == honest one (exact)"] = fr.c.aggregation.object == fr.honest_aggregate()
                if phase == "sum":
                    fr.wait_phase(Tag.UPDATE)
                    report.checks["sum dict == honest one"] = fr.c.sum_dict == {
                        k.public_key: e.public_key for k, _, e in fr.summers}
            fr.verify(report)
            report.checks["reassembly stayed within its byte bound"] = \
                report.peak_pending_bytes <= fr.c.settings.multipart.max_pending_bytes
        finally:
            fr.stop()
    return report


def summary(report: Report, seed: int) -> dict:
    seconds = sum(report.seconds.values())
    return {
        "seed": seed, "cases": report.total, "seconds": round(seconds, 1),
        "cases_per_second": round(report.total / seconds) if seconds else None,
        "crashes": len(report.crashes), "hangs": len(report.hangs),
        "cases_that_changed_the_round": len(report.changed), "http_errors": len(report.http_errors),
        "cases_by_target": dict(sorted(report.cases.items())),
        "verdicts": dict(report.verdicts.most_common()),
        "verdicts_by_layer": {f"{layer}: {reason}": n for (layer, reason), n in sorted(report.by_layer.items())},
        "peak_pending_chunk_bytes": report.peak_pending_bytes, "reassembly": report.reassembly,
        "max_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "checks": report.checks,
        "first_crashes": report.crashes[:5], "first_hangs": report.hangs[:5],
        "first_http_errors": report.http_errors[:5],
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=100_000, help="cases in all (default 100000)")
    parser.add_argument("--seed", type=int, default=1, help="the random seed: the same seed, the same cases")
    parser.add_argument("--decoder-share", type=float, default=0.3, help="share of decoder cases (0.3)")
    parser.add_argument("--http-share", type=float, default=0.05, help="share of cases sent over HTTP (0.05)")
    parser.add_argument("--fresh-share", type=float, default=0.1,
                        help="share of Update cases from fresh update participants (0.1)")
    parser.add_argument("--time-limit", type=float, default=5.0, help="seconds one case may take (5)")
    parser.add_argument("--json", type=Path, help="also write the summary as JSON to this file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)  # not the coordinator's line per rejected reason
    report = run(args.cases, args.seed, args.decoder_share, args.http_share, args.fresh_share, args.time_limit)
    out = summary(report, args.seed)
    print(f"{out['cases']} cases in {out['seconds']} s ({out['cases_per_second']} cases/s), seed {args.seed}")
    print(f"crashes: {out['crashes']}   hangs (> {args.time_limit:g} s): {out['hangs']}   "
          f"cases that changed the round: {out['cases_that_changed_the_round']}   "
          f"HTTP errors: {out['http_errors']}")
    print("cases by target:")
    for name, n in out["cases_by_target"].items():
        print(f"  {name:40} {n:8}")
    print("verdicts of the pipeline and HTTP cases:")
    for reason, n in out["verdicts"].items():
        print(f"  {reason:40} {n:8}")
    print(f"peak bytes held by incomplete multipart messages: {out['peak_pending_chunk_bytes']} "
          f"(bound {1 << 20}); max RSS {out['max_rss_kib'] / 1024:.0f} MiB")
    print("reassembly in the main round: " + ", ".join(f"{k} {v}" for k, v in out["reassembly"].items()))
    print("checks:")
    for check, ok in out["checks"].items():
        print(f"  {'ok  ' if ok else 'FAIL'} {check}")
    for where, text, data in report.crashes[:5]:
        print(f"crash in {where}: {text}\n  input: {data[:200]}...")
    for where, data in report.hangs[:5]:
        print(f"hang in {where}: input {data[:200]}...")
    for where, problem, data in report.http_errors[:5]:
        print(f"HTTP error on {where}: {problem}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())

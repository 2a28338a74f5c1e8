"""An in-process PET round built only from `pet` primitives, for protocol-level tests.

It plays the coordinator's part of spec sections 1-2 without timing, storage or
HTTP: the test decides when a phase ends. It implements the participant
`Transport` interface directly, and `serve_http` exposes it over real HTTP.
"""

from __future__ import annotations

import base64
import collections
import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from pet import crypto
from pet.crypto import CryptoError, EncryptKeyPair
from pet.errors import DecodeError
from pet.mask import Aggregation, AggregationError, MaskObject, unmask_exact
from pet.multipart import MultipartError, Reassembler
from pet.participant import ACCEPTED, Verdict
from pet.sortition import Task, validate_task
from pet.wire import (MaskConfigPair, Message, Model, RoundParameters, Sum, Sum2, SumDict, Tag, Update,
                      UpdateSeedDict)


class RoundDriver:
    def __init__(self, config, model_length: int, sum_prob: float = 0.3, update_prob: float = 0.9,
                 key_seed: bytes = b"pet-round"):
        self.key_seed = key_seed  # round keys, and so sortition, are reproducible
        self.config = config
        self.model_length = model_length
        self.sum_prob, self.update_prob = sum_prob, update_prob
        self.seed = bytes(32)
        self.global_model: Model | None = None
        self.rejections = collections.Counter()
        self.lock = threading.Lock()
        self.round_id = 0
        self.start_round()

    def start_round(self) -> None:
        self.round_id += 1
        self.keys = EncryptKeyPair.from_seed(crypto.sha256(self.key_seed + self.round_id.to_bytes(8, "little")))
        self.seed = crypto.next_round_seed(self.seed, self.keys.secret_key, self.sum_prob, self.update_prob)
        self.round_params = RoundParameters(self.keys.public_key, self.sum_prob, self.update_prob, self.seed,
                                      MaskConfigPair(self.config, self.config), self.model_length)
        self.phase = Tag.SUM
        self.sum_dict = SumDict()
        self.seed_dict: dict[bytes, UpdateSeedDict] = {}
        self.updaters: set[bytes] = set()
        self.aggregation = Aggregation(self.config, self.config, self.model_length)
        self.votes: collections.Counter = collections.Counter()
        self.voters: set[bytes] = set()
        self.reassembler = Reassembler()
        self.published_sums = self.published_seeds = False

    def end_phase(self) -> None:
        if self.phase is Tag.SUM:
            self.seed_dict = {pk: UpdateSeedDict() for pk in self.sum_dict}
            self.phase, self.published_sums = Tag.UPDATE, True
        elif self.phase is Tag.UPDATE:
            self.phase, self.published_seeds = Tag.SUM2, True
        elif self.phase is Tag.SUM2:
            (best, votes), *rest = self.votes.most_common(2) or [(None, 0)]
            if best is None or (rest and rest[0][1] == votes):
                raise RuntimeError("no mask with a strict majority")
            model = unmask_exact(self.aggregation.object, MaskObject.from_bytes(best),
                                 self.aggregation.nb_models)
            self.global_model = Model(model)
            self.start_round()

    # -- Transport ---------------------------------------------------------------------------

    def params(self):
        return self.round_params

    def sums(self):
        return self.sum_dict if self.published_sums and self.phase is not Tag.SUM else None

    def seeds(self, sum_pk):
        if not self.published_seeds or self.phase is not Tag.SUM2 or sum_pk not in self.seed_dict:
            return None
        return self.seed_dict[sum_pk]

    def model(self):
        return self.global_model

    def send(self, sealed: bytes) -> Verdict:
        with self.lock:
            verdict = self._handle(sealed)
        if not verdict.accepted:
            self.rejections[verdict.reason] += 1
        return verdict

    def _handle(self, sealed: bytes) -> Verdict:
        try:
            plain = crypto.seal_open(sealed, self.keys.public_key, self.keys.secret_key)
        except CryptoError as e:
            return Verdict(False, "undecryptable", str(e))
        try:
            msg = Message.decode(plain)
        except DecodeError as e:
            return Verdict(False, "malformed", str(e))
        if msg.tag is not self.phase:
            return Verdict(False, "wrong_phase", f"{msg.tag.name} during {self.phase.name}")
        if not crypto.verify_message(plain):
            return Verdict(False, "bad_signature", "")
        if msg.coordinator_pk != self.keys.public_key:
            return Verdict(False, "wrong_coordinator_pk", "")
        if msg.is_multipart:
            try:
                msg = self.reassembler.add(msg)
            except (MultipartError, DecodeError) as e:
                return Verdict(False, "multipart", str(e))
            if msg is None:
                return ACCEPTED
        p = msg.payload
        task = validate_task(msg.participant_pk, self.seed, self.sum_prob, self.update_prob,
                             p.sum_signature, getattr(p, "update_signature", None))
        pk = msg.participant_pk
        if isinstance(p, Sum):
            if task is not Task.SUM:
                return Verdict(False, "not_eligible", "")
            if pk in self.sum_dict:
                return Verdict(False, "duplicate", "")
            self.sum_dict[pk] = p.ephm_pk
        elif isinstance(p, Update):
            if task is not Task.UPDATE:
                return Verdict(False, "not_eligible", "")
            if pk in self.updaters:
                return Verdict(False, "duplicate", "")
            if set(p.local_seed_dict) != set(self.sum_dict):
                return Verdict(False, "seed_dict_mismatch", "")
            try:
                self.aggregation.aggregate(p.masked_model)
            except AggregationError as e:
                return Verdict(False, "bad_mask", str(e))
            self.updaters.add(pk)
            for sum_pk, box in p.local_seed_dict.items():
                self.seed_dict[sum_pk][pk] = box
        elif isinstance(p, Sum2):
            if task is not Task.SUM:
                return Verdict(False, "not_eligible", "")
            if pk not in self.sum_dict:
                return Verdict(False, "unknown_sum_participant", "")
            if pk in self.voters:
                return Verdict(False, "duplicate", "")
            self.voters.add(pk)
            self.votes[p.model_mask.to_bytes()] += 1
        return ACCEPTED


def serve_http(driver: RoundDriver) -> tuple[ThreadingHTTPServer, str]:
    """The driver behind XayNet's REST routes on a free loopback port."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _reply(self, status: int, body: bytes = b"", ctype: str = "application/octet-stream"):
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            url = urllib.parse.urlparse(self.path)
            if url.path == "/params":
                value = driver.params()
            elif url.path == "/sums":
                value = driver.sums()
            elif url.path == "/seeds":
                pk = base64.b64decode(urllib.parse.parse_qs(url.query)["pk"][0])
                value = driver.seeds(pk)
            elif url.path == "/model":
                value = driver.model()
            else:
                return self._reply(404)
            return self._reply(204) if value is None else self._reply(200, value.to_bytes())

        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            verdict = driver.send(body)
            if verdict.accepted:
                return self._reply(200)
            answer = {"accepted": False, "reason": verdict.reason, "detail": verdict.detail}
            return self._reply(400, json.dumps(answer).encode(), "application/json")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"

"""The participant state machine over MQTT (docs/protocol.md section 6, spec section 8).

  awaiting   nothing until new round parameters arrive
  sum        Sum message (fresh ephemeral X25519 key)             -> sum2
  sum2       read the own seed column, open each seed, add its mask;
             then the Sum2 message (global mask)                  -> awaiting
  update     wait for the sum dict and the app's model; then the Update
             message: masked model, mask seed sealed to every sum
             participant                                          -> awaiting

Messages go out one sealed message (or chunk) at a time on `<prefix>/dev/<pk>/msg`;
the next is built when the verdict on `.../ack` accepted the last. A chunk is built
from the payload range it carries, into a flash file (upet.store's round.msg), where it
is signed and sealed 256 bytes at a time and from where it is published: no message is
ever held whole, whatever max_message_size allows, and the only model-sized buffers are
the app's weights and a sum participant's global mask.

Parameters of a round the participant has left are ignored: a broker restored from
its saved state serves the retained parameters of an earlier round for a while, and
that round's sum dict and seed columns, which are refused while it does.

Progress is saved after every step (upet.store): a reset resumes the round with the
same keys, mask seed, weights and message id, so a resent chunk carries the bytes of
the first one, and the coordinator answers what it already has with `duplicate`.
Code size is heap on the Unix port: this module is kept small on purpose, and what runs
only now and then loads for that call only (upet.transient): the start-up and resume
(upet.boot), a round's sortition (upet.sortition), a global model arriving
(upet.global_model) and a sum participant's seed column (upet.seeds).
"""

# Long-lived buffers come before the code loads, as loading leaves the heap in small
# pieces: the window through which a message is signed, sealed and published, masking
# scratch, then the curve workspace (upet.x25519 allocates it as it loads). The reserve
# keeps 4 KB in one piece until start-up, for what needs larger pieces then: the Ed25519
# table rows (864 bytes each) and the MQTT client.
_WINDOW = bytearray(256)
_SCRATCH = bytearray(384)  # 32 weights in, 32 masked words out; sum dict entries, seed entries
_RESERVE = bytearray(4096)
from upet import x25519  # noqa: E402,F401

import hashlib  # noqa: E402
import json  # noqa: E402
import struct  # noqa: E402
import time  # noqa: E402

from upet import ed25519, transient  # noqa: E402
from upet.box import Sealer  # noqa: E402
from upet.mask import MaskConfig, Masker  # noqa: E402
from upet.store import MSG, WEIGHTS, Store  # noqa: E402

_TAG = {"sum": 1, "update": 2, "sum2": 3}
_NEXT = {"sum": "sum2", "sum2": "awaiting", "update": "awaiting"}


class RoundParams:
    """RoundParameters (136 bytes of bincode); sum_prob and update_prob (f64 LE bytes 40-56)
    are read from raw where upet.sortition needs them."""

    def __init__(self, raw):
        if len(raw) != 136 or raw[0] != 32 or raw[56] != 32:
            raise ValueError("bad round parameters")
        self.raw = bytes(raw)
        self.pk = raw[8:40]
        self.seed = raw[64:96]
        self.vect = MaskConfig(bytes(struct.unpack_from("<4I", raw, 96)))
        self.unit = MaskConfig(bytes(struct.unpack_from("<4I", raw, 112)))
        self.model_length = struct.unpack_from("<Q", raw, 128)[0]


def _windows(f, start, n, write_back=False):
    """The bytes [start, start + n) of file f, 256 at a time in one buffer; with write_back,
    each window goes back to the file once the next one is asked for (or the last is done)."""
    w = memoryview(_WINDOW)
    end = start + n
    while start < end:
        k = min(256, end - start)
        f.seek(start)
        f.readinto(w[:k])
        yield w[:k]
        if write_back:
            f.seek(start)
            f.write(w[:k])
        start += k


class Participant:
    """train(params) -> (array('f') weights, scalar) or None when not ready;
    on_model(round_id, weights) gets each new global model, streamed into `model`."""

    def __init__(self, config=None, train=None, on_model=None, model=None, store=None, client=None, log=None):
        self.train, self.on_model, self.model = train, on_model, model
        self.log = log or (lambda *a: print("upet:", *a))
        # every attribute from the start: the instance dict does not grow mid-round
        self.store = self.seed = self.pk = self.me = self.prefix = self.client = self.sleep_s = self.awake_ms = None
        self.max_payload = self.ack_ms = self.state = self.phase = self.sending = self.chunk = self.params = None
        self._incoming = self.model_round = self._borrowed = self._ours = None
        self._piece = self._at = self._pos = self._last = self._count = self._sent = self._wait = None
        self._left = []
        self._sums = self._agg = self._gen = self._sealed = self._pending = self._verdict = None
        global _RESERVE
        _RESERVE = None
        transient("boot", "start", self, config, store or Store(), client)

    # -- MQTT in ---------------------------------------------------------------------------------

    def connect(self, timeout=10):
        """Connects (MQTTError when refused) and subscribes; retained round state arrives at once."""
        self.client.connect(timeout)  # returns whether the broker kept the session: we subscribe anyway
        for t in ("round/params", "model/global", "dev/%s/ack" % self.me):
            self.client.subscribe(self.prefix + t, 1)
        self._subscribe_role()
        return True

    def _subscribe_role(self):
        # subscribing (again) delivers the retained sum dict / seed column (again)
        if self.phase == "update":
            self.client.subscribe(self.prefix + "round/sums", 1)
        elif self.phase == "sum2" and not self.sending:
            self.client.subscribe(self.prefix + "round/seeds/" + self.me, 1)

    def _on_message(self, topic, r, retained):
        t = topic.decode()[len(self.prefix):]
        n = r.length
        try:
            if t == "round/params" and n == 136:
                self._incoming = r.read(136)
                # whether the broker serves this round's parameters: one restored from its saved
                # state serves an earlier round's, and that round's sum dict and seed columns
                self._ours = self.params is not None and self._incoming == self.params.raw
            elif t.endswith("/ack") and n < 1024:
                ack = json.loads(r.read(n))
                if isinstance(ack, dict) and ack.get("msg") == self._pending:
                    self._verdict = ack
            elif t == "model/global" and n >= 12:
                transient("global_model", "read", self, r)
            elif t == "round/sums" and n and self.phase == "update" and self._sums is None:
                if not self._ours:
                    raise ValueError("served beside another round's parameters")
                count = struct.unpack("<Q", r.read(8))[0]
                if n == 8 + 80 * count:  # entries of 80 bytes: 32 (u64), sum pk, 32 (u64), ephemeral pk
                    sums, e = bytearray(64 * count), memoryview(_SCRATCH)[:80]
                    for i in range(0, 64 * count, 64):
                        r.readinto(e, 80)
                        sums[i:i + 32], sums[i + 32:i + 64] = e[8:40], e[48:80]
                    self._sums = sums  # sum pk || ephemeral pk, 64 bytes a sum participant
            elif t == "round/seeds/" + self.me and n and self.phase == "sum2" and not self.sending:
                if not self._ours:
                    raise ValueError("served beside another round's parameters")
                transient("seeds", "read", self, r)
        except (ValueError, MemoryError) as e:  # malformed, or too large for this board: ignored
            self.log(t, "refused:", e)
        r.skip()

    # -- state ---------------------------------------------------------------------------------------

    def _enter(self, phase, sending=False):
        if self._borrowed and phase != "sum2":  # the retained global model comes again into the array
            self._borrowed = self.model_round = None
            self.client.subscribe(self.prefix + "model/global", 1)
        self.phase, self.sending, self.chunk = phase, sending, 0
        self._sums = self._agg = self._gen = self._sealed = self._pending = self._verdict = None
        s = self.state
        if phase == "awaiting":
            for k in ("ephm_sk", "mask_seed", "seal_sk"):
                s.pop(k, None)
            self.store.remove(WEIGHTS)
            self.store.remove(MSG)
        self._save()
        if not sending:
            self._subscribe_role()
        return True

    def _save(self):
        s = self.state
        s["phase"], s["sending"], s["chunk"] = self.phase, self.sending, self.chunk
        self.store.save_round(s)

    def step(self):
        """Handles what arrived and takes one step; True when it made progress."""
        self.client.check_msg()
        raw, self._incoming = self._incoming, None
        if raw and (self.params is None or raw != self.params.raw):
            if raw[64:96] in self._left:  # a broker restored from its saved state serves old parameters
                self.log("ignoring the parameters of an earlier round", raw[64:68].hex())
                return False
            try:
                phase = transient("sortition", "new_round", self, raw)
            except ValueError as e:  # the round goes on without this device
                self.log("round parameters refused:", e)
                return False
            self._ours = True  # before _enter subscribes: the round's sum dict may come at once
            return self._enter(phase, phase == "sum")
        if self.params is None or self.phase == "awaiting":
            return False
        if self.sending:
            return self._send()
        if self.phase == "sum2":
            if self._agg is None:
                return False
            if self._agg is False:
                return self._enter("awaiting")
            agg = self._agg
            self._enter("sum2", True)
            self._agg = agg
            return True
        return self._update()

    def _update(self):
        if self._sums is None:
            return False
        local = self.train(self.params) if self.train else None
        if local is None:
            return False
        weights, scalar = local
        if len(weights) != self.params.model_length:
            self.log("model length %d, the round wants %d" % (len(weights), self.params.model_length))
            return self._enter("awaiting")
        self.store.write(WEIGHTS, weights)  # the update a reset resumes
        self.state["scalar"] = scalar
        sums = self._sums
        self._enter("update", True)
        self._sums = sums
        return True

    # -- MQTT out ----------------------------------------------------------------------------------

    def _pieces(self):
        """The payload as a sequence of byte pieces, produced on demand."""
        p, s = self.params, self.state
        if self.phase == "sum":
            yield s["sum_sig"] + ed25519.x25519_base(s["ephm_sk"])
            return
        head = p.vect.raw + struct.pack(">I", p.model_length)
        if self.phase == "sum2":
            words, unit = self._agg
            yield s["sum_sig"] + head
            yield words
            yield p.unit.raw + p.unit.number(unit)
            return
        yield s["sum_sig"] + s["update_sig"] + head
        m = Masker(p.vect, s["mask_seed"], s["scalar"], p.unit)
        wb = p.vect.word_bytes
        src, out = memoryview(_SCRATCH)[:128], memoryview(_SCRATCH)[128:128 + 32 * wb]
        with open(self.store.path(WEIGHTS), "rb") as f:
            for i in range(0, p.model_length, 32):
                k = min(32, p.model_length - i)
                f.readinto(src[:4 * k])
                m.mask_into(src[:4 * k], out)
                yield out[:k * wb]
        yield m.unit_bytes() + struct.pack(">I", 4 + 112 * (len(self._sums) >> 6))
        sealer = Sealer(s["seal_sk"])
        e = memoryview(_SCRATCH)[:112]  # the weights' pieces are all written by now
        sums = memoryview(self._sums)
        for i in range(0, len(sums), 64):
            e[:32], e[80:] = sums[i:i + 32], s["mask_seed"]
            sealer.seal_into(e[32:], sums[i + 32:i + 64])
            yield e

    def _take(self, n, write=None):
        """Hands the next n payload bytes to write, in pieces (or skips them)."""
        while n:
            if self._at == len(self._piece):
                self._piece, self._at = memoryview(next(self._gen)), 0  # slices without copies
            k = min(n, len(self._piece) - self._at)
            if write:
                write(self._piece[self._at:self._at + k])
            n -= k
            self._at += k
            self._pos += k

    def _build(self):
        """Message (or chunk) number self.chunk, signed and sealed in the store's MSG file."""
        p, P = self.params, self.max_payload
        wb, ub = p.vect.word_bytes, p.unit.word_bytes
        total = {"sum": 96, "sum2": 76 + p.model_length * wb + ub}.get(
            self.phase, 140 + p.model_length * wb + ub + 4 + 112 * (len(self._sums or b"") >> 6))
        multi = total > P
        size = P - 8 if multi else total
        start = self.chunk * size
        size = min(size, total - start)
        self._last = start + size >= total
        self._count = (total + P - 9) // (P - 8) if multi else 1
        length = 136 + size + (8 if multi else 0)
        if self._gen is None or self._pos != start:
            self._gen, self._piece, self._at, self._pos = self._pieces(), b"", 0, 0
            self._take(start)
        path = self.store.path(MSG)
        with open(path, "wb") as f:  # the signature's place, then what it signs
            f.write(bytes(64))
            f.write(self.pk + p.pk + struct.pack(">IBBH", length, _TAG[self.phase], int(multi), 0))
            if multi:
                f.write(struct.pack(">HHB3x", self.chunk, self.state["msg_id"], int(self._last)))
            self._take(size, f.write)
        if self._last:  # all taken: the payload's Masker, Sealer and file go before signing
            self._gen = self._piece = None
        with open(path, "r+b") as f:
            sig = ed25519.sign(self.seed, lambda: _windows(f, 64, length - 64))
            f.seek(0)
            f.write(sig)
            head = Sealer().seal_pieces(p.pk, _windows(f, 0, length, True))
            digest = hashlib.sha256(head)  # the message id in the verdict: of the sealed bytes
            for w in _windows(f, 0, length):
                digest.update(w)
        self._sealed = (head, length)
        self._pending = digest.digest()[:8].hex()

    def _publish(self):
        head, length = self._sealed
        path = self.store.path(MSG)

        def fill(write):  # again from the file if the client must send it again
            write(head)
            with open(path, "rb") as f:
                for w in _windows(f, 0, length):
                    write(w)
        self._verdict, self._sent, self._wait = None, time.ticks_ms(), self.ack_ms
        self.client.publish_stream(self.prefix + "dev/%s/msg" % self.me, 48 + length, fill, 1)
        return True

    def _send(self):
        if self.phase == "update" and self._sums is None:
            return False  # after a reset: the sum dict comes again with the subscription
        if self._sealed is None:
            try:
                self._build()
            except ValueError as e:  # e.g. a NaN weight, or a coordinator key of low order in the parameters
                self.log(self.phase, "cannot be sent:", e)
                return self._enter("awaiting")
            return self._publish()
        v = self._verdict
        if v is None:
            if time.ticks_diff(time.ticks_ms(), self._sent) < self._wait:
                return False
            self.log("no verdict: sending again")
            return self._publish()
        reason = v.get("reason")
        if v.get("accepted") or reason == "duplicate":
            self.chunk += 1
            done = "%s chunk %d/%d %s" % (self.phase, self.chunk, self._count, reason or "accepted")
            if self._last:
                self._enter(_NEXT[self.phase])
            else:
                self._sealed = None
                self._save()
            self.log(done)
            return True
        if reason == "queue_full":  # send it again later
            self._verdict, self._wait = None, 2000
            return False
        self.log(self.phase, "refused:", reason)
        return self._enter("awaiting")

    def run(self, board=None, idle_ms=200):
        """Step forever; reconnect after network errors, wait for messages when idle.

        With config deep_sleep_s, a board that has had nothing to do for awake_s seconds
        (default 10) while it has no task in the round deep-sleeps: it resets on waking,
        and the broker's retained messages tell it what it missed."""
        up, backoff = False, 1
        sleep_s, awake_ms = self.sleep_s, self.awake_ms
        idle_since = time.ticks_ms()
        while True:
            if board:
                board.feed()
            try:
                if not up:
                    if board:
                        board.ensure_network()
                    up = self.connect()
                    backoff = 1
                    idle_since = time.ticks_ms()
                if self.step():
                    idle_since = time.ticks_ms()
                elif (sleep_s and board and self.phase == "awaiting" and self.params is not None
                      and time.ticks_diff(time.ticks_ms(), idle_since) >= awake_ms):
                    self.log("no task until the next round: deep sleep for", sleep_s, "s")
                    self.client.disconnect()
                    board.deep_sleep(sleep_s)  # does not return: waking resets the board
                else:
                    self.client.wait_msg(idle_ms / 1000)
            except OSError as e:
                self.log("connection lost:", e)
                up = False
                try:
                    self.client.disconnect()
                except Exception:
                    pass
                time.sleep(backoff)
                backoff = min(2 * backoff, 60)

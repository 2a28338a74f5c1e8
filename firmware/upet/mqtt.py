"""MQTT 3.1.1 client for the participant: QoS 0 and 1, persistent sessions, TLS, streaming.

Payloads stream both ways, so a model larger than the heap goes through:
`publish_stream` writes the PUBLISH header with the length known up front and
lets a fill function write the payload in pieces; a received PUBLISH reaches
the callback as a reader on the socket. The client's own buffers are fixed.

Failure behaviour:
- A QoS 1 publish returns once the broker acknowledged it. If the connection
  breaks first, the client reconnects (backoff 0.5 s doubling to 30 s, +-25%
  jitter) and sends it again with DUP set, until PUBACK or `timeout` seconds;
  then it raises MQTTError and the message may or may not have arrived.
- Everything else raises MQTTError (an OSError) on a broken connection and
  closes the socket; `ensure_connected()` reconnects. After a reconnect without
  a session on the broker the client subscribes again to its topics.
- Keepalive: `check_msg`/`wait_msg`/waits for acks send PINGREQ after
  keepalive/2 seconds without sending; no PINGRESP within keepalive seconds
  means the connection is dead. Call `check_msg()` at least every keepalive/2.
- Every read of a packet has a timeout, and lengths are checked, so a broken
  or hostile broker gives an MQTTError, never a hang.
TLS: `ssl_params` go to `ssl.wrap_socket` (e.g. `cadata`: the CA certificate,
DER; `server_hostname`); given `cadata`, the broker's certificate is checked.

Connecting (CONNECT, TLS, backoff) lives in upet.mqtt_connect, loaded for the
connect only, so that its code is not in the heap while a round runs.
"""

import errno
import time

import upet
from micropython import const

_PUBLISH = const(0x30)
_PUBACK = const(0x40)
_SUBACK = const(0x90)
_PINGRESP = const(0xD0)
_MAX_TOPIC = const(512)  # ours are under 100 bytes; a longer one is not worth the heap


class MQTTError(OSError):
    """A refused, broken or malformed MQTT connection (the socket is closed)."""


def _deadline(timeout):
    """The ticks_ms at which `timeout` seconds are over; None for no timeout."""
    return None if timeout is None else time.ticks_add(time.ticks_ms(), int(timeout * 1000))


def _ms_left(deadline):
    """Milliseconds until deadline; a minute at a time when there is none."""
    return 60000 if deadline is None else time.ticks_diff(deadline, time.ticks_ms())


class Reader:
    """The payload of a received PUBLISH, read straight from the socket."""

    def __init__(self, client, length):
        self._client = client
        self.length = self.remaining = length

    def readinto(self, buf, n=None):
        """Fills buf[:n] (or as much as is left) and returns the count; 0 at the end."""
        n = min(len(buf) if n is None else n, self.remaining)
        if n > 0:
            self._client._readinto(memoryview(buf)[:n])
            self.remaining -= n
        return n

    def read(self, n=-1):
        buf = bytearray(self.remaining if n < 0 else min(n, self.remaining))
        self.readinto(buf)
        return bytes(buf)

    def skip(self):
        while self.readinto(self._client._buf):
            pass


class MQTTClient:
    def __init__(self, client_id, host, port=1883, user=None, password=None, keepalive=60,
                 ssl_params=None, clean_session=False, will=None):
        # 17 attributes at most: an instance dict of up to 17 takes 272 bytes on x64, one of 18
        # to 29 takes 464, a block a start-up in a heap of small pieces may not find.
        # What CONNECT sends, and where to (read by upet.mqtt_connect only):
        self.settings = (client_id, host, port, user, password, ssl_params, clean_session, will)
        self.keepalive = keepalive
        self.sock = self._raw = None  # with TLS, sock wraps the TCP socket _raw
        self._poller = None         # waits for the first byte of a packet
        self.session_present = False
        self.connects = 0           # successful CONNECTs, for logs and tests
        self._cb = None
        self._subs = {}             # topic -> qos, renewed after a reconnect without a session
        self._pid = 0
        self._unacked = 0           # packet id of the PUBLISH (QoS 1) or SUBSCRIBE awaiting its ack
        self._sub_rc = 0            # the last SUBACK's return code
        self._refused = 0
        self._buf = memoryview(bytearray(64))  # headers, packet ids and skipped payload bytes
        self._timeout = 10
        self._last_tx = self._ping_at = 0

    def set_callback(self, cb):
        """cb(topic: bytes, reader: Reader, retained: bool) for every received PUBLISH. What it does
        not read is skipped; it must not call the client (it runs inside the client's reads)."""
        self._cb = cb

    # -- connection (upet.mqtt_connect, loaded for the connect only) ------------------------------

    def connect(self, timeout=10):
        """Opens the connection; returns whether the broker still had our session. `timeout` bounds
        the connection and, afterwards, every single read or write."""
        return upet.transient("mqtt_connect", "connect", self, timeout)

    def ensure_connected(self, timeout=None):
        """Reconnects if the connection is closed, retrying with backoff for up to `timeout` seconds
        (None: forever). Returns True if it connected. A refusal other than "server unavailable"
        is raised at once: trying again would not help."""
        if self.sock is not None:
            return False
        return upet.transient("mqtt_connect", "ensure_connected", self, timeout)

    def disconnect(self):
        """Closes cleanly: the broker keeps the session and does not publish the last will."""
        if self.sock is not None:
            try:
                self._write(b"\xe0\x00")
            except OSError:
                pass
        self._close()

    def _close(self):
        for s in (self.sock, self._raw):
            if s is not None:
                try:
                    s.close()
                except OSError:
                    pass
        self.sock = self._raw = None

    # -- publish and subscribe -------------------------------------------------------------------

    def publish(self, topic, payload, qos=0, retain=False, timeout=60):
        """A small message held in memory; see publish_stream."""
        self.publish_stream(topic, len(payload), lambda write: write(payload), qos, retain, timeout)

    def publish_stream(self, topic, length, fill, qos=1, retain=False, timeout=60):
        """Publishes `length` bytes that `fill(write)` writes in pieces. QoS 1 blocks until PUBACK,
        handling incoming packets meanwhile; it may call fill again to resend after a reconnect,
        so fill must write the same bytes each time."""
        topic = topic.encode() if isinstance(topic, str) else topic
        if qos not in (0, 1):
            raise ValueError("QoS must be 0 or 1")
        n = 2 + len(topic) + 2 * qos + length
        if len(topic) > 0xFFFF or n > 0xFFFFFFF:
            raise ValueError("topic or payload too long")
        pid = dup = 0
        if qos:
            self._pid = pid = self._pid % 0xFFFF + 1
        deadline = _deadline(timeout)
        left = length  # bytes fill has still to write

        def write(data):
            nonlocal left
            if len(data) > left:
                raise ValueError("fill wrote more or fewer bytes than announced")
            self._write(data)
            left -= len(data)
        try:
            while True:
                try:
                    if self.sock is None:
                        if not qos:  # sent once, on the connection there is
                            raise MQTTError("not connected to the broker")
                        self.ensure_connected(None if deadline is None else _ms_left(deadline) / 1000)
                    self._unacked = pid
                    buf = self._buf
                    i = self._header(_PUBLISH | dup | qos << 1 | (1 if retain else 0), n)
                    dup = 8  # every later attempt is a redelivery, even if this one breaks off
                    buf[i], buf[i + 1] = len(topic) >> 8, len(topic) & 0xFF
                    buf[i + 2], buf[i + 3] = pid >> 8, pid & 0xFF  # sent with QoS 1 only
                    self._write(buf[:i + 2])
                    self._write(topic)
                    if qos:
                        self._write(buf[i + 2:i + 4])
                    left = length
                    fill(write)
                    if left:
                        raise ValueError("fill wrote more or fewer bytes than announced")
                    while self._unacked:
                        if _ms_left(deadline) <= 0:
                            raise MQTTError("no %s from the broker within %s s" % ("PUBACK", timeout))
                        self._poll(_ms_left(deadline))
                    return
                except OSError:
                    self._close()
                    if not qos or self._refused not in (0, 3) or _ms_left(deadline) <= 0:
                        raise
                except BaseException:
                    self._close()  # a packet cut short: the broker cannot read on
                    raise
        finally:
            self._unacked = 0

    def subscribe(self, topic, qos=1):
        """Subscribes and waits for SUBACK; the topic is renewed after reconnects that lost the session."""
        if qos not in (0, 1):
            raise ValueError("QoS must be 0 or 1")
        if self.sock is None:
            raise MQTTError("not connected to the broker")
        topic = topic.encode() if isinstance(topic, str) else topic
        self._subs[topic] = qos
        self._pid = pid = self._unacked = self._pid % 0xFFFF + 1
        buf = self._buf
        i = self._header(0x82, 5 + len(topic))
        buf[i], buf[i + 1] = pid >> 8, pid & 0xFF
        buf[i + 2], buf[i + 3], buf[i + 4] = len(topic) >> 8, len(topic) & 0xFF, qos
        self._write(buf[:i + 4])
        self._write(topic)
        self._write(buf[i + 4:i + 5])
        deadline = _deadline(self._timeout)
        while self._unacked:
            if _ms_left(deadline) <= 0:
                self._close()
                raise MQTTError("no %s from the broker within %s s" % ("SUBACK", self._timeout))
            self._poll(_ms_left(deadline))
        if self._sub_rc == 0x80:
            self._subs.pop(topic, None)
            raise MQTTError("subscription to %s refused" % topic.decode())
        return self._sub_rc

    # -- receiving -------------------------------------------------------------------------------

    def check_msg(self):
        """Handles the packets that have arrived, without waiting; True if a PUBLISH was delivered."""
        if self.sock is None:
            raise MQTTError("not connected to the broker")
        got = False
        while True:
            kind = self._poll(0)
            if kind is None:
                return got
            got = got or kind == _PUBLISH

    def wait_msg(self, timeout=None):
        """Waits up to `timeout` seconds (None: forever) until a PUBLISH was delivered; False if none."""
        if self.sock is None:
            raise MQTTError("not connected to the broker")
        deadline = _deadline(timeout)
        while _ms_left(deadline) > 0:
            if self._poll(_ms_left(deadline)) == _PUBLISH:
                return True
        return False

    def _poll(self, ms):
        """Waits up to ms for one packet (less if a ping is due) and handles it; returns its type."""
        buf = self._buf
        try:
            if self.keepalive:
                now, period = time.ticks_ms(), self.keepalive * 1000
                if self._ping_at:
                    waited = time.ticks_diff(now, self._ping_at)
                    if waited >= period:
                        raise MQTTError("no %s from the broker within %s s" % ("PINGRESP", self.keepalive))
                    ms = min(ms, period - waited)
                else:
                    idle = time.ticks_diff(now, self._last_tx)
                    if idle >= period // 2:
                        self._write(b"\xc0\x00")
                        self._ping_at = now or 1
                        ms = min(ms, period)
                    else:
                        ms = min(ms, period // 2 - idle)
            if not self._readinto(buf[:1], ms):
                return None
            first = buf[0]
            n = self._read_length()
            kind, qos = first & 0xF0, (first >> 1) & 3
            if kind == _PUBLISH and qos < 2:  # we subscribe with QoS 0 or 1 only
                self._readinto(buf[:2])
                size = buf[0] << 8 | buf[1]
                head = 2 + size + 2 * qos
                if head > n or size > _MAX_TOPIC:
                    raise MQTTError("malformed or oversized PUBLISH topic: %d bytes" % size)
                topic = bytearray(size)
                self._readinto(memoryview(topic))
                if qos:
                    self._readinto(buf[:2])
                    pid = buf[0] << 8 | buf[1]
                reader = Reader(self, n - head)
                if self._cb is not None:
                    self._cb(bytes(topic), reader, bool(first & 1))
                reader.skip()
                if qos:
                    buf[0], buf[1], buf[2], buf[3] = _PUBACK, 2, pid >> 8, pid & 0xFF
                    self._write(buf[:4])
            elif kind in (_PUBACK, _SUBACK, _PINGRESP):
                want = 2 if kind == _PUBACK else 3 if kind == _SUBACK else 0
                if n != want:
                    raise MQTTError("unexpected packet from the broker: type 0x%02x, length %d" % (first, n))
                self._readinto(buf[:n])
                pid = buf[0] << 8 | buf[1]
                if kind == _PINGRESP:
                    self._ping_at = 0
                elif kind == _PUBACK and pid == self._unacked:
                    self._unacked = 0
                elif kind == _SUBACK and pid == self._unacked:
                    self._unacked, self._sub_rc = 0, buf[2]
            else:
                raise MQTTError("unexpected packet from the broker: type 0x%02x, length %d" % (first, n))
            return kind
        except BaseException:
            self._close()
            raise

    # -- bytes on the wire -----------------------------------------------------------------------

    def _read_length(self):
        """The remaining length of the packet whose first byte was read (at most 4 bytes)."""
        buf, n = self._buf, 0
        for shift in (0, 7, 14, 21):
            self._readinto(buf[:1])
            n |= (buf[0] & 0x7F) << shift
            if not buf[0] & 0x80:
                return n
        raise MQTTError("malformed packet: remaining length > 4 bytes")

    def _header(self, first, n):
        """Fixed header into self._buf; returns its length."""
        self._buf[0] = first
        i = 1
        while True:
            self._buf[i] = n & 0x7F | (0x80 if n > 0x7F else 0)
            n >>= 7
            i += 1
            if not n:
                return i

    def _readinto(self, buf, ms=None):
        """Fills buf from the socket; each read waits up to the connect timeout. Given ms (for the
        first byte of a packet), False if nothing came within ms. That wait polls and reads without
        blocking: a TLS socket whose read timed out cannot be used any more."""
        deadline = None if ms is None else _deadline(ms / 1000)
        pos = 0
        while pos < len(buf):
            self._raw.settimeout(self._timeout if ms is None else 0)
            try:
                n = self.sock.readinto(buf[pos:])
            except OSError as e:
                if e.args[0] not in (errno.ETIMEDOUT, errno.EAGAIN):
                    raise MQTTError("connection lost: %s" % e)
                n = None
            if n is None:
                if ms is None:
                    raise MQTTError("timed out in the middle of a packet")
                if _ms_left(deadline) <= 0:
                    return False
                self._poller.poll(_ms_left(deadline))  # TLS: readable may be no whole record yet
                continue
            if n == 0:
                raise MQTTError("connection closed by the broker")
            pos += n
        return True

    def _write(self, data):
        self._raw.settimeout(self._timeout)
        mv = memoryview(data)
        pos = 0
        while pos < len(mv):
            try:
                n = self.sock.write(mv[pos:])
            except OSError as e:
                if e.args[0] not in (errno.ETIMEDOUT, errno.EAGAIN):
                    raise MQTTError("connection lost: %s" % e)
                n = None
            if n is None:
                raise MQTTError("timed out in the middle of a packet")
            pos += n
        self._last_tx = time.ticks_ms()

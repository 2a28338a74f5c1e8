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
"""

import errno
import random
import select
import socket
import time

from micropython import const

_CONNACK = const(0x20)
_PUBLISH = const(0x30)
_PUBACK = const(0x40)
_SUBACK = const(0x90)
_PINGRESP = const(0xD0)
_REFUSED = ("", "unacceptable protocol version", "identifier rejected", "server unavailable",
            "bad user name or password", "not authorised")
_TIMEOUTS = (errno.ETIMEDOUT, errno.EAGAIN)
_MAX_TOPIC = const(512)  # ours are under 100 bytes; a longer one is not worth the heap


class MQTTError(OSError):
    """A refused, broken or malformed MQTT connection (the socket is closed)."""


def _lost(e):
    """None for a timeout (the caller says what timed out); other socket errors end the connection."""
    if e.args[0] not in _TIMEOUTS:
        raise MQTTError("connection to the broker lost: %s" % e)


def _deadline(seconds):
    return None if seconds is None else time.ticks_add(time.ticks_ms(), int(seconds * 1000))


def _ms_left(deadline):
    """Milliseconds until deadline; a minute at a time when there is none."""
    return 60000 if deadline is None else time.ticks_diff(deadline, time.ticks_ms())


def _bytes(s):
    return s.encode() if isinstance(s, str) else s


def _field(s):
    s = _bytes(s)
    return bytes((len(s) >> 8, len(s) & 0xFF)) + s


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
        self.client_id, self.host, self.port = client_id, host, port
        self.user, self.password, self.keepalive = user, password, keepalive
        self.ssl_params, self.clean_session, self.will = ssl_params, clean_session, will
        self.sock = self._raw = None
        self.session_present = False
        self.connects = 0           # successful CONNECTs, for logs and tests
        self._cb = None
        self._subs = {}             # topic -> qos, renewed after a reconnect without a session
        self._pid = 0
        self._unacked = 0           # packet id of the QoS 1 PUBLISH awaiting PUBACK
        self._sub_pid = self._sub_rc = 0
        self._refused = 0
        self._buf = bytearray(64)   # headers, packet ids and skipped payload bytes
        self._mv = memoryview(self._buf)
        self._timeout = 10
        self._tmo = None
        self._last_tx = self._ping_at = 0
        self._left = 0              # bytes a publish_stream fill still has to write

    def set_callback(self, cb):
        """cb(topic: bytes, reader: Reader, retained: bool) for every received PUBLISH. What it does
        not read is skipped; it must not call the client (it runs inside the client's reads)."""
        self._cb = cb

    # -- connection ------------------------------------------------------------------------------

    def connect(self, timeout=10):
        """Opens the connection; returns whether the broker still had our session. `timeout` bounds
        the connection and, afterwards, every single read or write."""
        self._close()
        self._timeout, self._refused, self._tmo = timeout, 0, None
        try:
            ai = socket.getaddrinfo(self.host, self.port)[0]
            self.sock = self._raw = socket.socket(ai[0], socket.SOCK_STREAM)
            self._settimeout(timeout)
            self._raw.connect(ai[-1])
            try:  # IPPROTO_TCP, TCP_NODELAY: the pieces of a packet are not held back
                self._raw.setsockopt(6, 1, 1)
            except (OSError, ValueError, TypeError):
                pass
            if self.ssl_params is not None:
                self.sock = self._wrap_tls()
            self._poller = select.poll()
            self._poller.register(self.sock, select.POLLIN)
            self._write(self._connect_packet())
            if not self._wait_byte(int(timeout * 1000)):
                raise MQTTError("no CONNACK from the broker within %s s" % timeout)
            if self._buf[0] != _CONNACK:
                raise MQTTError("malformed packet: expected CONNACK (0x20), got 0x%02x" % self._buf[0])
            n = self._read_length()
            if n != 2:
                raise MQTTError("malformed packet: CONNACK of length %d, not 2" % n)
            self._readinto(self._mv[:2])
            rc = self._buf[1]
            if rc:
                self._refused = rc
                raise MQTTError("broker refused the connection: %s (%d)"
                                % (_REFUSED[rc] if rc < len(_REFUSED) else "unknown reason", rc))
            self.session_present = bool(self._buf[0] & 1)
            self._ping_at = 0
            self.connects += 1
            if not self.session_present:
                for topic, qos in self._subs.items():
                    self._subscribe(topic, qos)
            return self.session_present
        except BaseException as e:
            self._close()
            if isinstance(e, OSError) and not isinstance(e, MQTTError):
                raise MQTTError("cannot connect to %s:%s: %s" % (self.host, self.port, e))
            raise

    def _wrap_tls(self):
        import ssl
        params = dict(self.ssl_params)
        if "cadata" in params:  # a CA given means: check the broker against it
            params.setdefault("cert_reqs", ssl.CERT_REQUIRED)
        try:
            return ssl.wrap_socket(self._raw, **params)
        except (OSError, ValueError) as e:  # mbedtls reports a bad certificate as ValueError
            raise MQTTError("TLS handshake with the broker failed: %s" % str(e).strip())

    def _connect_packet(self):
        flags = 2 if self.clean_session else 0
        payload = _field(self.client_id)
        if self.will:
            topic, msg, retain, qos = self.will
            flags |= 4 | qos << 3 | (0x20 if retain else 0)
            payload += _field(topic) + _field(msg)
        if self.user is not None:
            flags |= 0x80
            payload += _field(self.user)
            if self.password is not None:
                flags |= 0x40
                payload += _field(self.password)
        body = b"\x00\x04MQTT\x04" + bytes((flags, self.keepalive >> 8, self.keepalive & 0xFF)) + payload
        return bytes(self._mv[:self._header(0x10, len(body))]) + body

    def ensure_connected(self, timeout=None):
        """Reconnects if the connection is closed, retrying with backoff for up to `timeout` seconds
        (None: forever). Returns True if it connected. A refusal other than "server unavailable"
        is raised at once: trying again would not help."""
        if self.sock is not None:
            return False
        deadline, delay = _deadline(timeout), 500
        while True:
            try:
                self.connect(self._timeout)
                return True
            except OSError:
                if self._refused not in (0, 3) or _ms_left(deadline) <= 0:
                    raise
            pause = delay + delay * (random.getrandbits(8) - 128) // 512  # +-25%
            time.sleep_ms(max(0, min(pause, _ms_left(deadline))))
            delay = min(delay * 2, 30000)

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

    def _connected(self):
        if self.sock is None:
            raise MQTTError("not connected to the broker (call ensure_connected)")

    # -- publish and subscribe -------------------------------------------------------------------

    def publish(self, topic, payload, qos=0, retain=False, timeout=60):
        """A small message held in memory; see publish_stream."""
        self.publish_stream(topic, len(payload), lambda write: write(payload), qos, retain, timeout)

    def publish_stream(self, topic, length, fill, qos=1, retain=False, timeout=60):
        """Publishes `length` bytes that `fill(write)` writes in pieces. QoS 1 blocks until PUBACK,
        handling incoming packets meanwhile; it may call fill again to resend after a reconnect,
        so fill must write the same bytes each time."""
        topic = _bytes(topic)
        if qos == 0:
            self._connected()
            return self._send_publish(0, topic, length, fill, 0, retain, 0)
        if qos != 1:
            raise ValueError("QoS must be 0 or 1")
        deadline, pid, dup = _deadline(timeout), self._next_pid(), 0
        try:
            while True:
                try:
                    if self.sock is None:
                        self.ensure_connected(None if deadline is None else _ms_left(deadline) / 1000)
                    self._unacked = pid
                    dup, first = 8, dup  # every later attempt is a redelivery
                    self._send_publish(pid, topic, length, fill, 1, retain, first)
                    while self._unacked:
                        if _ms_left(deadline) <= 0:
                            raise MQTTError("no PUBACK from the broker within %s s" % timeout)
                        self._poll(_ms_left(deadline))
                    return
                except OSError:
                    self._close()
                    if self._refused not in (0, 3) or _ms_left(deadline) <= 0:
                        raise
        finally:
            self._unacked = 0

    def _send_publish(self, pid, topic, length, fill, qos, retain, dup):
        n = 2 + len(topic) + (2 if qos else 0) + length
        if len(topic) > 0xFFFF or n > 0xFFFFFFF:
            raise ValueError("topic or payload too long for MQTT")
        try:
            i = self._header(_PUBLISH | dup | qos << 1 | (1 if retain else 0), n)
            self._buf[i], self._buf[i + 1] = len(topic) >> 8, len(topic) & 0xFF
            self._write(self._mv[:i + 2])
            self._write(topic)
            if qos:
                self._buf[0], self._buf[1] = pid >> 8, pid & 0xFF
                self._write(self._mv[:2])
            self._left = length
            fill(self._fill_write)
            if self._left:
                raise ValueError("fill wrote %d bytes of the %d announced" % (length - self._left, length))
        except BaseException:
            self._close()  # a packet cut short: the broker cannot read on
            raise

    def _fill_write(self, data):
        if len(data) > self._left:
            raise ValueError("fill wrote more bytes than the length announced")
        self._write(data)
        self._left -= len(data)

    def subscribe(self, topic, qos=1):
        """Subscribes and waits for SUBACK; the topic is renewed after reconnects that lost the session."""
        if qos not in (0, 1):
            raise ValueError("QoS must be 0 or 1")
        self._connected()
        self._subs[_bytes(topic)] = qos
        return self._subscribe(_bytes(topic), qos)

    def _subscribe(self, topic, qos):
        pid = self._sub_pid = self._next_pid()
        i = self._header(0x82, 5 + len(topic))
        self._buf[i:i + 4] = bytes((pid >> 8, pid & 0xFF, len(topic) >> 8, len(topic) & 0xFF))
        self._write(self._mv[:i + 4])
        self._write(topic)
        self._write(bytes((qos,)))
        deadline = _deadline(self._timeout)
        while self._sub_pid:
            if _ms_left(deadline) <= 0:
                self._close()
                raise MQTTError("no SUBACK from the broker within %s s" % self._timeout)
            self._poll(_ms_left(deadline))
        if self._sub_rc == 0x80:
            self._subs.pop(topic, None)
            raise MQTTError("broker refused the subscription to %s" % topic.decode())
        return self._sub_rc

    # -- receiving -------------------------------------------------------------------------------

    def check_msg(self):
        """Handles the packets that have arrived, without waiting; True if a PUBLISH was delivered."""
        self._connected()
        got = False
        while True:
            kind = self._poll(0)
            if kind is None:
                return got
            got = got or kind == _PUBLISH

    def wait_msg(self, timeout=None):
        """Waits up to `timeout` seconds (None: forever) until a PUBLISH was delivered; False if none."""
        self._connected()
        deadline = _deadline(timeout)
        while _ms_left(deadline) > 0:
            if self._poll(_ms_left(deadline)) == _PUBLISH:
                return True
        return False

    def _poll(self, ms):
        """Waits up to ms for one packet (less if a ping is due) and handles it; returns its type."""
        try:
            if self.keepalive:
                now, period = time.ticks_ms(), self.keepalive * 1000
                if self._ping_at:
                    waited = time.ticks_diff(now, self._ping_at)
                    if waited >= period:
                        raise MQTTError("no PINGRESP from the broker within %d s: connection lost" % self.keepalive)
                    ms = min(ms, period - waited)
                else:
                    idle = time.ticks_diff(now, self._last_tx)
                    if idle >= period // 2:
                        self._write(b"\xc0\x00")
                        self._ping_at = now or 1
                        ms = min(ms, period)
                    else:
                        ms = min(ms, period // 2 - idle)
            if not self._wait_byte(ms):
                return None
            return self._handle(self._buf[0])
        except BaseException:
            self._close()
            raise

    def _handle(self, first):
        n = self._read_length()
        kind = first & 0xF0
        if kind == _PUBLISH:
            self._deliver(first, n)
        elif kind in (_PUBACK, _SUBACK, _PINGRESP):
            want = 2 if kind == _PUBACK else 3 if kind == _SUBACK else 0
            if n != want:
                raise MQTTError("malformed packet: type 0x%02x with length %d, not %d" % (first, n, want))
            self._readinto(self._mv[:n])
            pid = self._buf[0] << 8 | self._buf[1]
            if kind == _PINGRESP:
                self._ping_at = 0
            elif kind == _PUBACK and pid == self._unacked:
                self._unacked = 0
            elif kind == _SUBACK and pid == self._sub_pid:
                self._sub_pid, self._sub_rc = 0, self._buf[2]
        else:
            raise MQTTError("malformed packet: unexpected type 0x%02x from the broker" % first)
        return kind

    def _deliver(self, first, n):
        qos = (first >> 1) & 3
        if qos > 1:
            raise MQTTError("broker sent a QoS %d PUBLISH; only QoS 0 and 1 are subscribed" % qos)
        self._readinto(self._mv[:2])
        head = 2 + (self._buf[0] << 8 | self._buf[1]) + 2 * qos
        if head > n:
            raise MQTTError("malformed packet: PUBLISH topic longer than the packet")
        if head - 2 - 2 * qos > _MAX_TOPIC:
            raise MQTTError("received topic longer than %d bytes" % _MAX_TOPIC)
        topic = bytearray(head - 2 - 2 * qos)
        self._readinto(memoryview(topic))
        if qos:
            self._readinto(self._mv[:2])
            pid = self._buf[0] << 8 | self._buf[1]
        reader = Reader(self, n - head)
        if self._cb is not None:
            self._cb(bytes(topic), reader, bool(first & 1))
        reader.skip()
        if qos:
            self._buf[0:4] = bytes((_PUBACK, 2, pid >> 8, pid & 0xFF))
            self._write(self._mv[:4])

    # -- bytes on the wire -----------------------------------------------------------------------

    def _next_pid(self):
        self._pid = self._pid % 0xFFFF + 1
        return self._pid

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

    def _read_length(self):
        n = 0
        for shift in (0, 7, 14, 21):
            self._readinto(self._mv[:1])
            n |= (self._buf[0] & 0x7F) << shift
            if not self._buf[0] & 0x80:
                return n
        raise MQTTError("malformed packet: remaining length > 4 bytes")

    def _settimeout(self, t):
        if t != self._tmo:
            self._raw.settimeout(t)
            self._tmo = t

    def _wait_byte(self, ms):
        """Reads a packet's first byte into self._buf[0] if one comes within ms."""
        deadline = _deadline(ms / 1000)
        while True:
            self._settimeout(0)
            try:
                n = self.sock.readinto(self._mv[:1])
            except OSError as e:
                n = _lost(e)
            if n == 0:
                raise MQTTError("connection closed by the broker")
            if n:
                return True
            if _ms_left(deadline) <= 0:
                return False
            self._poller.poll(_ms_left(deadline))  # TLS: readable may still be no whole record, so read again

    def _readinto(self, mv):
        self._settimeout(self._timeout)
        pos = 0
        while pos < len(mv):
            try:
                n = self.sock.readinto(mv[pos:])
            except OSError as e:
                n = _lost(e)
            if n is None:
                raise MQTTError("timed out in the middle of a packet from the broker")
            if n == 0:
                raise MQTTError("connection closed by the broker")
            pos += n

    def _write(self, data):
        self._settimeout(self._timeout)
        mv = memoryview(data)
        pos = 0
        while pos < len(mv):
            try:
                n = self.sock.write(mv[pos:])
            except OSError as e:
                n = _lost(e)
            if n is None:
                raise MQTTError("timed out writing to the broker")
            pos += n
        self._last_tx = time.ticks_ms()

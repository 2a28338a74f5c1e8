"""Connecting upet.mqtt's client: the CONNECT packet, TLS, reconnecting with backoff.

`MQTTClient.connect` and `ensure_connected` load this module through
`upet.transient` for the connect only, so its code is not in the heap while a
round runs; the client's own methods do the reads, writes and subscriptions.
"""

import random
import select
import socket
import time

from upet.mqtt import MQTTError, _deadline, _ms_left

_REFUSED = ("", "unacceptable protocol version", "identifier rejected", "server unavailable",
            "bad user name or password", "not authorised")


def connect(client, timeout):
    """MQTTClient.connect: one attempt; returns whether the broker still had our session."""
    client._close()
    client._timeout, client._refused = timeout, 0
    _, host, port, _, _, ssl_params, _, _ = client.settings
    try:
        _open(client, host, port, ssl_params, timeout)
        client._write(_connect_packet(client))
        client.session_present = _connack(client, timeout)
        client._ping_at = 0
        client.connects += 1
        if not client.session_present:  # the broker forgot our subscriptions
            for topic, qos in list(client._subs.items()):
                client.subscribe(topic, qos)
        return client.session_present
    except BaseException as e:
        client._close()
        if isinstance(e, OSError) and not isinstance(e, MQTTError):
            raise MQTTError("cannot connect to %s:%s: %s" % (host, port, e))
        raise


def _connack(client, timeout):
    """Reads the CONNACK; returns its session-present flag, or raises MQTTError if it refuses."""
    buf = client._buf
    if not client._readinto(buf[:1], int(timeout * 1000)):
        raise MQTTError("no CONNACK from the broker within %s s" % timeout)
    if buf[0] != 0x20:
        raise MQTTError("malformed packet: expected CONNACK (0x20), got 0x%02x" % buf[0])
    n = client._read_length()
    if n != 2:
        raise MQTTError("malformed packet: CONNACK of length %d, not 2" % n)
    client._readinto(buf[:2])
    rc = buf[1]
    if rc:
        client._refused = rc
        raise MQTTError("broker refused the connection: %s (%d)"
                        % (_REFUSED[rc] if rc < len(_REFUSED) else "unknown reason", rc))
    return bool(buf[0] & 1)


def _open(client, host, port, ssl_params, timeout):
    """The TCP connection (and TLS over it) with its poller. Apart from connect, as each
    function's code is one piece of heap, which a heap in small pieces must find."""
    ai = socket.getaddrinfo(host, port)[0]
    client.sock = client._raw = socket.socket(ai[0], socket.SOCK_STREAM)
    client._raw.settimeout(timeout)
    client._raw.connect(ai[-1])
    try:  # IPPROTO_TCP, TCP_NODELAY: the pieces of a packet are not held back
        client._raw.setsockopt(6, 1, 1)
    except (OSError, ValueError, TypeError):
        pass
    if ssl_params is not None:
        client.sock = _wrap_tls(client, ssl_params)
    client._poller = select.poll()  # waits for the first byte of a packet
    client._poller.register(client.sock, select.POLLIN)


def ensure_connected(client, timeout):
    """MQTTClient.ensure_connected once the connection is closed: connects, retrying with backoff
    (0.5 s doubling to 30 s, +-25% jitter) for up to `timeout` seconds (None: forever)."""
    deadline, delay = _deadline(timeout), 500
    while True:
        try:
            connect(client, client._timeout)
            return True
        except OSError:
            if client._refused not in (0, 3) or _ms_left(deadline) <= 0:
                raise
        pause = delay + delay * (random.getrandbits(8) - 128) // 512  # +-25%
        time.sleep_ms(max(0, min(pause, _ms_left(deadline))))
        delay = min(delay * 2, 30000)


def _wrap_tls(client, ssl_params):
    import ssl
    params = dict(ssl_params)
    if "cadata" in params:  # a CA given means: check the broker against it
        params.setdefault("cert_reqs", ssl.CERT_REQUIRED)
    try:
        return ssl.wrap_socket(client._raw, **params)
    except (OSError, ValueError) as e:  # mbedtls reports a bad certificate as ValueError
        raise MQTTError("TLS handshake with the broker failed: %s" % str(e).strip())


def _field(s):
    s = s.encode() if isinstance(s, str) else s
    return bytes((len(s) >> 8, len(s) & 0xFF)) + s


def _connect_packet(client):
    client_id, _, _, user, password, _, clean_session, will = client.settings
    flags = 2 if clean_session else 0
    payload = _field(client_id)
    if will:
        topic, msg, retain, qos = will
        flags |= 4 | qos << 3 | (0x20 if retain else 0)
        payload += _field(topic) + _field(msg)
    if user is not None:
        flags |= 0x80
        payload += _field(user)
        if password is not None:
            flags |= 0x40
            payload += _field(password)
    body = b"\x00\x04MQTT\x04" + bytes((flags, client.keepalive >> 8, client.keepalive & 0xFF)) + payload
    return bytes(client._buf[:client._header(0x10, len(body))]) + body

"""crypto_box and crypto_secretbox as libsodium lays them out: XSalsa20-Poly1305, the 16-byte tag in front.

The one-time Poly1305 key is the first 32 bytes of the XSalsa20 keystream;
the message is XORed with the keystream from byte 32 on. The `_into`
functions work in place on a caller's buffer, so a message costs no second
copy of itself.
"""

from upet.poly1305 import Poly1305, equal
from upet.salsa import XSalsa20, hsalsa20

KEYBYTES = 32
NONCEBYTES = 24
MACBYTES = 16
_ZERO16 = bytes(16)


def beforenm(shared):
    """crypto_box_beforenm: the secretbox key for an X25519 shared secret (HSalsa20, zero nonce)."""
    return hsalsa20(shared, _ZERO16)


def _start(key, nonce):
    """The keystream positioned at the message, and the MAC keyed with the keystream's first 32 bytes."""
    if len(key) != KEYBYTES or len(nonce) != NONCEBYTES:
        raise ValueError("secretbox needs a 32-byte key and a 24-byte nonce")
    stream = XSalsa20(key, nonce)
    otk = bytearray(32)
    stream.xor(otk)
    return stream, Poly1305(otk)


def seal_into(buf, off, n, nonce, key):
    """crypto_secretbox_easy in place: the n message bytes at buf[off+16:] become ciphertext.

    The tag goes to buf[off:off+16].
    """
    stream, mac = _start(key, nonce)
    stream.xor(buf, off + MACBYTES, n)
    mac.update(buf, off + MACBYTES, n)
    buf[off:off + MACBYTES] = mac.digest()


def open_into(buf, off, n, nonce, key):
    """crypto_secretbox_open_easy in place on the box buf[off:off+16+n]: the plaintext replaces the n ciphertext bytes.

    Raises ValueError, leaving the buffer as it was, when the tag does not match.
    """
    stream, mac = _start(key, nonce)
    mac.update(buf, off + MACBYTES, n)
    if not equal(mac.digest(), memoryview(buf)[off:off + MACBYTES]):
        raise ValueError("box does not authenticate: wrong key or altered bytes")
    stream.xor(buf, off + MACBYTES, n)


def secretbox(msg, nonce, key):
    """crypto_secretbox_easy: tag (16) || ciphertext."""
    out = bytearray(MACBYTES + len(msg))
    out[MACBYTES:] = msg
    seal_into(out, 0, len(msg), nonce, key)
    return bytes(out)


def secretbox_open(box, nonce, key, off=0):
    """crypto_secretbox_open_easy of box[off:]: the plaintext, or ValueError when it is short or does not authenticate.

    The tag is checked on `box` itself, so only the plaintext is allocated.
    """
    n = len(box) - off - MACBYTES
    if n < 0:
        raise ValueError("box must be at least 16 bytes, got %d" % (len(box) - off))
    stream, mac = _start(key, nonce)
    mac.update(box, off + MACBYTES, n)
    if not equal(mac.digest(), memoryview(box)[off:off + MACBYTES]):
        raise ValueError("box does not authenticate: wrong key or altered bytes")
    out = bytearray(memoryview(box)[off + MACBYTES:])
    stream.xor(out)
    return bytes(out)

"""HSalsa20 and the XSalsa20 stream: the cipher half of libsodium's crypto_box.

The keystream kernel (upet/native/salsa.py or its Python fallback) works on a
128-byte state: the 16-word Salsa20 input (constants, key, nonce, 64-bit block
counter, little-endian words), then one block of keystream. The kernel reads
and writes those words through ptr32, in the byte order of the board; all the
supported ones (x64, Xtensa, ARM, RISC-V) are little-endian.
"""

import struct

from upet import kernels

_k = kernels.load("salsa")
_M = 0xFFFFFFFF
_SIGMA = (0x61707865, 0x3320646E, 0x79622D32, 0x6B206574)  # "expand 32-byte k"


def _state(key, nonce16):
    """The Salsa20 input for `key` with words 6..9 (nonce and counter) set to `nonce16`."""
    s = bytearray(128)
    struct.pack_into("<I", s, 0, _SIGMA[0])
    s[4:20] = key[0:16]
    struct.pack_into("<I", s, 20, _SIGMA[1])
    s[24:40] = nonce16
    struct.pack_into("<I", s, 40, _SIGMA[2])
    s[44:60] = key[16:32]
    struct.pack_into("<I", s, 60, _SIGMA[3])
    return s


def hsalsa20(key, nonce16):
    """HSalsa20: words 0, 5, 10, 15, 6, 7, 8, 9 of the Salsa20 rounds, without the final addition.

    The kernel adds the input back (as a stream block does), so it is
    subtracted again here; the input words there are the constants and the nonce.
    """
    s = _state(key, nonce16)
    z = bytearray(64)
    _k.xor(s, z, 0, 64, 0)  # XOR onto zeros: the block itself
    z = struct.unpack("<16I", z)
    n = struct.unpack("<4I", nonce16)
    return struct.pack("<8I", (z[0] - _SIGMA[0]) & _M, (z[5] - _SIGMA[1]) & _M, (z[10] - _SIGMA[2]) & _M,
                       (z[15] - _SIGMA[3]) & _M, (z[6] - n[0]) & _M, (z[7] - n[1]) & _M,
                       (z[8] - n[2]) & _M, (z[9] - n[3]) & _M)


class XSalsa20:
    """The XSalsa20 keystream for a 32-byte key and 24-byte nonce, applied in place piece by piece.

    Successive `xor` calls continue where the last one stopped, so a long
    message can be processed in chunks of any size.
    """

    def __init__(self, key, nonce24):
        if len(key) != 32 or len(nonce24) != 24:
            raise ValueError("XSalsa20 needs a 32-byte key and a 24-byte nonce")
        s = _state(hsalsa20(key, nonce24[:16]), bytes(nonce24[16:24]) + bytes(8))
        self._s = s
        self._pos = 0

    def xor(self, buf, off=0, n=-1):
        """XOR buf[off:off+n] (default: to the end) with the next n keystream bytes; buf must be writable."""
        if n < 0:
            n = len(buf) - off
        if off < 0 or off + n > len(buf):
            raise ValueError("range outside the buffer")
        _k.xor(self._s, buf, off, n, self._pos)
        self._pos = (self._pos + n) & 63

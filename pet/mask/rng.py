"""ChaCha20Rng as rand_chacha 0.3 draws from it, over OpenSSL's ChaCha20.

The keystream is djb's ChaCha20 (20 rounds) keyed by the 32-byte seed, with a
64-bit block counter from 0 and a zero 64-bit stream id. rand_core hands it out
in 32-bit words: a request for n bytes takes ceil(n/4) whole words and keeps
their first n little-endian bytes. Reading a word range is stateless (the
block counter is the first half of OpenSSL's 16-byte IV), so bulk draws take
exactly the words they need.
"""

from __future__ import annotations

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

_BLOCK_WORDS = 16
_BUFFER_BLOCKS = 64


def keystream_words(seed: bytes, start: int, count: int) -> np.ndarray:
    """Keystream words [start, start + count) as little-endian uint32."""
    if count <= 0:
        return np.empty(0, dtype="<u4")
    block, skip = divmod(start, _BLOCK_WORDS)
    nblocks = (skip + count + _BLOCK_WORDS - 1) // _BLOCK_WORDS
    # OpenSSL's counter is 32 bits wide; rand_chacha's is 64: split at the carry.
    first = min(nblocks, (1 << 32) - (block & 0xFFFFFFFF))
    stream = _blocks(seed, block, first)
    if first < nblocks:
        stream += _blocks(seed, block + first, nblocks - first)
    return np.frombuffer(stream, dtype="<u4")[skip:skip + count]


def _blocks(seed: bytes, block: int, nblocks: int) -> bytes:
    iv = block.to_bytes(8, "little") + bytes(8)
    return Cipher(algorithms.ChaCha20(seed, iv), mode=None).encryptor().update(bytes(64 * nblocks))


class ChaCha20Rng:
    """rand_chacha's ChaCha20Rng: sequential word draws from a 32-byte seed."""

    def __init__(self, seed: bytes):
        if len(seed) != 32:
            raise ValueError(f"ChaCha20Rng seed must be 32 bytes, got {len(seed)}")
        self.seed = bytes(seed)
        self.word_pos = 0  # index of the next unread keystream word
        self._buf_start = 0
        self._buf = np.empty(0, dtype="<u4")

    def take_words(self, count: int) -> np.ndarray:
        """The next `count` keystream words."""
        start = self.word_pos
        self.word_pos += count
        end = start - self._buf_start
        if 0 <= end and end + count <= len(self._buf):
            return self._buf[end:end + count]
        if count >= _BUFFER_BLOCKS * _BLOCK_WORDS:
            return keystream_words(self.seed, start, count)
        self._buf_start = start
        self._buf = keystream_words(self.seed, start, _BUFFER_BLOCKS * _BLOCK_WORDS)
        return self._buf[:count]

    def fill_bytes(self, n: int) -> bytes:
        """n bytes, consuming ceil(n/4) whole words as rand_core 0.6 does."""
        return self.take_words((n + 3) // 4).tobytes()[:n]

    def next_u32(self) -> int:
        return int(self.take_words(1)[0])

    def generate_integer(self, max_value: int) -> int:
        """Uniform in [0, max_value) by rejection, drawing len(max_value as LE bytes) bytes."""
        if max_value <= 0:
            return 0
        n = (max_value.bit_length() + 7) // 8
        while True:
            r = int.from_bytes(self.fill_bytes(n), "little")
            if r < max_value:
                return r

    def generate_integers(self, max_value: int, count: int) -> np.ndarray | list[int]:
        """`count` draws of generate_integer(max_value) at once.

        For max_value <= 2^63 the result is a uint64 array built without a Python
        loop per element; larger orders give a list of Python integers.
        """
        if count == 0:
            return np.empty(0, dtype=np.uint64) if max_value <= 1 << 63 else []
        if max_value > 1 << 63:
            return [self.generate_integer(max_value) for _ in range(count)]
        n = (max_value.bit_length() + 7) // 8
        per_draw = (n + 3) // 4
        mask = np.uint64((1 << (8 * n)) - 1)
        accept = max_value / float(1 << (8 * n))
        out = np.empty(count, dtype=np.uint64)
        filled = 0
        while filled < count:
            want = count - filled
            draws = int(want / accept * 1.02) + 16
            words = self.take_words(draws * per_draw)
            if per_draw == 1:
                cand = words.astype(np.uint64)
            else:  # two little-endian words are one little-endian u64
                cand = np.ascontiguousarray(words).view("<u8").astype(np.uint64)
            cand &= mask
            hits = np.flatnonzero(cand < np.uint64(max_value))
            if len(hits) > want:
                # Give back the words after the last draw used.
                last = int(hits[want - 1])
                self.word_pos -= (draws - last - 1) * per_draw
                hits = hits[:want]
            out[filled:filled + len(hits)] = cand[hits]
            filled += len(hits)
        return out

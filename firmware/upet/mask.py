"""Masking on the device (MCU profile): float32 weights in, masked words out, block by block.

A mask seed keys ChaCha20 as rand_chacha's ChaCha20Rng does (64-bit block
counter from 0, zero stream id, little-endian words). The scalar's mask is
drawn first, then one word per weight (W32) or two, low word first (W64).
Weights become fixed point from their float32 bits alone (upet.native.chacha),
so every board produces pet.mask's bytes. Memory: a 164-byte context per mask
seed plus the caller's buffers; nothing grows with the model.

This is what a participant needs; whole MaskObjects, iterables of floats and
unaligned buffers are upet.mask_objects' (tests, benchmarks, tools), and a sum
participant's MaskAggregator is upet.seeds'.
XayNet's own mask configs (rejection sampling, 6-16 byte numbers) are not
supported here: the coordinator must offer an MCU-profile config.
"""

import struct
from array import array

from micropython import const

from upet import transient

# Context: array('I') shared with the chacha kernels. Words 0-15 are the ChaCha20
# state (constant, key, block counter, stream id), 16-31 the current block.
_CTX_WORDS = const(41)
_POS = const(32)  # next unused word of the block in ctx[16:32]; 16: none left
_SH = const(33)  # scalar mantissa (24 bits with the leading one), high 12 bits
_SL = const(34)  # ... low 12 bits
_ES = const(35)  # scalar exponent + 1024: s = mantissa * 2^(exponent - 23)
_F = const(36)  # fraction bits f
_B = const(37)  # bound exponent b
_OFFL = const(38)  # offset B * 2^f, low and high word
_OFFH = const(39)
_WIDE = const(40)  # 1 for W64

chacha = transient("kernels", "load", "chacha")  # the kernel set (upet/native/chacha.py)


class MaskConfig:
    """A 4-byte MCU-profile mask config: group 3 (W32) or 4 (W64), data 0 (F32), b, m."""

    def __init__(self, raw):
        raw = bytes(raw)
        if len(raw) != 4:
            raise ValueError("mask config: expected 4 bytes, got %d" % len(raw))
        group, data, b, m = raw
        bits = 32 if group == 3 else 64
        if group not in (3, 4) or data or b + m > bits - 2:
            raise ValueError("mask config: group_type %d, data_type %d, bound_type %d, model_type %d is not "
                             "an MCU-profile config (the device takes no XayNet configs)" % (group, data, b, m))
        self.raw = raw
        self.bits = bits
        self.bound_exp = b
        self.model_exp = m
        self.frac_bits = bits - 1 - b - m
        self.word_bytes = bits // 8
        self.max_models = 1 << m
        self.offset = 1 << (bits - 1 - m)  # B * 2^f
        self.cap = (1 << (bits - m)) - 1

    def number(self, value):
        """A number as the wire has it: word_bytes bytes, little-endian."""
        return value.to_bytes(self.word_bytes, "little")


def context(seed, config, unit_config):
    """(context, the scalar's mask): ChaCha20 keyed by the mask seed, set up for the config's
    weights, after the scalar's mask (one element of the unit config) has been drawn."""
    if len(seed) != 32:
        raise ValueError("mask seed must be 32 bytes, got %d" % len(seed))
    # the state as little-endian words (every board is little-endian); counter and stream id 0.
    # Made in place, as the context is the only piece of its size a heap in small pieces must find.
    ctx = array("I", range(_CTX_WORDS))
    ctx[0], ctx[1], ctx[2], ctx[3] = 0x61707865, 0x3320646E, 0x79622D32, 0x6B206574  # "expand 32-byte k"
    ctx[4:12] = array("I", seed)
    for i in range(12, _CTX_WORDS):
        ctx[i] = 0
    ctx[_POS] = 16
    ctx[_F] = config.frac_bits
    ctx[_B] = config.bound_exp
    ctx[_OFFL] = config.offset & 0xFFFFFFFF
    ctx[_OFFH] = config.offset >> 32
    ctx[_WIDE] = 1 if config.bits == 64 else 0
    buf = array("I", bytes(8))
    chacha.words(ctx, buf, unit_config.word_bytes // 4)
    return ctx, buf[0] | (buf[1] << 32)


class Masker:
    """Masks one model with one mask seed and scalar, in as many pieces as the caller likes.

    `unit` is the masked scalar (its mask is drawn first); each mask_into call
    continues the mask stream where the previous one stopped.
    """

    def __init__(self, config, seed, scalar, unit_config=None):
        self.config = config
        self.unit_config = uc = unit_config or config
        s = float(scalar)
        if not 0 <= s < float("inf"):
            raise ValueError("scalar must be finite and non-negative, got %r" % (scalar,))
        # clamped to the bound and rounded to float32 as pet.mask.clamp_scalar: s = mant * 2^(ex - 23)
        u = struct.unpack("<I", struct.pack("<f", min(s, float(1 << uc.bound_exp))))[0] & 0x7FFFFFFF
        mant = u & 0x7FFFFF
        ex = (u >> 23) - 127
        if u >> 23:
            mant |= 0x800000
        else:  # subnormal
            ex = -126
            while mant and not mant & 0x800000:
                mant <<= 1
                ex -= 1
        k = ex - 23 + uc.frac_bits
        value = min(uc.offset + (mant << k if k >= 0 else mant >> -k), uc.cap)
        ctx, unit_mask = context(seed, config, uc)
        self._ctx = ctx
        self.unit = (value + unit_mask) & ((1 << uc.bits) - 1)
        if not mant:  # zero scalar: every product is zero
            mant, ex = 0x800000, -1000
        ctx[_SH] = mant >> 12
        ctx[_SL] = mant & 0xFFF
        ctx[_ES] = ex + 1024
        self.count = 0  # weights masked so far

    def unit_bytes(self):
        """The MaskUnit: unit config, then the masked scalar."""
        return self.unit_config.raw + self.unit_config.number(self.unit)

    def mask_into(self, weights, out, offset=0):
        """Masks weights (array('f'), or float32 little-endian bytes) into out[offset:].

        Returns the bytes written. Both buffers must start on a 4-byte boundary
        (the boards' 32-bit loads fault otherwise). NaN or infinity raises
        ValueError and spends the Masker (the words before it are written).
        """
        src = memoryview(weights)
        n = len(src)
        if not (isinstance(weights, array) or n and isinstance(src[0], float)):  # bytes
            if n % 4:
                raise ValueError("weights: %d bytes is not a whole number of float32" % n)
            n //= 4
        size = n * self.config.word_bytes
        if offset < 0 or offset + size > len(out):
            raise ValueError("mask_into: %d bytes do not fit at offset %d of %d" % (size, offset, len(out)))
        dst = memoryview(out)[offset:offset + size]
        if not (chacha.aligned(src) and chacha.aligned(dst)):
            raise ValueError("mask_into: weights and out must start on a 4-byte boundary")
        if self._ctx:
            done = chacha.mask(self._ctx, src, dst, n)
            self.count += done
            if done == n:
                return size
            self._ctx = None
        raise ValueError("weight %d is NaN or infinity: this Masker cannot go on" % self.count)


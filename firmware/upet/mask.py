"""Masking on the device (MCU profile): float32 weights in, masked words out, block by block.

A mask seed keys ChaCha20 as rand_chacha's ChaCha20Rng does (64-bit block
counter from 0, zero stream id, little-endian words). The scalar's mask is
drawn first, then one word per weight (W32) or two, low word first (W64).
Weights become fixed point from their float32 bits alone (upet.native.chacha),
so every board produces pet.mask's bytes. Memory: a 164-byte context per mask
seed plus the caller's buffers; nothing grows with the model.

XayNet's own mask configs (rejection sampling, 6-16 byte numbers) are not
supported here: the coordinator must offer an MCU-profile config.
"""

import struct
from array import array

from micropython import const

from upet import kernels

# Context: array('I') shared with the chacha kernels.
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

_SIGMA = (0x61707865, 0x3320646E, 0x79622D32, 0x6B206574)
_XAYNET = ("Integer", "Prime", "Power2")
_CHUNK = const(64)  # weights per piece when buffers must be copied
_BUFFERS = (array, bytes, bytearray, memoryview)


class MaskConfig:
    """A 4-byte MCU-profile mask config: group 3 (W32) or 4 (W64), data 0 (F32), b, m."""

    def __init__(self, raw):
        raw = bytes(raw)
        if len(raw) != 4:
            raise ValueError("mask config: expected 4 bytes, got %d" % len(raw))
        group, data, b, m = raw[0], raw[1], raw[2], raw[3]
        if group < 3:
            raise ValueError("mask config: group_type %d is XayNet's %s, not supported on the device: "
                             "use the MCU profile (group_type 3 = W32, 4 = W64)" % (group, _XAYNET[group]))
        if group > 4:
            raise ValueError("mask config: unknown group_type %d" % group)
        if data:
            raise ValueError("mask config: data_type %d; the MCU profile masks F32 (0) only" % data)
        bits = 32 if group == 3 else 64
        if b + m > bits - 2:
            raise ValueError("mask config: bound_type %d plus model_type %d exceed %d for W%d"
                             % (b, m, bits - 2, bits))
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


def _config(config):
    return config if isinstance(config, MaskConfig) else MaskConfig(config)


def _float32(x):
    """x rounded to float32 as (mantissa, exponent), x = mantissa * 2^(exponent - 23)."""
    u = struct.unpack("<I", struct.pack("<f", x))[0] & 0x7FFFFFFF
    mant = u & 0x7FFFFF
    if u >> 23:
        return mant | 0x800000, (u >> 23) - 127
    ex = -126
    while mant and not mant & 0x800000:
        mant <<= 1
        ex -= 1
    return mant, ex


def _scalar(scalar, config):
    """The scalar clamped to the bound and rounded to float32, as pet.mask.clamp_scalar."""
    s = float(scalar)
    if not 0 <= s < float("inf"):
        raise ValueError("scalar must be finite and non-negative, got %r" % (scalar,))
    return _float32(min(s, float(1 << config.bound_exp)))


def _context(seed, config):
    """A ChaCha20 context keyed by the mask seed, set up for the config's weights."""
    if len(seed) != 32:
        raise ValueError("mask seed must be 32 bytes, got %d" % len(seed))
    ctx = array("I", bytes(4 * _CTX_WORDS))
    key = struct.unpack("<8I", seed)
    for i in range(4):
        ctx[i] = _SIGMA[i]
    for i in range(8):
        ctx[4 + i] = key[i]
    ctx[_POS] = 16
    ctx[_F] = config.frac_bits
    ctx[_B] = config.bound_exp
    ctx[_OFFL] = config.offset & 0xFFFFFFFF
    ctx[_OFFH] = config.offset >> 32
    ctx[_WIDE] = 1 if config.bits == 64 else 0
    return ctx


def _draw(ctx, config):
    """One mask element for the config, as an int."""
    buf = array("I", bytes(8))
    kernels.load("chacha").words(ctx, buf, config.word_bytes // 4)
    return buf[0] | (buf[1] << 32)


def _weights(weights):
    """(buffer, count, step): step is 1 when the buffer indexes floats, 4 when it indexes bytes."""
    mv = memoryview(weights)
    if isinstance(weights, array) or len(mv) and isinstance(mv[0], float):
        return mv, len(mv), 1
    if len(mv) % 4:
        raise ValueError("weights: %d bytes is not a whole number of float32" % len(mv))
    return mv, len(mv) // 4, 4


class Masker:
    """Masks one model with one mask seed and scalar, in as many pieces as the caller likes.

    unit() is the masked scalar (its mask is drawn first); each mask_into or
    mask_to call continues the mask stream where the previous one stopped.
    """

    def __init__(self, config, seed, scalar, unit_config=None):
        self.config = _config(config)
        self.unit_config = _config(unit_config) if unit_config else self.config
        uc = self.unit_config
        mant, ex = _scalar(scalar, uc)
        k = ex - 23 + uc.frac_bits
        value = min(uc.offset + (mant << k if k >= 0 else mant >> -k), uc.cap)
        self._ctx = ctx = _context(seed, self.config)
        self._unit = (value + _draw(ctx, uc)) & ((1 << uc.bits) - 1)
        if not mant:  # zero scalar: every product is zero
            mant, ex = 0x800000, -1000
        ctx[_SH] = mant >> 12
        ctx[_SL] = mant & 0xFFF
        ctx[_ES] = ex + 1024
        self.count = 0  # weights masked so far
        self._k = kernels.load("chacha")

    def unit(self):
        """The masked scalar, an int below the unit config's order."""
        return self._unit

    def unit_bytes(self):
        """The MaskUnit: unit config, then the masked scalar."""
        return self.unit_config.raw + self.unit_config.number(self._unit)

    def mask_into(self, weights, out, offset=0):
        """Masks weights (array('f'), or float32 little-endian bytes) into out[offset:].

        Returns the bytes written. NaN or infinity raises ValueError and spends
        the Masker (the words before it are written).
        """
        src, n, step = _weights(weights)
        size = n * self.config.word_bytes
        if offset < 0 or offset + size > len(out):
            raise ValueError("mask_into: %d bytes do not fit at offset %d of %d" % (size, offset, len(out)))
        dst = memoryview(out)[offset:offset + size]
        ok_src = self._k.aligned(src)
        ok_dst = self._k.aligned(dst)
        if ok_src and ok_dst:
            self._mask(src, dst, n)
            return size
        # Unaligned buffers (ptr32 would fault on the boards): copy through aligned scratch.
        wb = self.config.word_bytes
        tmp_in = None if ok_src else bytearray(4 * _CHUNK)
        tmp_out = None if ok_dst else bytearray(wb * _CHUNK)
        for i in range(0, n, _CHUNK):
            m = min(_CHUNK, n - i)
            piece = src[i * step:(i + m) * step]
            if tmp_in is not None:
                tmp_in[:4 * m] = piece
                piece = tmp_in
            self._mask(piece, dst[i * wb:(i + m) * wb] if tmp_out is None else tmp_out, m)
            if tmp_out is not None:
                dst[i * wb:(i + m) * wb] = memoryview(tmp_out)[:m * wb]
        return size

    def _mask(self, src, dst, n):
        if self._ctx is None:
            raise ValueError("this Masker met a NaN or infinity and cannot go on")
        done = self._k.mask(self._ctx, src, dst, n)
        if done < n:
            self._ctx = None
            raise ValueError("weight %d is NaN or infinity: it cannot be masked" % (self.count + done))
        self.count += n

    def mask_to(self, writer, weights, block=_CHUNK):
        """Masks weights block by block into writer.write(); returns how many were masked.

        weights: array('f'), float32 little-endian bytes, or any iterable of floats.
        """
        wb = self.config.word_bytes
        out = bytearray(block * wb)
        done = 0
        if isinstance(weights, _BUFFERS):
            src, n, step = _weights(weights)
            direct = self._k.aligned(src)
            while done < n:
                m = min(block, n - done)
                piece = src[done * step:(done + m) * step]
                if direct:
                    self._mask(piece, out, m)
                else:
                    self.mask_into(piece, out)
                writer.write(out if m == block else memoryview(out)[:m * wb])
                done += m
            return done
        buf = array("f", bytes(4 * block))
        it = iter(weights)
        while True:
            m = 0
            for w in it:
                buf[m] = w
                m += 1
                if m == block:
                    break
            if not m:
                return done
            self.mask_into(buf if m == block else memoryview(buf)[:m], out)
            writer.write(out if m == block else memoryview(out)[:m * wb])
            done += m

    def write_object(self, writer, weights, count=None, block=_CHUNK):
        """Writes the whole masked model as a MaskObject; count is needed for a bare iterator."""
        if count is None:
            count = _weights(weights)[1] if isinstance(weights, _BUFFERS) else len(weights)
        writer.write(self.config.raw + struct.pack(">I", count))
        done = self.mask_to(writer, weights, block)
        if done != count:
            raise ValueError("write_object: %d weights masked, the header says %d" % (done, count))
        writer.write(self.unit_bytes())


def mask_object(config, seed, scalar, weights, unit_config=None):
    """The MaskObject bytes of a masked model held in memory at once (small models, tests)."""
    masker = Masker(config, seed, scalar, unit_config)
    n = _weights(weights)[1]
    out = bytearray(8 + n * masker.config.word_bytes)
    out[:8] = masker.config.raw + struct.pack(">I", n)
    masker.mask_into(weights, out, 8)
    return bytes(out) + masker.unit_bytes()


def derive_mask_into(config, seed, out, length, unit_config=None):
    """Writes the mask of `length` weights into out (little-endian words); returns the scalar's mask."""
    config = _config(config)
    unit_config = _config(unit_config) if unit_config else config
    ctx = _context(seed, config)
    unit = _draw(ctx, unit_config)
    k = kernels.load("chacha")
    size = length * config.word_bytes
    if len(out) < size or not k.aligned(out):
        raise ValueError("derive_mask_into: out needs %d bytes, 4-byte aligned" % size)
    k.words(ctx, out, size // 4)
    return unit


class MaskAggregator:
    """A sum participant's global mask: the masks of many seeds added in place.

    Elements add mod 2^32 (W32) or 2^64 (W64, carried between the halves);
    memory is the length * word_bytes bytes of the sum itself.
    """

    def __init__(self, config, length, unit_config=None):
        self.config = _config(config)
        self.unit_config = _config(unit_config) if unit_config else self.config
        self.length = length
        self.words = bytearray(length * self.config.word_bytes)
        self.unit = 0
        self.count = 0

    def add_seed(self, seed):
        limit = min(self.config.max_models, self.unit_config.max_models)
        if self.count >= limit:
            raise ValueError("the mask config aggregates at most %d models" % limit)
        ctx = _context(seed, self.config)
        self.unit = (self.unit + _draw(ctx, self.unit_config)) & ((1 << self.unit_config.bits) - 1)
        kernels.load("chacha").add(ctx, self.words, self.length)
        self.count += 1

    def write_to(self, writer):
        """Writes the MaskObject in three pieces: header, words, unit."""
        writer.write(self.config.raw + struct.pack(">I", self.length))
        writer.write(self.words)
        writer.write(self.unit_config.raw + self.unit_config.number(self.unit))

    def to_bytes(self):
        return (self.config.raw + struct.pack(">I", self.length) + self.words
                + self.unit_config.raw + self.unit_config.number(self.unit))

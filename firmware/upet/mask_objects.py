"""Whole MaskObjects and bare masks from upet.mask, for tests, benchmarks and tools.

A participant streams with upet.mask alone (aligned buffers, its own MaskObject
framing); this module adds what others need and keeps it out of the
participant's heap: masking from any buffer (aligned or not) or any iterable of
floats, block by block into a writer; the MaskObject of a masked model or of a
global mask (config | count | words | config | unit); a seed's bare mask.
mask_object and derive_mask_into take configs as MaskConfigs or their 4 raw bytes.
"""

import struct
from array import array

from micropython import const

from upet.mask import MaskConfig, Masker, chacha, context

_CHUNK = const(64)  # weights per block
_BUFFERS = (array, bytes, bytearray, memoryview)


def _config(config):
    return config if isinstance(config, MaskConfig) else MaskConfig(config)


def _weights(weights):
    """(buffer, count, step): step is 1 when the buffer indexes floats, 4 when it indexes bytes."""
    mv = memoryview(weights)
    if isinstance(weights, array) or len(mv) and isinstance(mv[0], float):
        return mv, len(mv), 1
    if len(mv) % 4:
        raise ValueError("weights: %d bytes is not a whole number of float32" % len(mv))
    return mv, len(mv) // 4, 4


def mask_to(masker, writer, weights, block=_CHUNK):
    """Masks weights block by block into writer.write(); returns how many were masked.

    weights: array('f'), float32 little-endian bytes (aligned or not: unaligned
    bytes are copied block by block), or any iterable of floats.
    """
    wb = masker.config.word_bytes
    out = bytearray(block * wb)
    done = 0
    if isinstance(weights, _BUFFERS):
        src, n, step = _weights(weights)
        tmp = None if chacha.aligned(src) else bytearray(4 * block)
        while done < n:
            m = min(block, n - done)
            piece = src[done * step:(done + m) * step]
            if tmp is not None:
                tmp[:4 * m] = piece
                piece = memoryview(tmp)[:4 * m]
            masker.mask_into(piece, out)
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
        masker.mask_into(buf if m == block else memoryview(buf)[:m], out)
        writer.write(out if m == block else memoryview(out)[:m * wb])
        done += m


def write_object(masker, writer, weights, count=None, block=_CHUNK):
    """Writes the whole masked model as a MaskObject; count is needed for a bare iterator."""
    if count is None:
        count = _weights(weights)[1] if isinstance(weights, _BUFFERS) else len(weights)
    writer.write(masker.config.raw + struct.pack(">I", count))
    done = mask_to(masker, writer, weights, block)
    if done != count:
        raise ValueError("write_object: %d weights masked, the header says %d" % (done, count))
    writer.write(masker.unit_bytes())


def mask_object(config, seed, scalar, weights, unit_config=None):
    """The MaskObject bytes of a masked model held in memory at once (small models, tests)."""
    m = Masker(_config(config), seed, scalar, _config(unit_config) if unit_config else None)
    src, n, _ = _weights(weights)
    if not chacha.aligned(src):
        weights = bytes(src)  # the copy starts on a heap block
    out = bytearray(8 + n * m.config.word_bytes)
    out[:8] = m.config.raw + struct.pack(">I", n)
    m.mask_into(weights, out, 8)
    return bytes(out) + m.unit_bytes()


def derive_mask_into(config, seed, out, length, unit_config=None):
    """Writes the mask of `length` weights into out (little-endian words); returns the scalar's mask."""
    config = _config(config)
    ctx, unit = context(seed, config, _config(unit_config) if unit_config else config)
    size = length * config.word_bytes
    if len(out) < size or not chacha.aligned(out):
        raise ValueError("derive_mask_into: out needs %d bytes, 4-byte aligned" % size)
    chacha.words(ctx, out, size // 4)
    return unit


def global_mask(aggregator):
    """The MaskObject bytes of a upet.seeds.MaskAggregator's global mask (what Sum2 carries)."""
    a = aggregator
    return (a.config.raw + struct.pack(">I", a.length) + a.words
            + a.unit_config.raw + a.unit_config.number(a.unit))

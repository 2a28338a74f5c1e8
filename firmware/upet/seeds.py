"""A sum participant's seed column (loaded through upet.transient while it arrives): each
mask seed opened with the round's ephemeral key and its mask added to the global mask.

Opening a sealed box (seal_open_into) and MaskAggregator live here, not in upet.box and
upet.mask, so that their code is in the heap only while a column is read; upet.crypto,
upet.mask_objects and the tests use them too.
"""

import struct
import uctypes

from upet.box import blake2b, box_into
from upet.mask import chacha, context
from upet.x25519 import x25519_base


def seal_open_into(buf, pk, sk):
    """crypto_box_seal_open in place: buf[48:] becomes the plaintext.

    Raises ValueError, leaving the buffer unchanged, if the box is short or
    does not open with the key pair (pk, sk).
    """
    if len(pk) != 32 or len(sk) != 32 or len(buf) < 48:
        raise ValueError("keys are 32 bytes, a sealed box at least 48")
    eph_pk = bytes(buf[0:32])
    box_into(buf, sk, eph_pk, blake2b(eph_pk + bytes(pk), 24), True)


class MaskAggregator:
    """A sum participant's global mask: the masks of many seeds added in place.

    Elements add mod 2^32 (W32) or 2^64 (W64, carried between the halves);
    memory is the length * word_bytes bytes of the sum itself.
    """

    def __init__(self, config, length, unit_config=None):
        self.config = config
        self.unit_config = unit_config or config
        self.length = length
        self.words = bytearray(length * config.word_bytes)
        self.unit = 0
        self.count = 0

    def add_seed(self, seed):
        uc = self.unit_config
        limit = min(self.config.max_models, uc.max_models)
        if self.count >= limit:
            raise ValueError("the mask config aggregates at most %d models" % limit)
        ctx, unit_mask = context(seed, self.config, uc)
        self.unit = (self.unit + unit_mask) & ((1 << uc.bits) - 1)
        chacha.add(ctx, self.words, self.length)
        self.count += 1


def _aggregator(p, r):
    """A MaskAggregator; with one 32-bit word per weight it adds up in the model array,
    saving a second model-sized buffer: the global model refills the array later."""
    n, m = r.model_length, p.model
    if r.vect.word_bytes != 4 or m is None or len(m) != n:
        return MaskAggregator(r.vect, n, r.unit)
    agg = MaskAggregator(r.vect, 0, r.unit)
    agg.length, agg.words = n, uctypes.bytearray_at(uctypes.addressof(m), 4 * n)
    for i in range(n):
        m[i] = 0.0  # all-zero bits
    p._borrowed = True
    return agg


def read(p, reader):
    """Opens the column entry by entry from the reader and sets p._agg to the global mask,
    (words, unit), or to False if an entry does not open. Not the aggregator itself: its
    class would keep this module in the heap."""
    count = struct.unpack("<Q", reader.read(8))[0]
    if p._agg or reader.length != 8 + 128 * count:
        return
    sk = p.state["ephm_sk"]
    pk = x25519_base(sk)  # through Ed25519's table, which the participant has
    agg = _aggregator(p, p.params)
    box = bytearray(128)
    try:
        for _ in range(count):
            reader.readinto(box, 128)
            seal_open_into(memoryview(box)[48:], pk, sk)
            agg.add_seed(box[96:])
        p._agg = (agg.words, agg.unit)
    except ValueError as e:
        p.log("seed column refused:", e)
        p._agg = False

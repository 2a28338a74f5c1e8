"""upet.mask and upet.mask_objects on the Unix port (native kernels and fallback) against pet.mask, byte for byte."""

from __future__ import annotations

import array
import hashlib
import json
import sys
import textwrap
from types import SimpleNamespace
from unittest import mock

import numpy as np
import pytest

from pet.mask import MaskConfig, derive_mask, mask_model
from pet.mask.fixed import clamp_scalar, fixed_exact, unit_fixed
from pet.mask.objects import MaskObject
from pet.mask.rng import keystream_words

from .conftest import FIRMWARE, firmware_path, viper32

PRELUDE = """
import json, struct
from array import array
from binascii import hexlify, unhexlify
from upet import mask as M
from upet import mask_objects as O
from upet import kernels

def check(label, got, want):
    print(label, "ok" if got == want else "FAIL %r != %r" % (got, want))
"""


def run_checks(upy, script: str, **kw) -> str:
    out = upy(PRELUDE + textwrap.dedent(script), **kw)
    assert "FAIL" not in out, out
    assert " ok" in out, out
    return out


def expected_object(weights: np.ndarray, scalar, seed: bytes, cfg: MaskConfig,
                    unit_cfg: MaskConfig | None = None) -> bytes:
    """The masked model by the exact definition (fixed_exact), independent of the vectorised path."""
    unit_cfg = unit_cfg or cfg
    s = clamp_scalar(scalar, unit_cfg)
    mask = derive_mask(seed, len(weights), cfg, unit_cfg)
    values = [(fixed_exact(w, s, cfg) + int(k)) % cfg.order
              for w, k in zip(weights.tolist(), mask.vect.data.tolist())]
    unit = (unit_fixed(s, unit_cfg) + mask.unit.data) % unit_cfg.order
    return MaskObject.from_values(cfg, unit_cfg, values, unit).to_bytes()


def edge_bits(cfg: MaskConfig, rng: np.random.Generator) -> list[int]:
    """float32 bit patterns at every boundary the fixed-point conversion has, and random ones."""
    bits = [0x00000000, 0x80000000, 0x00000001, 0x80000001, 0x007FFFFF, 0x807FFFFF,  # ±0, subnormals
            0x00800000, 0x80800000, 0x7F7FFFFF, 0xFF7FFFFF,  # smallest normal, largest finite
            0x3F800000, 0xBF800000, 0x3F7FFFFF, 0xBF7FFFFF, 0x3F800001, 0xBF800001]
    low = max(-149, -cfg.fraction_bits - 28)
    for e in range(low, cfg.bound_type + 3):  # around every power of two up to beyond the bound
        u = int(np.float32(2.0 ** e).view(np.uint32))
        for sign in (0, 0x80000000):
            bits += [u | sign, (u + 1) | sign, (u - 1) | sign]
    bits += [0x3F800000 | int(x) | 1 for x in rng.integers(0, 1 << 23, 24)]  # odd mantissas: ties
    bits += [int(x) for x in rng.integers(0, 1 << 32, 64, dtype=np.uint64)]
    bound = float(2 ** cfg.bound_type)
    bits += [int(np.float32(x).view(np.uint32)) for x in rng.uniform(-2 * bound, 2 * bound, 64)]
    return [b for b in bits if (b >> 23) & 0xFF != 0xFF]


EDGE_CONFIGS = [MaskConfig.mcu(2, 10), MaskConfig.mcu(0, 0), MaskConfig.mcu(29, 1), MaskConfig.mcu(0, 30),
                MaskConfig.mcu(0, 20, wide=True), MaskConfig.mcu(62, 0, wide=True),
                MaskConfig.mcu(0, 62, wide=True), MaskConfig.mcu(10, 40, wide=True), MaskConfig.mcu(0, 0, wide=True)]


# -- config ----------------------------------------------------------------------------------------

def test_config_fields_and_rejections(upy):
    run_checks(upy, """
        c = M.MaskConfig(b"\\x03\\x00\\x02\\x0a")
        check("w32", (c.bits, c.bound_exp, c.model_exp, c.frac_bits, c.word_bytes, c.max_models,
                      c.offset, c.cap), (32, 2, 10, 19, 4, 1024, 1 << 21, (1 << 22) - 1))
        c = M.MaskConfig(bytearray(b"\\x04\\x00\\x00\\x14"))
        check("w64", (c.bits, c.frac_bits, c.word_bytes, c.offset, c.cap), (64, 43, 8, 1 << 43, (1 << 44) - 1))
        for raw, word in ((b"\\x03\\x00\\x02", "4 bytes"), (b"\\x01\\x00\\x00\\x03", "group_type 1"),
                          (b"\\x00\\x00\\x06\\x03", "XayNet"), (b"\\x05\\x00\\x00\\x00", "group_type 5"),
                          (b"\\x03\\x01\\x00\\x00", "data_type 1"), (b"\\x03\\x00\\x14\\x0b", "bound_type 20"),
                          (b"\\x04\\x00\\x20\\x1f", "model_type 31")):
            try:
                M.MaskConfig(raw)
                check(hexlify(raw), "accepted", "ValueError")
            except ValueError as e:
                check(hexlify(raw), word in str(e), True)
    """)


# -- golden vectors --------------------------------------------------------------------------------

def test_mask_vectors(upy):
    out = run_checks(upy, """
        for c in json.load(open(VECTORS + "/masks.json"))["configs"]:
            raw = unhexlify(c["config"])
            if raw[0] not in (3, 4):
                continue
            cfg = M.MaskConfig(raw)
            seed = unhexlify(c["mask_seed"])
            ctx, unit_mask = M.context(seed, cfg, cfg)  # the scalar's mask comes first
            rest = array("I", bytes(4 * len(c["keystream_words"]) - cfg.word_bytes))
            kernels.load("chacha").words(ctx, rest, len(rest))
            ks = array("I", cfg.number(unit_mask) + bytes(rest))
            check(c["name"] + " keystream", list(ks), c["keystream_words"])
            n = len(c["weight_bits"])
            mask = bytearray(n * cfg.word_bytes)
            unit_mask = O.derive_mask_into(cfg, seed, mask, n)
            want = unhexlify(c["mask"])
            check(c["name"] + " mask", raw + struct.pack(">I", n) + mask + raw + cfg.number(unit_mask), want)
            weights = array("I", [int(b, 16) for b in c["weight_bits"]])
            order = 1 << cfg.bits
            for e in c["masked"]:
                got = O.mask_object(raw, seed, e["scalar"], weights)
                check(c["name"] + " masked %r" % e["scalar"], hexlify(got).decode(), e["masked"])
                wb = cfg.word_bytes
                fixed = [str((int.from_bytes(got[8 + i * wb:8 + (i + 1) * wb], "little")
                              - int.from_bytes(mask[i * wb:(i + 1) * wb], "little")) % order) for i in range(n)]
                check(c["name"] + " fixed %r" % e["scalar"], fixed, e["fixed"])
                unit = (int.from_bytes(got[-wb:], "little") - unit_mask) % order
                check(c["name"] + " unit %r" % e["scalar"], str(unit), e["unit_fixed"])
    """)
    assert out.count(" ok") == 2 * (2 + 3 * 3)


def test_aggregation_vector(upy):
    run_checks(upy, """
        from upet.seeds import MaskAggregator
        for case in json.load(open(VECTORS + "/aggregation.json"))["cases"]:
            raw = unhexlify(case["config"])
            if raw[0] not in (3, 4):
                continue
            n = len(case["models"][0]["weight_bits"])
            agg = MaskAggregator(M.MaskConfig(raw), n)
            for j, model in enumerate(case["models"]):
                seed = unhexlify(model["mask_seed"])
                weights = array("I", [int(b, 16) for b in model["weight_bits"]])
                got = O.mask_object(raw, seed, model["scalar"], weights)
                check("model %d" % j, hexlify(got).decode(), model["masked"])
                agg.add_seed(seed)
            check("global mask", hexlify(O.global_mask(agg)).decode(), case["global_mask"])
    """)


# -- every boundary of the fixed-point conversion ----------------------------------------------------

def test_edge_weights_and_scalars(upy, tmp_path):
    rng = np.random.default_rng(7)
    cases = []
    for cfg in EDGE_CONFIGS:
        b = cfg.bound_type
        bits = edge_bits(cfg, rng)
        w = np.array(bits, dtype=np.uint32).view(np.float32)
        for scalar in (1.0, 0.375, 0.1, 0.0, -0.0, 1.5, float(2 ** b), 3.0 * 2 ** b, 1e-45, 3e-39,
                       2.0 ** -20, float(rng.uniform(0, 2 ** b))):
            seed = rng.bytes(32)
            cases.append({"config": cfg.to_bytes().hex(), "scalar": scalar, "bits": bits, "seed": seed.hex(),
                          "masked": expected_object(w, scalar, seed, cfg).hex()})
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    out = run_checks(upy, f"""
        failed = 0
        for c in json.load(open({str(tmp_path / "cases.json")!r})):
            got = O.mask_object(unhexlify(c["config"]), unhexlify(c["seed"]), c["scalar"], array("I", c["bits"]))
            if hexlify(got).decode() != c["masked"]:
                failed += 1
                print("FAIL", c["config"], c["scalar"])
        check("edge cases", failed, 0)
    """, heap="16m")
    assert "edge cases ok" in out


def test_scalar_and_weight_rejections(upy):
    run_checks(upy, """
        cfg = M.MaskConfig(b"\\x03\\x00\\x02\\x0a")
        seed = bytes(32)
        for bad in (float("nan"), float("inf"), -1.0, -1e-30):
            try:
                M.Masker(cfg, seed, bad)
                check("scalar %r" % bad, "accepted", "ValueError")
            except ValueError as e:
                check("scalar %r" % bad, "scalar" in str(e), True)
        try:
            M.Masker(cfg, bytes(31), 1.0)
        except ValueError as e:
            check("short seed", "32 bytes" in str(e), True)
        for i, bad in enumerate((0x7FC00000, 0x7F800000, 0xFF800000, 0xFFFFFFFF)):
            w = array("I", [0x3F800000] * 5)
            w[3] = bad
            m = M.Masker(cfg, seed, 1.0)
            try:
                m.mask_into(w, bytearray(20))
                check("weight %x" % bad, "accepted", "ValueError")
            except ValueError as e:
                check("weight %x" % bad, "weight 3 is NaN or infinity" in str(e), True)
            try:
                m.mask_into(w, bytearray(20))
            except ValueError as e:
                check("spent %x" % bad, "cannot go on" in str(e), True)
    """)


# -- arithmetic at the word edges -------------------------------------------------------------------

def test_aggregation_carries_at_word_edges(upy):
    """Sums that carry out of every 32-bit half, starting from zeros, maxima and bit 31 set."""
    run_checks(upy, """
        from upet.seeds import MaskAggregator
        starts = [0, 0xFFFFFFFF, 0x80000000, 0x7FFFFFFF, 0xFFFFFFFFFFFFFFFF, 0x80000000FFFFFFFF,
                  0xFFFFFFFF00000000, 0x8000000080000000, 1, 0xFFFFFFFE]
        seeds = [bytes([i]) * 32 for i in range(1, 6)]
        for raw in (b"\\x03\\x00\\x02\\x0a", b"\\x04\\x00\\x00\\x14", b"\\x04\\x00\\x02\\x0a"):
            cfg = M.MaskConfig(raw)
            wb, order = cfg.word_bytes, 1 << cfg.bits
            n = 40
            agg = MaskAggregator(cfg, n)
            want = [starts[i % len(starts)] % order for i in range(n)]
            for i, v in enumerate(want):
                agg.words[i * wb:(i + 1) * wb] = v.to_bytes(wb, "little")
            unit = 0
            carries = 0
            for seed in seeds:
                mask = bytearray(n * wb)
                u = O.derive_mask_into(raw, seed, mask, n)
                unit = (unit + u) % order
                for i in range(n):
                    k = int.from_bytes(mask[i * wb:(i + 1) * wb], "little")
                    carries += ((want[i] & 0xFFFFFFFF) + (k & 0xFFFFFFFF)) >> 32
                    want[i] = (want[i] + k) % order
                agg.add_seed(seed)
            got = [int.from_bytes(agg.words[i * wb:(i + 1) * wb], "little") for i in range(n)]
            check(hexlify(raw).decode() + " sums", got, want)
            check(hexlify(raw).decode() + " unit", agg.unit, unit)
            check(hexlify(raw).decode() + " carried", carries > 20, True)
            check("bit 31 set", any(v & 0x80000000 for v in got), True)
        agg = MaskAggregator(M.MaskConfig(b"\\x03\\x00\\x1c\\x02"), 1)
        for i in range(4):
            agg.add_seed(bytes([i]) * 32)
        try:
            agg.add_seed(bytes(32))
        except ValueError as e:
            check("model limit", "at most 4" in str(e), True)
    """)


def test_w64_model_with_w32_unit(upy, tmp_path):
    """A W32 unit leaves the W64 weights on odd keystream words: pairs straddle ChaCha blocks."""
    vect, unit = MaskConfig.mcu(0, 20, wide=True), MaskConfig.mcu(2, 10)
    seed = bytes(range(32))
    w = np.random.default_rng(3).uniform(-1.5, 1.5, 37).astype(np.float32)
    _, obj = mask_model(w, 0.3, vect, unit, seed=seed)
    out = run_checks(upy, f"""
        from upet.seeds import MaskAggregator
        w = array("f", {w.tolist()!r})
        got = O.mask_object({vect.to_bytes()!r}, {seed!r}, 0.3, w, {unit.to_bytes()!r})
        check("mixed", hexlify(got).decode(), {obj.to_bytes().hex()!r})
        agg = MaskAggregator(M.MaskConfig({vect.to_bytes()!r}), 37, M.MaskConfig({unit.to_bytes()!r}))
        agg.add_seed({seed!r})
        print(hexlify(O.global_mask(agg)).decode())
    """)
    mask = derive_mask(seed, 37, vect, unit)
    assert out.split()[-1] == mask.to_bytes().hex()


# -- streaming ------------------------------------------------------------------------------------

def test_pieces_unaligned_buffers_and_iterables(upy):
    """Any split of the model, unaligned buffers and plain iterables give the same bytes."""
    run_checks(upy, """
        n = 100
        w = array("f", [((i * 37) % 201 - 100) / 64 for i in range(n)])
        k = kernels.load("chacha")

        class Sink:
            def __init__(self):
                self.data = b""
            def write(self, b):
                self.data += bytes(b)

        for raw in (b"\\x03\\x00\\x02\\x0a", b"\\x04\\x00\\x00\\x14"):
            label = hexlify(raw).decode()
            cfg = M.MaskConfig(raw)
            seed = b"\\x5a" * 32
            whole = O.mask_object(raw, seed, 0.7, w)
            words = whole[8:-4 - cfg.word_bytes]
            m = M.Masker(cfg, seed, 0.7)
            out = bytearray(n * cfg.word_bytes)
            at = 0
            for size in (1, 15, 17, 2, 33, 32):
                at_bytes = at * cfg.word_bytes
                m.mask_into(memoryview(w)[at:at + size], out, at_bytes)
                at += size
            check(label + " pieces", bytes(out), words)
            check(label + " unit", m.unit_bytes(), whole[-4 - cfg.word_bytes:])

            raw_bytes = bytearray(1 + 4 * n)
            raw_bytes[1:] = bytes(w)
            unaligned = memoryview(raw_bytes)[1:]
            out = bytearray(1 + n * cfg.word_bytes)
            try:  # the native kernels refuse it (ptr32 faults on the boards), the fallback needs no alignment
                M.Masker(cfg, seed, 0.7).mask_into(unaligned, out, 1)
                check(label + " unaligned", bytes(out[1:]) if k.aligned(unaligned) else "accepted", words)
            except ValueError as e:
                check(label + " unaligned refused", not k.aligned(unaligned) and "4-byte boundary" in str(e), True)
            check(label + " unaligned object", O.mask_object(raw, seed, 0.7, unaligned), whole)
            sink = Sink()
            check(label + " unaligned count", O.mask_to(M.Masker(cfg, seed, 0.7), sink, unaligned, 7), n)
            check(label + " unaligned stream", sink.data, words)

            sink = Sink()
            O.write_object(M.Masker(cfg, seed, 0.7), sink, (x for x in w), count=n, block=7)
            check(label + " iterable", sink.data, whole)
            sink = Sink()
            O.write_object(M.Masker(cfg, seed, 0.7), sink, bytes(w), block=64)
            check(label + " bytes", sink.data, whole)
    """)


STREAM = """
    import gc, hashlib
    n = {n}
    w = array("f", bytes(4 * n))
    for i in range(n):
        w[i] = ((i * 7919) % 2001 - 1000) / 512

    class HashWriter:
        def __init__(self):
            self.h = hashlib.sha256()
            self.size = 0
        def write(self, b):
            self.h.update(b)
            self.size += len(b)

    M.Masker(M.MaskConfig({config!r}), bytes(32), 1.0).mask_into(w[:1], bytearray(8))  # loads the kernels
    sink = HashWriter()
    m = M.Masker(M.MaskConfig({config!r}), {seed!r}, {scalar!r})  # held: a stale reference would look retained
    gc.collect()
    free = gc.mem_free()
    O.write_object(m, sink, w)
    gc.collect()
    print("retained", free - gc.mem_free())
    print("digest", hexlify(sink.h.digest()).decode(), sink.size)
    print("kernels", kernels.load("chacha").__name__)
"""


@pytest.mark.parametrize("n, heap, config", [(650, "64k", MaskConfig.mcu(2, 10)),
                                             (10_000, "128k", MaskConfig.mcu(2, 10)),
                                             (10_000, "128k", MaskConfig.mcu(0, 20, wide=True))])
def test_streaming_under_small_heaps(upy, n, heap, config):
    if firmware_path() == FIRMWARE:
        pytest.skip("the heap budgets hold for the .mpy build; compiling the sources on the fly needs more")
    seed = hashlib.sha256(b"stream").digest()
    scalar = 0.25
    w = (((np.arange(n) * 7919) % 2001 - 1000) / 512).astype(np.float32)
    _, obj = mask_model(w, scalar, config, seed=seed)
    want = obj.to_bytes()
    out = upy(PRELUDE + textwrap.dedent(STREAM).format(n=n, config=config.to_bytes(), seed=seed, scalar=scalar), heap=heap)
    digest_line = next(line for line in out.splitlines() if line.startswith("digest"))
    assert digest_line.split()[1:] == [hashlib.sha256(want).hexdigest(), str(len(want))]
    retained = int(next(line for line in out.splitlines() if line.startswith("retained")).split()[1])
    assert retained < 256, f"masking kept {retained} bytes of heap"
    assert f"kernels upet.{'fallback' if upy.fallback else 'native'}.chacha" in out


# -- the viper source with a board's 32-bit words ----------------------------------------------------

class _Array(array.array):
    """MicroPython's array(), which also takes raw bytes."""

    def __new__(cls, code, init=()):
        if isinstance(init, (bytes, bytearray)):
            a = super().__new__(cls, code)
            a.frombytes(init)
            return a
        return super().__new__(cls, code, init)


def cpython_upet_mask(kernel) -> tuple[SimpleNamespace, SimpleNamespace, SimpleNamespace]:
    """firmware/upet/mask.py, mask_objects.py and seeds.py (MaskAggregator) run by CPython over
    the given kernel module; what seeds.py imports for opening seeds is not there."""
    shims = {"micropython": SimpleNamespace(const=lambda x: x), "array": SimpleNamespace(array=_Array),
             "upet": SimpleNamespace(kernels=SimpleNamespace(load=lambda name: kernel),
                                     transient=lambda module, function, name: kernel),
             "uctypes": SimpleNamespace(), "upet.box": SimpleNamespace(blake2b=None, box_into=None),
             "upet.x25519": SimpleNamespace(x25519_base=None)}
    modules = []
    with mock.patch.dict(sys.modules, shims):
        for name in ("mask", "mask_objects", "seeds"):
            path = FIRMWARE / "upet" / f"{name}.py"
            ns: dict = {}
            exec(compile(path.read_text(), str(path), "exec", dont_inherit=True), ns)
            modules.append(SimpleNamespace(**ns))
            sys.modules[f"upet.{name}"] = modules[-1]
    return modules[0], modules[1], modules[2]


def test_native_kernels_with_32_bit_words():
    """The viper source gives pet.mask's bytes when every uint wraps at 2^32 and ptr32 loads are signed."""
    chacha = viper32("chacha")
    upet_mask, upet_mask_objects, upet_seeds = cpython_upet_mask(chacha)
    rng = np.random.default_rng(11)
    for cfg in (MaskConfig.mcu(2, 10), MaskConfig.mcu(0, 0), MaskConfig.mcu(0, 20, wide=True),
                MaskConfig.mcu(62, 0, wide=True), MaskConfig.mcu(10, 40, wide=True)):
        bits = edge_bits(cfg, rng)
        w = np.array(bits, dtype=np.uint32).view(np.float32)
        for scalar in (1.0, 0.375, 0.0, float(2 ** cfg.bound_type), 3e-39):
            seed = rng.bytes(32)
            got = upet_mask_objects.mask_object(cfg.to_bytes(), seed, scalar, _Array("I", bits))
            assert got == expected_object(w, scalar, seed, cfg), f"{cfg.name} scalar {scalar}"

    seeds = [bytes([i]) * 32 for i in (1, 2, 3)]
    for cfg in (MaskConfig.mcu(2, 10), MaskConfig.mcu(0, 20, wide=True)):
        starts = [0, 0xFFFFFFFF, 0x80000000, 2 ** 64 - 1, 0x80000000FFFFFFFF, 0xFFFFFFFF00000000]
        agg = upet_seeds.MaskAggregator(upet_mask.MaskConfig(cfg.to_bytes()), 48)
        values = [starts[i % len(starts)] % cfg.order for i in range(48)]
        agg.words[:] = b"".join(v.to_bytes(cfg.bytes_per_number, "little") for v in values)
        for seed in seeds:
            agg.add_seed(seed)
        mask = derive_mask(seeds[0], 48, cfg)
        for seed in seeds[1:]:
            other = derive_mask(seed, 48, cfg)
            mask.vect.data, mask.unit.data = mask.vect.data + other.vect.data, mask.unit.data + other.unit.data
        want = [(v + int(k)) % cfg.order for v, k in zip(values, mask.vect.data.tolist())]
        got = [int.from_bytes(agg.words[i * cfg.bytes_per_number:(i + 1) * cfg.bytes_per_number], "little")
               for i in range(48)]
        assert got == want, cfg.name
        assert agg.unit == mask.unit.data % cfg.order

    seed = bytes(range(32))
    config = upet_mask.MaskConfig(MaskConfig.mcu().to_bytes())
    ctx, _ = upet_mask.context(seed, config, config)  # block 0 drawn for the scalar's mask
    ctx[12] = 0xFFFFFFFF  # the next block is 2^32 - 1, the one after it 2^32
    ctx[32] = 16  # the rest of block 0 left unused
    out = _Array("I", bytes(4 * 40))
    chacha.words(ctx, out, 40)
    assert list(out) == keystream_words(seed, (2 ** 32 - 1) * 16, 40).tolist()
    assert (ctx[12], ctx[13]) == (2, 1)  # three blocks drawn: the counter reads 2^32 + 2

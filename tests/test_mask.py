"""Masking maths: mask stream, catalogue, fixed point, aggregation, unmasking."""

import math
import random
import struct
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pet.errors import DecodeError
from pet.mask import (DEFAULT_CONFIG, DEFAULT_MCU_CONFIG, BoundType, ChaCha20Rng, DataType, GroupType,
                      MaskConfig, MaskObject, catalogue)
from pet.mask.fixed import MaskingError, clamp_scalar, fixed_array, fixed_exact
from pet.mask.masking import (Aggregation, AggregationError, UnmaskError, aggregate_masks,
                              derive_mask, mask_model, unmask, unmask_exact)
from pet.mask.rng import keystream_words


# -- an independent ChaCha20 block function (RFC 8439 quarter rounds, 64-bit counter) -----------

def _chacha_block(key: bytes, counter: int) -> list[int]:
    def rotl(v, c):
        return ((v << c) & 0xFFFFFFFF) | (v >> (32 - c))

    state = [0x61707865, 0x3320646E, 0x79622D32, 0x6B206574]
    state += list(struct.unpack("<8I", key))
    state += [counter & 0xFFFFFFFF, counter >> 32, 0, 0]
    x = list(state)
    for _ in range(10):
        for a, b, c, d in ((0, 4, 8, 12), (1, 5, 9, 13), (2, 6, 10, 14), (3, 7, 11, 15),
                           (0, 5, 10, 15), (1, 6, 11, 12), (2, 7, 8, 13), (3, 4, 9, 14)):
            x[a] = (x[a] + x[b]) & 0xFFFFFFFF; x[d] = rotl(x[d] ^ x[a], 16)
            x[c] = (x[c] + x[d]) & 0xFFFFFFFF; x[b] = rotl(x[b] ^ x[c], 12)
            x[a] = (x[a] + x[b]) & 0xFFFFFFFF; x[d] = rotl(x[d] ^ x[a], 8)
            x[c] = (x[c] + x[d]) & 0xFFFFFFFF; x[b] = rotl(x[b] ^ x[c], 7)
    return [(x[i] + state[i]) & 0xFFFFFFFF for i in range(16)]


def test_keystream_matches_rand_chacha_known_answer():
    # rand_chacha's test_chacha_true_values_a: all-zero seed.
    rng = ChaCha20Rng(bytes(32))
    assert [rng.next_u32() for _ in range(4)] == [0xADE0B876, 0x903DF1A0, 0xE56A5D40, 0x28BD8653]


def test_generate_integer_matches_xaynet_known_answers():
    # xaynet-core crypto/prng.rs test_generate_integer: zero seed, max = (2^128 - 1)^2.
    rng = ChaCha20Rng(bytes(32))
    max_int = (2 ** 128 - 1) ** 2
    expected = [
        90034050956742099321159087842304570510687605373623064829879336909608119744630,
        60790020689334235010238064028215988394112077193561636249125918224917556969946,
        107415344426328791036720294006773438815099086866510488084511304829720271980447,
        50343610553303623842889112417183549658912134525854625844144939347139411162921,
        42382469383990928111449714288937630103705168010724718767641573929365517895981,
    ]
    assert [rng.generate_integer(max_int) for _ in range(5)] == expected


@pytest.mark.parametrize("start", [0, 5, 16, 1000, 1024, 1023, 4095, 2 ** 32 * 16 - 3])
def test_keystream_words_match_reference_block_function(start):
    key = bytes(range(32))
    got = keystream_words(key, start, 40).tolist()
    want = []
    block = start // 16
    while len(want) < (start % 16) + 40:
        want += _chacha_block(key, block + len(want) // 16)
    assert got == want[start % 16:start % 16 + 40]


def test_fill_bytes_consumes_whole_words():
    rng = ChaCha20Rng(bytes(range(32)))
    words = keystream_words(bytes(range(32)), 0, 4).tobytes()
    assert rng.fill_bytes(6) == words[:6]
    assert rng.word_pos == 2  # the remaining 2 bytes of word 1 are discarded
    assert rng.fill_bytes(1) == words[8:9]
    assert rng.word_pos == 3


@pytest.mark.parametrize("order", sorted({c.order for c in catalogue() if c.order <= 1 << 63}
                                         | {1, 2, 255, 256, 257, 2 ** 32, 2 ** 32 + 1, 2 ** 63}))
def test_bulk_draws_equal_sequential_draws(order):
    seed = bytes(range(1, 33))
    bulk = ChaCha20Rng(seed)
    one = ChaCha20Rng(seed)
    got = bulk.generate_integers(order, 300)
    want = [one.generate_integer(order) for _ in range(300)]
    assert [int(v) for v in got] == want
    assert bulk.word_pos == one.word_pos
    assert bulk.generate_integer(order) == one.generate_integer(order)


# -- catalogue ------------------------------------------------------------------------------

def _is_prime(n: int) -> bool:
    if n < 2:
        return False
    for p in (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37):
        if n % p == 0:
            return n == p
    d, s = n - 1, 0
    while d % 2 == 0:
        d, s = d // 2, s + 1
    for a in (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41):
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = x * x % n
            if x == n - 1:
                break
        else:
            return False
    return True


def test_catalogue_orders_follow_the_rule():
    configs = catalogue()
    assert len(configs) == 240
    for cfg in configs:
        if cfg.bound_type is BoundType.BMAX:
            continue
        n = 2 * cfg.add_shift * cfg.exp_shift * cfg.max_models
        assert n.denominator == 1
        n = int(n)
        if cfg.group_type is GroupType.INTEGER:
            assert cfg.order == n + 1
        elif cfg.group_type is GroupType.POWER2:
            assert cfg.order == 1 << n.bit_length()  # smallest power of two > n
        else:
            assert cfg.order >= n + 1 and _is_prime(cfg.order)
            assert not any(_is_prime(k) for k in range(n + 1, cfg.order))


def test_bytes_per_number_table():
    table = {("F32", "B0", "M3"): 6, ("F32", "B0", "M12"): 10, ("F32", "B6", "M12"): 12,
             ("F64", "B0", "M3"): 10, ("F64", "B6", "M12"): 16, ("F32", "Bmax", "M3"): 37,
             ("F64", "Bmax", "M12"): 268, ("I32", "Bmax", "M3"): 10, ("I64", "Bmax", "M12"): 18}
    for (d, b, m), bpn in table.items():
        for g in ("Integer", "Prime", "Power2"):
            assert MaskConfig.xaynet(g, d, b, m).bytes_per_number == bpn, (g, d, b, m)
    assert DEFAULT_CONFIG.order == 20_000_000_000_021
    assert DEFAULT_CONFIG.to_bytes() == bytes([1, 0, 0, 3])


def test_mcu_profile_constants():
    cfg = DEFAULT_MCU_CONFIG
    assert cfg.to_bytes() == bytes([3, 0, 2, 10])
    assert cfg.order == 2 ** 32 and cfg.bytes_per_number == 4
    assert cfg.add_shift == 4 and cfg.exp_shift == 2 ** 19 and cfg.max_models == 1024
    wide = MaskConfig.mcu(0, 20, wide=True)
    assert wide.order == 2 ** 64 and wide.bytes_per_number == 8 and wide.fraction_bits == 43
    # the largest sum of max_models values stays below the order
    assert cfg.max_models * ((1 << (32 - cfg.model_type)) - 1) < cfg.order


@pytest.mark.parametrize("raw", [b"", b"\x01\x00\x00", b"\x01\x00\x00\x03\x00", bytes([5, 0, 0, 3]),
                                 bytes([1, 4, 0, 3]), bytes([1, 0, 1, 3]), bytes([1, 0, 0, 4]),
                                 bytes([3, 1, 2, 10]), bytes([3, 0, 20, 11]), bytes([4, 0, 62, 1])])
def test_bad_mask_configs_raise_decode_error(raw):
    with pytest.raises(DecodeError):
        MaskConfig.from_bytes(raw)


def test_config_byte_round_trip():
    for cfg in catalogue() + [DEFAULT_MCU_CONFIG, MaskConfig.mcu(5, 5, True)]:
        assert MaskConfig.from_bytes(cfg.to_bytes()) == cfg
        assert MaskConfig.from_bincode_indices(*cfg.bincode_indices()) == cfg


# -- fixed point ----------------------------------------------------------------------------

_F32_CONFIGS = [c for c in catalogue() if c.data_type is DataType.F32 and c.order < 1 << 63]
_F32_CONFIGS += [DEFAULT_MCU_CONFIG, MaskConfig.mcu(0, 20, wide=True), MaskConfig.mcu(8, 4),
                 MaskConfig.mcu(0, 0, wide=True), MaskConfig.mcu(5, 0), MaskConfig.mcu(0, 62, wide=True)]

float32s = st.floats(width=32, allow_nan=False, allow_infinity=False)
scalars = st.one_of(st.just(1.0), st.floats(0, 1e3, allow_nan=False), st.sampled_from([0.5, 1 / 3, 1e-9]))


@settings(max_examples=150, deadline=None)
@given(st.lists(float32s, min_size=1, max_size=40), scalars, st.sampled_from(_F32_CONFIGS))
def test_vectorised_fixed_point_equals_definition(weights, scalar, cfg):
    arr = np.array(weights, dtype=np.float32)
    s = clamp_scalar(scalar, cfg)
    assert [int(v) for v in fixed_array(arr, s, cfg)] == [fixed_exact(w, s, cfg) for w in arr.tolist()]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(-2 ** 31, 2 ** 31 - 1), min_size=1, max_size=30), scalars,
       st.sampled_from([c for c in catalogue() if c.data_type in (DataType.I32, DataType.I64)
                        and c.order < 1 << 63]))
def test_vectorised_fixed_point_integers(weights, scalar, cfg):
    arr = np.array(weights, dtype=np.int32 if cfg.data_type is DataType.I32 else np.int64)
    s = clamp_scalar(scalar, cfg)
    assert [int(v) for v in fixed_array(arr, s, cfg)] == [fixed_exact(w, s, cfg) for w in arr.tolist()]


def test_fixed_point_edges_default_config():
    s = Fraction(1)
    cfg = DEFAULT_CONFIG
    assert fixed_exact(0.0, s, cfg) == 10 ** 10
    assert fixed_exact(1.0, s, cfg) == 2 * 10 ** 10
    assert fixed_exact(-1.0, s, cfg) == 0
    assert fixed_exact(5.0, s, cfg) == 2 * 10 ** 10  # clamped
    w = float(np.float32(0.1))
    assert fixed_exact(w, s, cfg) == math.floor((Fraction(w) + 1) * 10 ** 10)


def test_mcu_fixed_point_is_integer_work_on_the_bits():
    cfg = DEFAULT_MCU_CONFIG  # B = 4, f = 19
    s = clamp_scalar(1.0, cfg)
    assert fixed_exact(0.0, s, cfg) == 4 << 19
    assert fixed_exact(-4.0, s, cfg) == 0
    assert fixed_exact(4.0, s, cfg) == (1 << 22) - 1  # capped one below 2B * 2^f
    assert fixed_exact(1e-40, s, cfg) == 4 << 19  # subnormal flushed to zero
    assert fixed_exact(-1e-40, s, cfg) == 4 << 19
    assert fixed_exact(-2 ** -19, s, cfg) == (4 << 19) - 1
    assert fixed_exact(-2 ** -20, s, cfg) == (4 << 19) - 1  # floor, not truncation
    assert fixed_exact(3e38, clamp_scalar(4.0, cfg), cfg) == (1 << 22) - 1  # fl32 overflow clamps


@pytest.mark.parametrize("bad", [[float("nan")], [1.0, float("inf")], [-float("inf")]])
def test_non_finite_weights_are_rejected(bad):
    with pytest.raises(MaskingError, match="NaN and infinity"):
        mask_model(np.array(bad, dtype=np.float32), 1.0, DEFAULT_CONFIG)


@pytest.mark.parametrize("scalar", [-1.0, float("nan"), float("inf"), "x"])
def test_bad_scalars_are_rejected(scalar):
    with pytest.raises(MaskingError):
        mask_model(np.zeros(3, dtype=np.float32), scalar, DEFAULT_CONFIG)


# -- masking, aggregation, unmasking --------------------------------------------------------

def _weights(cfg: MaskConfig, rs: np.random.Generator, n: int) -> np.ndarray:
    bound = float(min(cfg.add_shift, 100))
    if cfg.data_type is DataType.F32:
        return rs.uniform(-bound, bound, n).astype(np.float32)
    if cfg.data_type is DataType.F64:
        return rs.uniform(-bound, bound, n)
    lo = -int(bound) if bound >= 1 else -1
    return rs.integers(lo, int(bound) + 1, n).astype(np.int32 if cfg.data_type is DataType.I32 else np.int64)


def _round(cfg: MaskConfig, models, scalars):
    n = len(models[0])
    agg = Aggregation(cfg, cfg, n)
    seeds = []
    for w, s in zip(models, scalars):
        seed, masked = mask_model(w, s, cfg)
        seeds.append(seed)
        agg.aggregate(MaskObject.from_bytes(masked.to_bytes()))
    global_mask = MaskObject.from_bytes(aggregate_masks(seeds, n, cfg).to_bytes())
    return agg, global_mask


@pytest.mark.parametrize("cfg", catalogue() + [DEFAULT_MCU_CONFIG, MaskConfig.mcu(0, 20, wide=True)],
                         ids=lambda c: c.name)
def test_unmask_gives_the_scalar_weighted_average(cfg):
    rs = np.random.default_rng(cfg.order % 2 ** 32)
    n, count = 4, 3
    models = [_weights(cfg, rs, n) for _ in range(count)]
    scalars = [1.0, 0.5, 0.25] if cfg.add_shift >= 1 else [1.0, 1.0, 1.0]
    agg, global_mask = _round(cfg, models, scalars)
    exact = unmask_exact(agg.object, global_mask, count)
    s_eff = [clamp_scalar(s, cfg) for s in scalars]
    want = [sum(s * Fraction(m[i].item()) for s, m in zip(s_eff, models)) / sum(s_eff) for i in range(n)]
    # Documented precision: each model loses < 1/E per weight and per scalar to the floor.
    mean_abs = max(abs(x) for x in want)
    tol = Fraction(count, cfg.exp_shift) * (1 + mean_abs) / (sum(s_eff) - Fraction(count, cfg.exp_shift))
    if cfg.is_mcu:  # plus float32 rounding of s * w
        tol += max(abs(Fraction(float(x))) for m in models for x in m) * Fraction(1, 2 ** 23)
    for got, exp in zip(exact, want):
        assert abs(got - exp) <= tol, (cfg, float(got), float(exp), float(tol))
    approx = unmask(agg.object, global_mask, count)
    assert np.allclose(approx, [float(x) for x in exact], rtol=1e-12, atol=1e-12)


def test_large_model_default_and_mcu():
    rs = np.random.default_rng(7)
    for cfg in (DEFAULT_CONFIG, DEFAULT_MCU_CONFIG):
        models = [rs.uniform(-1, 1, 5000).astype(np.float32) for _ in range(4)]
        scalars = [0.3, 1.0, 0.7, 0.01]
        agg, global_mask = _round(cfg, models, scalars)
        got = unmask(agg.object, global_mask, 4)
        want = sum(np.float64(s) * m.astype(np.float64) for s, m in zip(scalars, models)) / sum(scalars)
        assert np.max(np.abs(got - want)) < 5 * 4 / cfg.exp_shift / 1.9 + 1e-6


def test_masked_model_reveals_nothing_without_the_mask():
    w = np.zeros(2000, dtype=np.float32)
    _, a = mask_model(w, 1.0, DEFAULT_MCU_CONFIG, seed=bytes(32))
    _, b = mask_model(w, 1.0, DEFAULT_MCU_CONFIG, seed=bytes([1] * 32))
    assert not np.array_equal(a.vect.data, b.vect.data)
    # masked words of an all-zero model look uniform: mean of 2000 uniform u32 near 2^31
    assert abs(float(np.mean(a.vect.data.astype(np.float64))) / 2 ** 31 - 1) < 0.1


def test_mask_seed_determines_the_mask():
    seed = bytes(range(32))
    w = np.linspace(-1, 1, 50, dtype=np.float32)
    _, a = mask_model(w, 0.5, DEFAULT_CONFIG, seed=seed)
    _, b = mask_model(w, 0.5, DEFAULT_CONFIG, seed=seed)
    assert a == b
    mask = derive_mask(seed, 50, DEFAULT_CONFIG)
    rng = ChaCha20Rng(seed)
    assert mask.unit.data == rng.generate_integer(DEFAULT_CONFIG.order)  # the scalar's mask first
    assert int(mask.vect.data[0]) == rng.generate_integer(DEFAULT_CONFIG.order)


def test_mcu_mask_is_one_word_per_element():
    seed = bytes(range(32))
    words = keystream_words(seed, 0, 11).tolist()
    mask = derive_mask(seed, 10, DEFAULT_MCU_CONFIG)
    assert mask.unit.data == words[0]
    assert [int(v) for v in mask.vect.data] == words[1:]
    wide = MaskConfig.mcu(0, 20, wide=True)
    mask = derive_mask(seed, 5, wide)
    assert mask.unit.data == words[0] | words[1] << 32
    assert int(mask.vect.data[0]) == words[2] | words[3] << 32


def test_aggregation_rejects_mismatches():
    cfg = DEFAULT_CONFIG
    agg = Aggregation(cfg, cfg, 3)
    _, ok = mask_model(np.zeros(3, dtype=np.float32), 1.0, cfg)
    agg.aggregate(ok)
    _, short = mask_model(np.zeros(2, dtype=np.float32), 1.0, cfg)
    with pytest.raises(AggregationError, match="length"):
        agg.aggregate(short)
    other = MaskConfig.xaynet("Power2", "F32", "B0", "M3")
    _, wrong = mask_model(np.zeros(3, dtype=np.float32), 1.0, other)
    with pytest.raises(AggregationError, match="config"):
        agg.aggregate(wrong)
    bad = MaskObject.from_values(cfg, cfg, [0, 0, cfg.order], 0)
    with pytest.raises(AggregationError, match="order"):
        agg.aggregate(bad)
    assert agg.nb_models == 1
    small = MaskConfig.mcu(0, 1)  # at most 2 models
    agg = Aggregation(small, small, 1)
    for _ in range(2):
        agg.aggregate(mask_model([0.5], 1.0, small)[1])
    with pytest.raises(AggregationError, match="at most 2"):
        agg.aggregate(mask_model([0.5], 1.0, small)[1])


def test_unmask_rejects_bad_masks():
    cfg = DEFAULT_CONFIG
    agg, gm = _round(cfg, [np.zeros(3, dtype=np.float32)] * 3, [1.0] * 3)
    with pytest.raises(UnmaskError):
        unmask(agg.object, gm, 0)
    with pytest.raises(UnmaskError, match="length"):
        unmask(agg.object, derive_mask(bytes(32), 2, cfg), 3)
    with pytest.raises(UnmaskError, match="config"):
        unmask(agg.object, derive_mask(bytes(32), 3, DEFAULT_MCU_CONFIG), 3)


def test_wrong_mask_does_not_give_the_average():
    cfg = DEFAULT_MCU_CONFIG
    models = [np.full(10, 0.5, dtype=np.float32)] * 3
    agg, gm = _round(cfg, models, [1.0] * 3)
    assert np.allclose(unmask(agg.object, gm, 3), 0.5, atol=1e-5)
    wrong = derive_mask(random.Random(3).randbytes(32), 10, cfg)
    try:
        result = unmask(agg.object, wrong, 3)
    except UnmaskError:
        return  # the wrong unit mask gave a scalar sum that is not positive
    assert not np.allclose(result, 0.5, atol=1e-3)

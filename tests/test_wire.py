"""PET messages and REST encodings: round trips, byte layouts, and strict decoding."""

import struct
import time
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pet.mask import MaskConfig, MaskObject
from pet.wire import (HEADER_LENGTH, Chunk, DecodeError, LocalSeedDict, MaskConfigPair, Message,
                      Model, RoundParameters, Sum, Sum2, SumDict, Tag, Update, UpdateSeedDict)

CONFIGS = [
    MaskConfig.xaynet("Prime", "F32", "B0", "M3"),
    MaskConfig.xaynet("Power2", "I32", "B2", "M6"),
    MaskConfig.xaynet("Integer", "F64", "Bmax", "M12"),
    MaskConfig.mcu(),
    MaskConfig.mcu(wide=True),
]

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# -- strategies --------------------------------------------------------------------------------

pks = st.binary(min_size=32, max_size=32)
signatures = st.binary(min_size=64, max_size=64)
seeds = st.binary(min_size=80, max_size=80)
configs = st.sampled_from(CONFIGS)


@st.composite
def mask_objects(draw, max_len=12):
    vect_cfg, unit_cfg = draw(configs), draw(configs)
    values = draw(st.lists(st.integers(0, vect_cfg.order - 1), max_size=max_len))
    return MaskObject.from_values(vect_cfg, unit_cfg, values, draw(st.integers(0, unit_cfg.order - 1)))


local_seed_dicts = st.dictionaries(pks, seeds, max_size=4).map(LocalSeedDict)
sums = st.builds(Sum, signatures, pks)
updates = st.builds(Update, signatures, signatures, mask_objects(), local_seed_dicts)
sum2s = st.builds(Sum2, signatures, mask_objects())
chunks = st.builds(Chunk, st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.booleans(),
                   st.binary(max_size=300))
tags = st.sampled_from(list(Tag))


@st.composite
def messages(draw):
    signature, participant_pk, coordinator_pk = draw(signatures), draw(pks), draw(pks)
    if draw(st.booleans()):
        return Message(signature, participant_pk, coordinator_pk, draw(tags), True, draw(chunks))
    payload = draw(st.one_of(sums, updates, sum2s))
    return Message(signature, participant_pk, coordinator_pk, payload.TAG, False, payload)


round_parameters = st.builds(
    RoundParameters, pks, st.floats(allow_nan=False), st.floats(allow_nan=False), pks,
    st.builds(MaskConfigPair, configs, configs), st.integers(0, 2 ** 32 - 1))
sum_dicts = st.dictionaries(pks, pks, max_size=5).map(SumDict)
update_seed_dicts = st.dictionaries(pks, seeds, max_size=5).map(UpdateSeedDict)
big_ints = st.integers(-(2 ** 200), 2 ** 200)
weights = st.one_of(st.fractions(), st.builds(Fraction, big_ints, st.integers(1, 2 ** 200)))
models = st.lists(weights, max_size=10).map(Model)

# (strategy, encode, decode) for every decodable thing
CODECS = {
    "sum": (sums, Sum.to_bytes, Sum.from_bytes),
    "update": (updates, Update.to_bytes, Update.from_bytes),
    "sum2": (sum2s, Sum2.to_bytes, Sum2.from_bytes),
    "chunk": (chunks, Chunk.to_bytes, Chunk.from_bytes),
    "message": (messages(), Message.encode, Message.decode),
    "local seed dict": (local_seed_dicts, LocalSeedDict.to_bytes, LocalSeedDict.from_bytes),
    "round parameters": (round_parameters, RoundParameters.to_bytes, RoundParameters.from_bytes),
    "sum dict": (sum_dicts, SumDict.to_bytes, SumDict.from_bytes),
    "update seed dict": (update_seed_dicts, UpdateSeedDict.to_bytes, UpdateSeedDict.from_bytes),
    "model": (models, Model.to_bytes, Model.from_bytes),
}
DECODERS = [decode for _, _, decode in CODECS.values()]


def decode_or_reject(decode, buf):
    """Decoding malformed bytes may only raise DecodeError."""
    try:
        decode(buf)
    except DecodeError:
        pass


# -- round trips -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", CODECS)
@SETTINGS
@given(data=st.data())
def test_round_trip(name, data):
    strategy, encode, decode = CODECS[name]
    value = data.draw(strategy)
    encoded = encode(value)
    assert decode(encoded) == value
    assert encode(decode(encoded)) == encoded


@SETTINGS
@given(messages(), st.sampled_from([bytearray, memoryview]))
def test_message_accepts_bytearray_and_memoryview(message, kind):
    assert Message.decode(kind(message.encode())) == message


def test_local_seed_dict_keeps_insertion_order():
    entries = [(bytes([i]) * 32, bytes([i]) * 80) for i in (3, 1, 2)]
    encoded = LocalSeedDict(entries).to_bytes()
    assert [encoded[4 + 112 * i] for i in range(3)] == [3, 1, 2]
    assert list(LocalSeedDict.from_bytes(encoded)) == [pk for pk, _ in entries]


# -- exact layouts -----------------------------------------------------------------------------


def test_sum_message_layout():
    message = Message(b"\x11" * 64, b"\x22" * 32, b"\x33" * 32, Tag.SUM, False,
                      Sum(b"\x44" * 64, b"\x55" * 32))
    encoded = message.encode()
    assert len(encoded) == 232 == HEADER_LENGTH + 96
    assert encoded[0:64] == b"\x11" * 64
    assert encoded[64:96] == b"\x22" * 32
    assert encoded[96:128] == b"\x33" * 32
    assert encoded[128:132] == (232).to_bytes(4, "big")
    assert encoded[132:136] == bytes([1, 0, 0, 0])
    assert encoded[136:200] == b"\x44" * 64
    assert encoded[200:232] == b"\x55" * 32


def test_from_payload_sets_tag_and_zero_signature():
    for payload, tag in [(Sum(bytes(64), bytes(32)), Tag.SUM),
                         (Sum2(bytes(64), MaskObject.from_values(CONFIGS[0], CONFIGS[0], [1], 1)),
                          Tag.SUM2)]:
        message = Message.from_payload(b"p" * 32, b"c" * 32, payload)
        assert message.tag is tag and not message.is_multipart
        assert message.encode()[:64] == bytes(64)
        assert message.encode()[132] == tag
    with pytest.raises(ValueError):
        Message.from_payload(b"p" * 32, b"c" * 32, Chunk(0, 0, True, b""))


def test_multipart_header_and_chunk_layout():
    message = Message(bytes(64), b"p" * 32, b"c" * 32, Tag.UPDATE, True,
                      Chunk(0x0102, 0xA0B0, True, b"xyz"))
    encoded = message.encode()
    assert len(encoded) == 136 + 8 + 3
    assert encoded[132:136] == bytes([2, 1, 0, 0])
    assert encoded[136:144] == bytes([0x01, 0x02, 0xA0, 0xB0, 0x01, 0, 0, 0])
    assert encoded[144:] == b"xyz"


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("n, s", [(0, 0), (1, 1), (10, 3)])
def test_update_size(config, n, s):
    bpn = config.bytes_per_number
    obj = MaskObject.from_values(config, config, [0] * n, 0)
    seed_dict = LocalSeedDict({bytes([i]) * 32: bytes(80) for i in range(s)})
    message = Message.from_payload(b"p" * 32, b"c" * 32,
                                   Update(bytes(64), bytes(64), obj, seed_dict))
    assert len(message.encode()) == 280 + (n + 1) * bpn + 112 * s
    sum2 = Message.from_payload(b"p" * 32, b"c" * 32, Sum2(bytes(64), obj))
    assert len(sum2.encode()) == 212 + (n + 1) * bpn


def test_default_config_update_size():
    config = CONFIGS[0]
    assert config.to_bytes() == bytes([1, 0, 0, 3])
    obj = MaskObject.from_values(config, config, [5, 6], 7)
    update = Update(bytes(64), bytes(64), obj, LocalSeedDict({b"k" * 32: b"s" * 80}))
    assert len(Message.from_payload(b"p" * 32, b"c" * 32, update).encode()) == 286 + 6 * 2 + 112


MODEL_EXAMPLE = bytes.fromhex(
    "0300000000000000"
    "01" "0100000000000000" "01000000" "01" "0100000000000000" "02000000"
    "ff" "0100000000000000" "01000000" "01" "0100000000000000" "04000000"
    "00" "0000000000000000" "01" "0100000000000000" "01000000")


def test_model_example():
    model = Model([Fraction(1, 2), Fraction(-1, 4), Fraction(0)])
    assert model.to_bytes() == MODEL_EXAMPLE
    assert Model.from_bytes(MODEL_EXAMPLE) == model


def test_model_multi_digit_bigint():
    encoded = Model([Fraction(2 ** 32 + 5)]).to_bytes()
    assert encoded == bytes.fromhex("0100000000000000" "01" "0200000000000000" "05000000"
                                    "01000000" "01" "0100000000000000" "01000000")


def test_round_parameters_layout():
    vect = MaskConfig.xaynet("Power2", "I64", "Bmax", "M12")
    unit = MaskConfig.xaynet("Prime", "F32", "B0", "M3")
    params = RoundParameters(b"\xaa" * 32, 0.5, 0.25, b"\xbb" * 32, MaskConfigPair(vect, unit), 1234)
    encoded = params.to_bytes()
    assert len(encoded) == 136
    assert encoded[0:8] == (32).to_bytes(8, "little")
    assert encoded[8:40] == b"\xaa" * 32
    assert encoded[40:48] == struct.pack("<d", 0.5)
    assert encoded[48:56] == struct.pack("<d", 0.25)
    assert encoded[56:64] == (32).to_bytes(8, "little")
    assert encoded[64:96] == b"\xbb" * 32
    assert encoded[96:112] == struct.pack("<4I", 2, 3, 4, 3)   # Power2, I64, Bmax, M12
    assert encoded[112:128] == struct.pack("<4I", 1, 0, 0, 0)  # Prime, F32, B0, M3
    assert encoded[128:136] == (1234).to_bytes(8, "little")
    assert RoundParameters.from_bytes(encoded) == params


def test_round_parameters_mcu_indices():
    mcu = MaskConfig.mcu()
    params = RoundParameters(bytes(32), 0.1, 0.9, bytes(32), MaskConfigPair(mcu, mcu), 7)
    encoded = params.to_bytes()
    assert encoded[96:112] == struct.pack("<4I", *mcu.bincode_indices())
    assert RoundParameters.from_bytes(encoded).mask_config.vect == mcu


def test_sum_and_seed_dict_layout():
    sums = SumDict({b"a" * 32: b"b" * 32})
    assert sums.to_bytes() == ((1).to_bytes(8, "little") + (32).to_bytes(8, "little") + b"a" * 32
                               + (32).to_bytes(8, "little") + b"b" * 32)
    seeds = UpdateSeedDict({b"a" * 32: b"s" * 80, b"c" * 32: b"t" * 80})
    encoded = seeds.to_bytes()
    assert len(encoded) == 8 + 2 * 128
    assert encoded[8 + 40:8 + 48] == (80).to_bytes(8, "little")


# -- strict decoding ---------------------------------------------------------------------------


def sum_message() -> bytes:
    return Message.from_payload(b"p" * 32, b"c" * 32, Sum(b"s" * 64, b"e" * 32)).encode()


def with_length(buf: bytes, length: int) -> bytes:
    return buf[:128] + length.to_bytes(4, "big") + buf[132:]


def rejects(decode, buf, *words):
    with pytest.raises(DecodeError) as info:
        decode(buf)
    for word in words:
        assert word in str(info.value)
    return info.value


def test_message_header_checks():
    buf = sum_message()
    rejects(Message.decode, buf[:135], "136-byte header")
    rejects(Message.decode, buf + b"\0", "1 trailing bytes")
    rejects(Message.decode, with_length(buf, 233), "length field says 233")
    rejects(Message.decode, with_length(buf, 100), "below the header length")
    rejects(Message.decode, with_length(buf, 2 ** 32 - 1), "length field")
    for tag in (0, 4, 255):
        rejects(Message.decode, buf[:132] + bytes([tag]) + buf[133:], f"unknown tag {tag}")
    rejects(Message.decode, with_length(buf[:200], 200), "sum payload")


def test_message_ignores_other_flags_and_reserved_bytes():
    buf = sum_message()
    decoded = Message.decode(buf[:133] + bytes([0xFE, 0xAB, 0xCD]) + buf[136:])
    assert not decoded.is_multipart and decoded.payload == Message.decode(buf).payload


def test_multipart_flag_means_chunk_payload():
    buf = bytearray(sum_message())
    buf[133] = 0x01
    decoded = Message.decode(bytes(buf))
    assert decoded.is_multipart and decoded.tag is Tag.SUM
    assert isinstance(decoded.payload, Chunk) and len(decoded.payload.data) == 96 - 8
    rejects(Message.decode, with_length(bytes(buf[:140]), 140), "chunk payload", "chunk header")


def test_update_payload_errors_name_the_field():
    obj = MaskObject.from_values(CONFIGS[0], CONFIGS[0], [1, 2], 3)
    pk = b"k" * 32
    good = Update(bytes(64), bytes(64), obj, LocalSeedDict({pk: bytes(80)})).to_bytes()
    dict_at = len(good) - 116
    twice = (4 + 224).to_bytes(4, "big") + (pk + bytes(80)) * 2
    rejects(Update.from_bytes, good[:dict_at] + twice,
            "update payload: local seed dict: duplicated key " + pk.hex())
    rejects(Update.from_bytes, good + b"\0", "update payload: local seed dict: length field")
    rejects(Update.from_bytes, good[:100], "update payload: update signature")
    rejects(Update.from_bytes, good[:50], "update payload: sum signature")
    bad_config = good[:128] + b"\x09" + good[129:]
    rejects(Update.from_bytes, bad_config, "update payload: masked model", "unknown group type 9")


def test_local_seed_dict_checks():
    entry = b"k" * 32 + b"s" * 80
    rejects(LocalSeedDict.from_bytes, b"\0\0\0", "local seed dict", "length")
    rejects(LocalSeedDict.from_bytes, (116).to_bytes(4, "big") + entry + b"\0" * 4,
            "length field says 116 bytes, 120 present")
    rejects(LocalSeedDict.from_bytes, (228).to_bytes(4, "big") + entry, "length field says 228")
    rejects(LocalSeedDict.from_bytes, (10).to_bytes(4, "big") + b"\0" * 6, "trailing bytes")
    rejects(LocalSeedDict.from_bytes, (2).to_bytes(4, "big"), "below 4")
    assert LocalSeedDict.from_bytes((4).to_bytes(4, "big")) == {}


def test_sum2_trailing_bytes():
    good = Sum2(bytes(64), MaskObject.from_values(CONFIGS[0], CONFIGS[0], [1], 1)).to_bytes()
    rejects(Sum2.from_bytes, good + b"\0", "sum2 payload: model mask: 1 trailing bytes")


def test_sum_and_chunk_lengths():
    rejects(Sum.from_bytes, bytes(95), "sum payload: expected 96 bytes")
    rejects(Sum.from_bytes, bytes(97), "sum payload")
    rejects(Chunk.from_bytes, bytes(7), "chunk payload")
    assert Chunk.from_bytes(bytes([0, 1, 0, 2, 0xFF, 9, 9, 9])) == Chunk(1, 2, True, b"")


def test_round_parameters_checks():
    good = RoundParameters(bytes(32), 0.5, 0.5, bytes(32),
                           MaskConfigPair(CONFIGS[0], CONFIGS[0]), 10).to_bytes()
    rejects(RoundParameters.from_bytes, good[:-1], "expected 136 bytes")
    rejects(RoundParameters.from_bytes, good + b"\0", "expected 136 bytes")
    rejects(RoundParameters.from_bytes, (31).to_bytes(8, "little") + good[8:], "pk", "31")
    rejects(RoundParameters.from_bytes, good[:56] + (33).to_bytes(8, "little") + good[64:], "seed")
    rejects(RoundParameters.from_bytes, good[:128] + (2 ** 32).to_bytes(8, "little"),
            "model length")
    assert RoundParameters.from_bytes(good[:128] + (2 ** 32 - 1).to_bytes(8, "little"))
    rejects(RoundParameters.from_bytes, good[:104] + struct.pack("<I", 5) + good[108:],
            "vect mask config", "bound type index 5")
    rejects(RoundParameters.from_bytes, good[:112] + struct.pack("<I", 7) + good[116:],
            "unit mask config", "group type 7")
    rejects(RoundParameters.from_bytes, good[:124] + struct.pack("<I", 4) + good[128:],
            "unit mask config", "model type index 4")
    nan = RoundParameters.from_bytes(good[:40] + struct.pack("<d", float("nan")) + good[48:])
    assert nan.sum != nan.sum


@pytest.mark.parametrize("cls, entry", [(SumDict, 80), (UpdateSeedDict, 128)])
def test_bincode_map_checks(cls, entry):
    value_len = entry - 48
    one = cls({b"a" * 32: b"v" * value_len}).to_bytes()
    rejects(cls.from_bytes, (2 ** 60).to_bytes(8, "little") + one[8:], "count")
    rejects(cls.from_bytes, (2 ** 64 - 1).to_bytes(8, "little"), "count")
    rejects(cls.from_bytes, one + b"\0", "count 1 needs")
    rejects(cls.from_bytes, one[:7], "count")
    two = (2).to_bytes(8, "little") + one[8:] * 2
    rejects(cls.from_bytes, two, "duplicated key " + (b"a" * 32).hex())
    bad_key = one[:8] + (31).to_bytes(8, "little") + one[16:]
    rejects(cls.from_bytes, bad_key, "entry 0", "length prefix is 31")
    bad_value = one[:48] + (value_len + 1).to_bytes(8, "little") + one[56:]
    rejects(cls.from_bytes, bad_value, "entry 0", f"length prefix is {value_len + 1}")
    assert cls.from_bytes(bytes(8)) == {}


def bigint(sign: int, digits: list[int], count: int | None = None) -> bytes:
    count = len(digits) if count is None else count
    return struct.pack("<bQ", sign, count) + b"".join(struct.pack("<I", d) for d in digits)


ONE = bigint(1, [1])


@pytest.mark.parametrize("numerator, denominator, words", [
    (bigint(2, [1]), ONE, ["numerator", "sign byte 2"]),
    (bigint(0, [1]), ONE, ["numerator", "sign 0 with 1 digits"]),
    (bigint(1, []), ONE, ["numerator", "sign 1 with 0 digits"]),
    (bigint(1, [1, 0]), ONE, ["numerator", "most significant digit is zero"]),
    (bigint(1, [1], count=2 ** 60), ONE, ["numerator", "digits need"]),
    (ONE, bigint(0, []), ["denominator", "not positive"]),
    (ONE, bigint(-1, [3]), ["denominator", "not positive"]),
])
def test_model_bigint_checks(numerator, denominator, words):
    rejects(Model.from_bytes, (1).to_bytes(8, "little") + numerator + denominator, "model: weight 0",
            *words)


def test_model_count_checks():
    one = Model([Fraction(3, 7)]).to_bytes()
    rejects(Model.from_bytes, (2 ** 60).to_bytes(8, "little") + one[8:], "count")
    rejects(Model.from_bytes, one + b"\0", "1 trailing bytes")
    rejects(Model.from_bytes, one[:-1], "denominator")
    assert Model.from_bytes(bytes(8)) == []


def test_model_accepts_unreduced_fraction():
    encoded = (1).to_bytes(8, "little") + bigint(1, [2]) + bigint(1, [4])
    assert Model.from_bytes(encoded) == [Fraction(1, 2)]


def test_huge_counts_fail_fast():
    start = time.perf_counter()
    for decode in (SumDict.from_bytes, UpdateSeedDict.from_bytes, Model.from_bytes):
        rejects(decode, (2 ** 60).to_bytes(8, "little") + bytes(200), "count")
    assert time.perf_counter() - start < 0.5


# -- fuzzing: nothing but DecodeError escapes --------------------------------------------------


@pytest.mark.parametrize("decode", DECODERS)
@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes(decode, buf):
    decode_or_reject(decode, buf)


@st.composite
def mutated(draw, strategy, encode):
    buf = bytearray(encode(draw(strategy)))
    kind = draw(st.sampled_from(["flip", "flips", "truncate", "extend", "splice"]))
    if kind == "flip" and buf:
        i = draw(st.integers(0, len(buf) - 1))
        buf[i] = draw(st.integers(0, 255))
    elif kind == "flips" and buf:
        for i in draw(st.lists(st.integers(0, len(buf) - 1), min_size=2, max_size=8)):
            buf[i] ^= draw(st.integers(1, 255))
    elif kind == "truncate":
        del buf[draw(st.integers(0, len(buf))):]
    elif kind == "extend":
        buf += draw(st.binary(min_size=1, max_size=40))
    else:
        i = draw(st.integers(0, len(buf)))
        buf[i:i] = draw(st.binary(min_size=1, max_size=16))
    return bytes(buf)


@pytest.mark.parametrize("name", CODECS)
@SETTINGS
@given(data=st.data())
def test_mutations(name, data):
    strategy, encode, decode = CODECS[name]
    decode_or_reject(decode, data.draw(mutated(strategy, encode)))


@SETTINGS
@given(data=st.data())
def test_mutated_payload_inside_message(data):
    """Payload corruption with a consistent header reaches the payload decoders."""
    message = data.draw(messages())
    body = data.draw(mutated(st.just(message.payload), lambda p: p.to_bytes()))
    buf = message.encode()[:128] + (136 + len(body)).to_bytes(4, "big") + message.encode()[132:136]
    decode_or_reject(Message.decode, buf + body)

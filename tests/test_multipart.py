"""Multipart messages: XayNet's size semantics, chunking, and bounded reassembly."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pet.mask import MaskConfig, MaskObject
from pet.multipart import (CHUNK_OVERHEAD, DEFAULT_MAX_MESSAGE_SIZE, MIN_MESSAGE_SIZE,
                           ConflictingChunk, MessageTooLarge, MultipartError, NotMultipart,
                           ReassemblyFull, Reassembler, TooManyChunks, encode_messages,
                           max_payload_size)
from pet.wire import (Chunk, DecodeError, LocalSeedDict, Message, Sum, Sum2, Tag,
                      Update)

CONFIG = MaskConfig.xaynet("Prime", "F32", "B0", "M3")
PARTICIPANT = b"p" * 32
COORDINATOR = b"c" * 32


def update_payload(n: int, s: int = 2) -> Update:
    obj = MaskObject.from_values(CONFIG, CONFIG, [i % CONFIG.order for i in range(n)], 1)
    seeds = LocalSeedDict({bytes([i]) * 32: bytes([i]) * 80 for i in range(s)})
    return Update(b"\x01" * 64, b"\x02" * 64, obj, seeds)


def sum2_payload(n: int) -> Sum2:
    return Sum2(b"\x03" * 64, MaskObject.from_values(CONFIG, CONFIG, [7] * n, 2))


SUM = Sum(b"\x04" * 64, b"\x05" * 32)


def chunk_message(chunk_id, data, last=False, message_id=1, participant=PARTICIPANT,
                  tag=Tag.SUM, coordinator=COORDINATOR) -> Message:
    return Message(bytes(64), participant, coordinator, tag, True,
                   Chunk(chunk_id, message_id, last, data))


# -- sizes -------------------------------------------------------------------------------------


def test_max_payload_size_semantics():
    assert DEFAULT_MAX_MESSAGE_SIZE == 3912
    assert max_payload_size(DEFAULT_MAX_MESSAGE_SIZE) == 3728
    assert max_payload_size(4096) == 3912
    assert max_payload_size(None) == 0 and max_payload_size(0) == 0
    assert MIN_MESSAGE_SIZE == 185 and max_payload_size(185) == 1
    for size in (184, 100, 1, -5):
        with pytest.raises(ValueError, match="below the minimum 185"):
            max_payload_size(size)


@pytest.mark.parametrize("limit", [1, 5, 9, -1])
def test_payload_size_too_small_for_chunks(limit):
    with pytest.raises(ValueError, match="no room for chunk data"):
        encode_messages(PARTICIPANT, COORDINATOR, SUM, limit)


def test_smallest_message_size_cannot_send():
    with pytest.raises(ValueError):
        encode_messages(PARTICIPANT, COORDINATOR, SUM, max_payload_size(MIN_MESSAGE_SIZE))


def test_unlimited_and_fitting_payloads_are_single_messages():
    update = update_payload(2000)
    for limit in (0, len(update.to_bytes())):
        [message] = encode_messages(PARTICIPANT, COORDINATOR, update, limit)
        assert message == Message.from_payload(PARTICIPANT, COORDINATOR, update)


def test_default_size_chunking():
    update = update_payload(2000)
    data = update.to_bytes()
    limit = max_payload_size(DEFAULT_MAX_MESSAGE_SIZE)
    messages = encode_messages(PARTICIPANT, COORDINATOR, update, limit, message_id=0xBEEF)
    assert len(messages) == math.ceil(len(data) / 3720)
    for i, message in enumerate(messages):
        chunk = message.payload
        assert message.tag is Tag.UPDATE and message.is_multipart
        assert message.signature == bytes(64)
        assert (chunk.id, chunk.message_id, chunk.last) == (i, 0xBEEF, i == len(messages) - 1)
        assert chunk.data == data[i * 3720:(i + 1) * 3720]
        sealed = len(message.encode()) + 48
        assert sealed <= DEFAULT_MAX_MESSAGE_SIZE
    assert len(messages[0].encode()) + 48 == DEFAULT_MAX_MESSAGE_SIZE


@pytest.mark.parametrize("extra, chunks", [(0, 1), (1, 2)])
def test_chunk_count_at_the_boundary(extra, chunks):
    data_len = len(SUM.to_bytes())  # 96
    if extra == 0:
        assert len(encode_messages(PARTICIPANT, COORDINATOR, SUM, data_len)) == 1
    else:
        messages = encode_messages(PARTICIPANT, COORDINATOR, SUM, data_len - extra)
        assert len(messages) == chunks
        assert [len(m.payload.data) for m in messages] == [87, 9]


def test_random_message_id_shared_by_all_chunks():
    messages = encode_messages(PARTICIPANT, COORDINATOR, SUM, 20)
    assert len(messages) == 8  # ceil(96 / 12)
    assert len({m.payload.message_id for m in messages}) == 1


# -- reassembly round trips --------------------------------------------------------------------

payloads = st.one_of(
    st.just(SUM),
    st.integers(0, 300).map(sum2_payload),
    st.tuples(st.integers(0, 300), st.integers(0, 5)).map(lambda a: update_payload(*a)),
)


@settings(max_examples=200, deadline=None)
@given(payloads, st.integers(10, 600), st.data())
def test_shuffled_duplicated_chunks_reassemble(payload, limit, data):
    messages = encode_messages(PARTICIPANT, COORDINATOR, payload, limit)
    length = len(payload.to_bytes())
    if length <= limit:
        assert len(messages) == 1 and not messages[0].is_multipart
        return
    assert len(messages) == math.ceil(length / (limit - 8))
    for i, message in enumerate(messages):
        message.signature = i.to_bytes(2, "big") * 32
    order = data.draw(st.permutations(messages))
    # duplicates go anywhere before the completing chunk
    extra = data.draw(st.lists(st.sampled_from(order[:-1]), max_size=5))
    arrivals = order[:-1] + extra
    arrivals = data.draw(st.permutations(arrivals)) + [order[-1]]
    reassembler = Reassembler()
    results = [reassembler.add(m) for m in arrivals]
    assert results[:-1] == [None] * (len(arrivals) - 1)
    rebuilt = results[-1]
    assert rebuilt == Message(order[-1].signature, PARTICIPANT, COORDINATOR, payload.TAG, False,
                              payload)
    assert rebuilt.payload == payload
    assert reassembler.pending_messages == 0 and reassembler.pending_bytes == 0
    assert reassembler.completed == 1


def test_interleaved_messages_from_two_participants():
    reassembler = Reassembler()
    a = encode_messages(b"a" * 32, COORDINATOR, update_payload(50), 100, message_id=7)
    b = encode_messages(b"b" * 32, COORDINATOR, sum2_payload(50), 100, message_id=7)
    done = []
    for pair in zip(a, b):
        for message in pair:
            result = reassembler.add(message)
            if result:
                done.append(result.payload)
    for message in a[len(b):] + b[len(a):]:
        result = reassembler.add(message)
        if result:
            done.append(result.payload)
    assert sorted(done, key=lambda p: p.TAG) == [update_payload(50), sum2_payload(50)]
    assert reassembler.pending_messages == 0


# -- errors ------------------------------------------------------------------------------------


def test_plain_message_is_not_multipart():
    with pytest.raises(NotMultipart):
        Reassembler().add(Message.from_payload(PARTICIPANT, COORDINATOR, SUM))


def test_identical_duplicate_is_ignored():
    reassembler = Reassembler()
    assert reassembler.add(chunk_message(0, b"x" * 50)) is None
    assert reassembler.add(chunk_message(0, b"x" * 50)) is None
    assert reassembler.pending_bytes == 50 + CHUNK_OVERHEAD
    result = reassembler.add(chunk_message(1, b"y" * 46, last=True))
    assert result.payload == Sum(b"x" * 50 + b"y" * 14, b"y" * 32)


@pytest.mark.parametrize("first, second, words", [
    (chunk_message(0, b"x"), chunk_message(0, b"z"), "twice with different contents"),
    (chunk_message(0, b"x"), chunk_message(0, b"x", last=True), "twice with different contents"),
    (chunk_message(0, b"x"), chunk_message(1, b"x", tag=Tag.SUM2), "has tag SUM2"),
    (chunk_message(0, b"x"), chunk_message(1, b"x", coordinator=b"d" * 32), "coordinator key"),
    (chunk_message(2, b"x", last=True), chunk_message(3, b"x"), "after the last chunk 2"),
    (chunk_message(2, b"x", last=True), chunk_message(1, b"x", last=True), "after the last chunk 2"),
    (chunk_message(2, b"x"), chunk_message(1, b"x", last=True), "higher id"),
])
def test_conflicting_chunks_drop_the_message(first, second, words):
    reassembler = Reassembler()
    assert reassembler.add(first) is None
    with pytest.raises(ConflictingChunk, match=words):
        reassembler.add(second)
    assert reassembler.pending_messages == 0 and reassembler.pending_bytes == 0
    assert reassembler.dropped == 1


def test_undecodable_payload_raises_decode_error():
    reassembler = Reassembler()
    reassembler.add(chunk_message(0, b"x" * 50))
    with pytest.raises(DecodeError, match="sum payload: expected 96 bytes"):
        reassembler.add(chunk_message(1, b"x" * 45, last=True))
    assert reassembler.pending_messages == 0 and reassembler.dropped == 1


def test_too_many_chunks():
    reassembler = Reassembler(max_chunks=3)
    with pytest.raises(TooManyChunks, match="more than 3 chunks"):
        reassembler.add(chunk_message(3, b"x"))
    assert reassembler.pending_messages == 0
    for i in range(3):
        reassembler.add(chunk_message(i, b"x", message_id=2))
    with pytest.raises(TooManyChunks):
        reassembler.add(chunk_message(5, b"x", message_id=2))
    assert reassembler.pending_messages == 0 and reassembler.dropped == 1


def test_message_too_large():
    reassembler = Reassembler(max_message_bytes=100)
    with pytest.raises(MessageTooLarge, match="exceed 100 bytes"):
        reassembler.add(chunk_message(0, b"x" * 101))
    reassembler.add(chunk_message(0, b"x" * 60))
    with pytest.raises(MessageTooLarge):
        reassembler.add(chunk_message(1, b"x" * 41))
    assert reassembler.pending_messages == 0 and reassembler.pending_bytes == 0
    reassembler.add(chunk_message(0, b"x" * 60, message_id=3))
    assert reassembler.add(chunk_message(1, b"x" * 36, last=True, message_id=3)) is not None


def test_pending_message_cap_refuses_only_new_messages():
    reassembler = Reassembler(max_pending_messages=2)
    reassembler.add(chunk_message(0, b"a" * 48, message_id=1))
    reassembler.add(chunk_message(0, b"b" * 48, message_id=2))
    with pytest.raises(ReassemblyFull, match="reassembly buffer full"):
        reassembler.add(chunk_message(0, b"c" * 48, message_id=3))
    assert reassembler.refused == 1 and reassembler.pending_messages == 2
    result = reassembler.add(chunk_message(1, b"a" * 48, last=True, message_id=1))
    assert result.payload == Sum(b"a" * 64, b"a" * 32)
    assert reassembler.add(chunk_message(0, b"c" * 48, message_id=3)) is None


def test_pending_byte_cap():
    cap = 2 * (CHUNK_OVERHEAD + 48)
    reassembler = Reassembler(max_pending_bytes=cap)
    reassembler.add(chunk_message(0, b"a" * 48, message_id=1))
    reassembler.add(chunk_message(0, b"b" * 48, message_id=2))
    assert reassembler.pending_bytes == cap
    with pytest.raises(ReassemblyFull, match="bytes pending"):
        reassembler.add(chunk_message(0, b"c", message_id=3))
    # an existing message cannot grow past the cap either, but it is kept
    with pytest.raises(ReassemblyFull):
        reassembler.add(chunk_message(1, b"a" * 48, last=True, message_id=1))
    assert reassembler.pending_messages == 2 and reassembler.pending_bytes == cap


def test_expiry_with_injected_clock():
    now = [0.0]
    reassembler = Reassembler(max_age=600, clock=lambda: now[0])
    reassembler.add(chunk_message(0, b"a" * 48, message_id=1))
    now[0] = 300
    reassembler.add(chunk_message(0, b"b" * 48, message_id=2))
    now[0] = 600
    assert reassembler.expire() == 0 and reassembler.pending_messages == 2
    now[0] = 600.5
    assert reassembler.expire() == 1
    assert reassembler.pending_messages == 1 and reassembler.expired == 1
    assert reassembler.pending_bytes == CHUNK_OVERHEAD + 48
    now[0] = 901
    # expiry also runs on add: the late chunk of message 2 starts a fresh builder
    assert reassembler.add(chunk_message(1, b"b" * 48, last=True, message_id=2)) is None
    assert reassembler.expired == 2 and reassembler.pending_messages == 1


def test_flood_of_unfinished_messages_stays_bounded():
    now = [0.0]
    cap = 64 * 1024
    reassembler = Reassembler(max_pending_messages=100_000, max_pending_bytes=cap, max_age=60,
                              clock=lambda: now[0])
    honest = encode_messages(b"h" * 32, COORDINATOR, update_payload(300), 500)
    reassembler.add(honest[0])
    refused = 0
    for i in range(3000):
        participant = i.to_bytes(4, "big") * 8
        for chunk_id in range(3):
            try:
                reassembler.add(chunk_message(chunk_id, bytes(100), message_id=i,
                                              participant=participant))
            except ReassemblyFull:
                refused += 1
            assert reassembler.pending_bytes <= cap
    assert refused > 0 and reassembler.refused == refused
    # tiny chunks are bounded by their bookkeeping charge, not only by their data
    for i in range(1000):
        try:
            reassembler.add(chunk_message(0, b"", message_id=i, participant=b"t" * 32))
        except ReassemblyFull:
            pass
        assert reassembler.pending_bytes <= cap
    assert reassembler.pending_messages * CHUNK_OVERHEAD <= cap
    # once the flood expires, the honest participant's retransmission gets through
    now[0] = 61
    results = [reassembler.add(m) for m in honest]
    assert results[-1].payload == update_payload(300)
    assert reassembler.pending_messages == 0 and reassembler.pending_bytes == 0


def test_errors_are_multipart_errors():
    for cls in (NotMultipart, MessageTooLarge, TooManyChunks, ReassemblyFull, ConflictingChunk):
        assert issubclass(cls, MultipartError)

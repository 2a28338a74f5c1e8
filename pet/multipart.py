"""Multipart messages: splitting a payload into chunks, and putting it back together.

A participant whose payload exceeds its maximum payload size sends it as a
series of Chunk messages, each signed and sealed on its own. The coordinator
collects them per (participant_pk, message_id) until the last one arrives.
XayNet's coordinator keeps incomplete messages forever; `Reassembler` bounds
them by size, count and age so a flood of unfinished messages cannot exhaust
memory.
"""

from __future__ import annotations

import math
import secrets
import time
from dataclasses import dataclass, field

from pet.wire import (CHUNK_HEADER_LENGTH, HEADER_LENGTH, PAYLOAD_TYPES, SIGNATURE_LENGTH, Chunk,
                      DecodeError, Message, Sum, Sum2, Tag, Update)

__all__ = [
    "SEAL_OVERHEAD", "MIN_MESSAGE_SIZE", "DEFAULT_MAX_MESSAGE_SIZE", "max_payload_size",
    "encode_messages", "Reassembler", "MultipartError", "NotMultipart", "MessageTooLarge",
    "TooManyChunks", "ReassemblyFull", "ConflictingChunk",
]

SEAL_OVERHEAD = 48  # crypto_box_seal: ephemeral pk (32) + MAC (16)
MIN_MESSAGE_SIZE = HEADER_LENGTH + SEAL_OVERHEAD + 1  # 185
# XayNet's default (4096 - 184); max_payload_size subtracts 184 again, giving 3728.
DEFAULT_MAX_MESSAGE_SIZE = 3912
_MAX_CHUNKS_PER_MESSAGE = 1 << 16  # chunk ids are u16


def max_payload_size(max_message_size: int | None) -> int:
    """The participant's payload limit for a maximum sealed message size; 0 = unlimited."""
    if not max_message_size:
        return 0
    if max_message_size < MIN_MESSAGE_SIZE:
        raise ValueError(f"max message size {max_message_size} is below the minimum "
                         f"{MIN_MESSAGE_SIZE} (header {HEADER_LENGTH} + seal {SEAL_OVERHEAD} + 1)")
    return max_message_size - HEADER_LENGTH - SEAL_OVERHEAD


def encode_messages(participant_pk: bytes, coordinator_pk: bytes, payload: Sum | Update | Sum2,
                    max_payload_size: int, message_id: int | None = None) -> list[Message]:
    """The unsigned messages that carry payload: one plain message, or chunks of
    at most max_payload_size - 8 data bytes when the payload exceeds max_payload_size
    (0 = never split). message_id is random unless given."""
    limit = max_payload_size
    if limit < 0 or 0 < limit <= CHUNK_HEADER_LENGTH + 1:
        raise ValueError(f"max payload size {limit} leaves no room for chunk data: it must be 0 "
                         f"(unlimited) or above {CHUNK_HEADER_LENGTH + 1}")
    data = payload.to_bytes()
    if limit == 0 or len(data) <= limit:
        return [Message.from_payload(participant_pk, coordinator_pk, payload)]
    size = limit - CHUNK_HEADER_LENGTH
    count = math.ceil(len(data) / size)
    if count > _MAX_CHUNKS_PER_MESSAGE:
        raise ValueError(f"{len(data)} payload bytes need {count} chunks of {size} bytes; "
                         f"chunk ids allow at most {_MAX_CHUNKS_PER_MESSAGE}")
    if message_id is None:
        message_id = secrets.randbits(16)
    return [Message(bytes(SIGNATURE_LENGTH), participant_pk, coordinator_pk, payload.TAG, True,
                    Chunk(i, message_id, i == count - 1, data[i * size:(i + 1) * size]))
            for i in range(count)]


class MultipartError(Exception):
    """A chunk that cannot be used for reassembly."""


class NotMultipart(MultipartError):
    """The message given for reassembly is not a chunk."""


class MessageTooLarge(MultipartError):
    """The chunks of one message add up to more than the per-message limit."""


class TooManyChunks(MultipartError):
    """One message is split into more chunks than allowed."""


class ReassemblyFull(MultipartError):
    """Too many incomplete messages are pending; new ones are refused until some finish or expire."""


class ConflictingChunk(MultipartError):
    """A chunk disagrees with the chunks already received for its message."""


# Bookkeeping charged per stored chunk, so a flood of tiny chunks is bounded too.
CHUNK_OVERHEAD = 128


@dataclass
class _Builder:
    tag: Tag
    coordinator_pk: bytes
    created: float
    chunks: dict[int, tuple[bool, bytes]] = field(default_factory=dict)
    last_id: int | None = None
    data_bytes: int = 0

    @property
    def charge(self) -> int:
        return self.data_bytes + CHUNK_OVERHEAD * len(self.chunks)


class Reassembler:
    """Coordinator side: collects chunks per (participant_pk, message_id) and
    returns the rebuilt message once every chunk up to the LAST one is in.

    Chunks may come in any order and more than once. Bounds: max_message_bytes
    of payload and max_chunks per message; incomplete messages older than
    max_age seconds are dropped; at most max_pending_messages incomplete
    messages holding at most max_pending_bytes (chunk data plus CHUNK_OVERHEAD
    per chunk) across all participants. When full, new messages are refused and
    chunks that would pass the byte cap are refused; pending messages are kept.
    """

    def __init__(self, max_message_bytes: int = 64 << 20, max_chunks: int = 1 << 16,
                 max_age: float = 600.0, max_pending_messages: int = 10_000,
                 max_pending_bytes: int = 256 << 20, clock=time.monotonic):
        self.max_message_bytes = max_message_bytes
        self.max_chunks = max_chunks
        self.max_age = max_age
        self.max_pending_messages = max_pending_messages
        self.max_pending_bytes = max_pending_bytes
        self.clock = clock
        self._builders: dict[tuple[bytes, int], _Builder] = {}  # oldest first
        self._pending_bytes = 0
        self.completed = 0
        self.dropped = 0   # incomplete messages discarded because of a bad chunk
        self.expired = 0   # incomplete messages discarded because of age
        self.refused = 0   # chunks refused because the buffer was full

    @property
    def pending_messages(self) -> int:
        return len(self._builders)

    @property
    def pending_bytes(self) -> int:
        return self._pending_bytes

    def expire(self) -> int:
        """Drop incomplete messages older than max_age; returns how many."""
        now = self.clock()
        count = 0
        while self._builders:
            key, builder = next(iter(self._builders.items()))
            if now - builder.created <= self.max_age:
                break
            self._remove(key)
            count += 1
        self.expired += count
        return count

    def add(self, message: Message) -> Message | None:
        """Take one chunk; returns the rebuilt message when it was the missing piece.

        Raises a MultipartError for chunks that cannot be used, and DecodeError if the
        rebuilt payload does not decode. The rebuilt message carries the signature of
        the chunk that completed it (every chunk was verified on arrival)."""
        if not message.is_multipart or not isinstance(message.payload, Chunk):
            raise NotMultipart("not a multipart message: only chunks can be reassembled")
        self.expire()
        chunk = message.payload
        key = (message.participant_pk, chunk.message_id)
        builder = self._builders.get(key)
        if builder is None:
            self._check_chunk(chunk, 0, 0)
            self._check_room(CHUNK_OVERHEAD + len(chunk.data), new=True)
            builder = _Builder(message.tag, message.coordinator_pk, self.clock())
            self._builders[key] = builder
        else:
            try:
                if self._is_duplicate(message, builder):
                    return None
                self._check_chunk(chunk, len(builder.chunks), builder.data_bytes)
            except MultipartError:
                self._remove(key)
                self.dropped += 1
                raise
            self._check_room(CHUNK_OVERHEAD + len(chunk.data), new=False)

        builder.chunks[chunk.id] = (chunk.last, chunk.data)
        builder.data_bytes += len(chunk.data)
        self._pending_bytes += CHUNK_OVERHEAD + len(chunk.data)
        if chunk.last:
            builder.last_id = chunk.id
        if builder.last_id is None or len(builder.chunks) != builder.last_id + 1:
            return None

        self._remove(key)
        data = b"".join(builder.chunks[i][1] for i in range(builder.last_id + 1))
        try:
            payload = PAYLOAD_TYPES[builder.tag].from_bytes(data)
        except DecodeError:
            self.dropped += 1
            raise
        self.completed += 1
        return Message(message.signature, message.participant_pk, builder.coordinator_pk,
                       builder.tag, False, payload)

    # -- checks -------------------------------------------------------------------------------

    def _is_duplicate(self, message: Message, builder: _Builder) -> bool:
        """True for an exact repeat; raises ConflictingChunk for a chunk that disagrees."""
        chunk = message.payload
        if message.tag != builder.tag:
            raise ConflictingChunk(f"chunk {chunk.id} of message {chunk.message_id} has tag "
                                   f"{message.tag.name}, earlier chunks {builder.tag.name}")
        if message.coordinator_pk != builder.coordinator_pk:
            raise ConflictingChunk(f"chunk {chunk.id} of message {chunk.message_id} is addressed "
                                   f"to a different coordinator key than earlier chunks")
        if chunk.id in builder.chunks:
            if builder.chunks[chunk.id] == (chunk.last, chunk.data):
                return True
            raise ConflictingChunk(f"chunk {chunk.id} of message {chunk.message_id} arrived "
                                   f"twice with different contents")
        if builder.last_id is not None and (chunk.last or chunk.id > builder.last_id):
            raise ConflictingChunk(f"chunk {chunk.id} of message {chunk.message_id} comes after "
                                   f"the last chunk {builder.last_id}")
        if chunk.last and any(i > chunk.id for i in builder.chunks):
            raise ConflictingChunk(f"chunk {chunk.id} of message {chunk.message_id} is marked "
                                   f"last, but a chunk with a higher id was already received")
        return False

    def _check_chunk(self, chunk: Chunk, chunks_held: int, bytes_held: int) -> None:
        if chunk.id >= self.max_chunks or chunks_held + 1 > self.max_chunks:
            raise TooManyChunks(f"message {chunk.message_id} would need more than "
                                f"{self.max_chunks} chunks")
        if bytes_held + len(chunk.data) > self.max_message_bytes:
            raise MessageTooLarge(f"message {chunk.message_id} would exceed "
                                  f"{self.max_message_bytes} bytes")

    def _check_room(self, charge: int, new: bool) -> None:
        if new and len(self._builders) >= self.max_pending_messages:
            self.refused += 1
            raise ReassemblyFull(f"reassembly buffer full: {len(self._builders)} incomplete "
                                 f"messages pending (limit {self.max_pending_messages})")
        if self._pending_bytes + charge > self.max_pending_bytes:
            self.refused += 1
            raise ReassemblyFull(f"reassembly buffer full: {self._pending_bytes} bytes pending, "
                                 f"{charge} more would exceed {self.max_pending_bytes}")

    def _remove(self, key: tuple[bytes, int]) -> None:
        builder = self._builders.pop(key)
        self._pending_bytes -= builder.charge

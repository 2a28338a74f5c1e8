"""XayNet's bytes: PET messages and the coordinator's REST encodings.

PET message = 136-byte header | payload (Sum, Update, Sum2, or a Chunk of one).
The REST bodies (`/params`, `/sums`, `/seeds`, `/model`) are bincode 1.x:
little-endian, u64 length prefixes, enums as u32 variant indices.

Decoders take bytes, bytearray or memoryview and raise DecodeError, naming
the field, for any malformed input; they never trust a count before checking
that the bytes it claims are present.
"""

from __future__ import annotations

import enum
import struct
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction

from pet.errors import DecodeError
from pet.mask.config import MaskConfig
from pet.mask.objects import MaskObject

__all__ = [
    "DecodeError", "Tag", "HEADER_LENGTH", "MULTIPART", "LAST_CHUNK", "SIGNATURE_LENGTH",
    "PUBLIC_KEY_LENGTH", "ENCRYPTED_SEED_LENGTH", "CHUNK_HEADER_LENGTH", "Sum", "Update", "Sum2",
    "Chunk", "LocalSeedDict", "Message", "PAYLOAD_TYPES", "MaskConfigPair", "RoundParameters",
    "SumDict", "UpdateSeedDict", "Model",
]

HEADER_LENGTH = 136
MULTIPART = 0x01
LAST_CHUNK = 0x01
SIGNATURE_LENGTH = 64
PUBLIC_KEY_LENGTH = 32
ENCRYPTED_SEED_LENGTH = 80
CHUNK_HEADER_LENGTH = 8
SEED_ENTRY_LENGTH = PUBLIC_KEY_LENGTH + ENCRYPTED_SEED_LENGTH  # 112

_U16 = 0xFFFF
_U32 = 0xFFFF_FFFF


class Tag(enum.IntEnum):
    SUM = 1
    UPDATE = 2
    SUM2 = 3


# -- helpers -----------------------------------------------------------------------------------


def _view(buf) -> memoryview:
    """A flat byte view of the input, without copying when possible."""
    if not isinstance(buf, (bytes, bytearray, memoryview)):
        raise TypeError(f"expected bytes, bytearray or memoryview, got {type(buf).__name__}")
    view = memoryview(buf)
    if view.format != "B" or view.ndim != 1 or not view.c_contiguous:
        view = memoryview(view.tobytes())
    return view


@contextmanager
def _decoding(what: str):
    """Prefix any DecodeError raised inside with the name of the enclosing structure."""
    try:
        yield
    except DecodeError as e:
        raise type(e)(f"{what}: {e}") from None


class _Reader:
    """Takes fields off the front of a buffer; running short is a DecodeError naming the field."""

    def __init__(self, buf):
        self.view = _view(buf)
        self.pos = 0

    @property
    def remaining(self) -> int:
        return len(self.view) - self.pos

    def take(self, n: int, field: str) -> bytes:
        if n > self.remaining:
            raise DecodeError(f"{field}: need {n} bytes, only {self.remaining} left")
        out = self.view[self.pos:self.pos + n].tobytes()
        self.pos += n
        return out

    def rest(self) -> memoryview:
        out = self.view[self.pos:]
        self.pos = len(self.view)
        return out

    def u64(self, field: str) -> int:
        return int.from_bytes(self.take(8, field), "little")

    def prefixed(self, n: int, field: str) -> bytes:
        """A bincode byte string whose u64 length prefix must be exactly n."""
        length = self.u64(f"{field} length")
        if length != n:
            raise DecodeError(f"{field}: length prefix is {length}, expected {n}")
        return self.take(n, field)

    def finish(self) -> None:
        if self.remaining:
            raise DecodeError(f"{self.remaining} trailing bytes")


def _check_bytes(value, n: int, field: str) -> bytes:
    """Constructor check (a programming error, not a decode error)."""
    value = bytes(value)
    if len(value) != n:
        raise ValueError(f"{field} must be {n} bytes, got {len(value)}")
    return value


def _mask_object(reader: _Reader, field: str) -> MaskObject:
    with _decoding(field):
        obj, used = MaskObject.decode_prefix(reader.view[reader.pos:], "mask object")
    reader.pos += used
    return obj


# -- PET payloads ------------------------------------------------------------------------------


class LocalSeedDict(dict):
    """sum_pk (32) -> encrypted mask seed (80), in an Update payload.

    Layout: u32 BE total length (these 4 bytes included) | k x (pk | seed),
    written in insertion order.
    """

    def to_bytes(self) -> bytes:
        parts = [(4 + SEED_ENTRY_LENGTH * len(self)).to_bytes(4, "big")]
        for pk, seed in self.items():
            parts.append(_check_bytes(pk, PUBLIC_KEY_LENGTH, "local seed dict key"))
            parts.append(_check_bytes(seed, ENCRYPTED_SEED_LENGTH, "local seed dict value"))
        return b"".join(parts)

    def byte_len(self) -> int:
        return 4 + SEED_ENTRY_LENGTH * len(self)

    @classmethod
    def from_bytes(cls, buf) -> "LocalSeedDict":
        with _decoding("local seed dict"):
            r = _Reader(buf)
            length = int.from_bytes(r.take(4, "length"), "big")
            if length < 4:
                raise DecodeError(f"length field {length} is below 4")
            if length != len(r.view):
                raise DecodeError(f"length field says {length} bytes, {len(r.view)} present")
            if (length - 4) % SEED_ENTRY_LENGTH:
                raise DecodeError(f"{length - 4} entry bytes are not a multiple of "
                                  f"{SEED_ENTRY_LENGTH} (trailing bytes)")
            out = cls()
            for _ in range((length - 4) // SEED_ENTRY_LENGTH):
                pk = r.take(PUBLIC_KEY_LENGTH, "sum participant pk")
                if pk in out:
                    raise DecodeError(f"duplicated key {pk.hex()}")
                out[pk] = r.take(ENCRYPTED_SEED_LENGTH, "encrypted mask seed")
            return out


@dataclass
class Sum:
    """A sum participant's ephemeral key, sent in the Sum phase (96 bytes)."""

    TAG = Tag.SUM
    LENGTH = SIGNATURE_LENGTH + PUBLIC_KEY_LENGTH

    sum_signature: bytes
    ephm_pk: bytes

    def __post_init__(self):
        self.sum_signature = _check_bytes(self.sum_signature, SIGNATURE_LENGTH, "sum_signature")
        self.ephm_pk = _check_bytes(self.ephm_pk, PUBLIC_KEY_LENGTH, "ephm_pk")

    def to_bytes(self) -> bytes:
        return self.sum_signature + self.ephm_pk

    @classmethod
    def from_bytes(cls, buf) -> "Sum":
        with _decoding("sum payload"):
            r = _Reader(buf)
            if r.remaining != cls.LENGTH:
                raise DecodeError(f"expected {cls.LENGTH} bytes, got {r.remaining}")
            return cls(r.take(SIGNATURE_LENGTH, "sum signature"), r.take(PUBLIC_KEY_LENGTH, "ephm pk"))


@dataclass
class Update:
    """An update participant's masked model and its mask seed, encrypted for each sum participant."""

    TAG = Tag.UPDATE

    sum_signature: bytes
    update_signature: bytes
    masked_model: MaskObject
    local_seed_dict: LocalSeedDict

    def __post_init__(self):
        self.sum_signature = _check_bytes(self.sum_signature, SIGNATURE_LENGTH, "sum_signature")
        self.update_signature = _check_bytes(self.update_signature, SIGNATURE_LENGTH,
                                             "update_signature")
        if not isinstance(self.local_seed_dict, LocalSeedDict):
            self.local_seed_dict = LocalSeedDict(self.local_seed_dict)

    def to_bytes(self) -> bytes:
        return (self.sum_signature + self.update_signature + self.masked_model.to_bytes()
                + self.local_seed_dict.to_bytes())

    @classmethod
    def from_bytes(cls, buf) -> "Update":
        with _decoding("update payload"):
            r = _Reader(buf)
            sum_signature = r.take(SIGNATURE_LENGTH, "sum signature")
            update_signature = r.take(SIGNATURE_LENGTH, "update signature")
            masked_model = _mask_object(r, "masked model")
            return cls(sum_signature, update_signature, masked_model,
                       LocalSeedDict.from_bytes(r.rest()))


@dataclass
class Sum2:
    """A sum participant's global mask, sent in the Sum2 phase."""

    TAG = Tag.SUM2

    sum_signature: bytes
    model_mask: MaskObject

    def __post_init__(self):
        self.sum_signature = _check_bytes(self.sum_signature, SIGNATURE_LENGTH, "sum_signature")

    def to_bytes(self) -> bytes:
        return self.sum_signature + self.model_mask.to_bytes()

    @classmethod
    def from_bytes(cls, buf) -> "Sum2":
        with _decoding("sum2 payload"):
            r = _Reader(buf)
            sum_signature = r.take(SIGNATURE_LENGTH, "sum signature")
            model_mask = _mask_object(r, "model mask")
            with _decoding("model mask"):
                r.finish()
            return cls(sum_signature, model_mask)


@dataclass
class Chunk:
    """One piece of a payload too large for one message.

    Layout: id u16 BE | message_id u16 BE | flags (bit0 = last) | 3 reserved | data.
    """

    id: int
    message_id: int
    last: bool
    data: bytes

    def __post_init__(self):
        for field, value in (("id", self.id), ("message_id", self.message_id)):
            if not 0 <= value <= _U16:
                raise ValueError(f"chunk {field} must fit in a u16, got {value}")
        self.last = bool(self.last)
        self.data = bytes(self.data)

    def to_bytes(self) -> bytes:
        return struct.pack(">HHB3x", self.id, self.message_id,
                           LAST_CHUNK if self.last else 0) + self.data

    @classmethod
    def from_bytes(cls, buf) -> "Chunk":
        with _decoding("chunk payload"):
            r = _Reader(buf)
            header = r.take(CHUNK_HEADER_LENGTH, "chunk header")
            chunk_id, message_id, flags = struct.unpack_from(">HHB", header)
            return cls(chunk_id, message_id, bool(flags & LAST_CHUNK), r.rest().tobytes())


PAYLOAD_TYPES = {Tag.SUM: Sum, Tag.UPDATE: Update, Tag.SUM2: Sum2}


# -- PET message -------------------------------------------------------------------------------


@dataclass
class Message:
    """Header plus payload. The Ed25519 signature covers `encode()[SIGNATURE_LENGTH:]`;
    it is all zeros until the message is signed.

    Header: signature 64 | participant_pk 32 | coordinator_pk 32 | length u32 BE
    (whole message) | tag | flags | 2 reserved zero bytes.
    """

    signature: bytes
    participant_pk: bytes
    coordinator_pk: bytes
    tag: Tag
    is_multipart: bool
    payload: Sum | Update | Sum2 | Chunk

    def __post_init__(self):
        self.signature = _check_bytes(self.signature, SIGNATURE_LENGTH, "signature")
        self.participant_pk = _check_bytes(self.participant_pk, PUBLIC_KEY_LENGTH, "participant_pk")
        self.coordinator_pk = _check_bytes(self.coordinator_pk, PUBLIC_KEY_LENGTH, "coordinator_pk")
        self.tag = Tag(self.tag)
        self.is_multipart = bool(self.is_multipart)
        if self.is_multipart:
            if not isinstance(self.payload, Chunk):
                raise ValueError("a multipart message carries a Chunk payload")
        elif not isinstance(self.payload, PAYLOAD_TYPES[self.tag]):
            raise ValueError(f"a {self.tag.name} message carries a {PAYLOAD_TYPES[self.tag].__name__}"
                             f" payload, not {type(self.payload).__name__}")

    @classmethod
    def from_payload(cls, participant_pk: bytes, coordinator_pk: bytes,
                     payload: Sum | Update | Sum2) -> "Message":
        """An unsigned, single-part message; the tag follows from the payload type."""
        if isinstance(payload, Chunk):
            raise ValueError("a chunk needs the tag of the message it belongs to; build it directly")
        return cls(bytes(SIGNATURE_LENGTH), participant_pk, coordinator_pk, payload.TAG, False,
                   payload)

    def encode(self) -> bytes:
        payload = self.payload.to_bytes()
        length = HEADER_LENGTH + len(payload)
        if length > _U32:
            raise ValueError(f"message of {length} bytes does not fit the u32 length field")
        flags = MULTIPART if self.is_multipart else 0
        return (self.signature + self.participant_pk + self.coordinator_pk
                + struct.pack(">IBB2x", length, self.tag, flags) + payload)

    @classmethod
    def decode(cls, buf) -> "Message":
        view = _view(buf)
        if len(view) < HEADER_LENGTH:
            raise DecodeError(f"message: need a {HEADER_LENGTH}-byte header, got {len(view)} bytes")
        length, tag, flags = struct.unpack_from(">IBB", view, 128)
        if length < HEADER_LENGTH:
            raise DecodeError(f"message header: length field {length} is below the header "
                              f"length {HEADER_LENGTH}")
        if length > len(view):
            raise DecodeError(f"message header: length field says {length} bytes, only "
                              f"{len(view)} present")
        if length < len(view):
            raise DecodeError(f"message: {len(view) - length} trailing bytes after the "
                              f"{length} given in the header")
        try:
            tag = Tag(tag)
        except ValueError:
            raise DecodeError(f"message header: unknown tag {tag}") from None
        is_multipart = bool(flags & MULTIPART)
        body = view[HEADER_LENGTH:]
        payload = Chunk.from_bytes(body) if is_multipart else PAYLOAD_TYPES[tag].from_bytes(body)
        return cls(view[0:64].tobytes(), view[64:96].tobytes(), view[96:128].tobytes(), tag,
                   is_multipart, payload)


# -- REST encodings (bincode 1.x) --------------------------------------------------------------


@dataclass(frozen=True)
class MaskConfigPair:
    """Mask configs of the weight vector and of the scalar (XayNet uses one config for both)."""

    vect: MaskConfig
    unit: MaskConfig


_ROUND_PARAMETERS = struct.Struct("<Q32sddQ32s4I4IQ")


@dataclass
class RoundParameters:
    """`GET /params`: 136 bytes.

    model_length is a u64 on the wire; decoding rejects values above 2^32 - 1,
    since a masked model's element count is a u32 in the PET messages.
    """

    LENGTH = _ROUND_PARAMETERS.size

    pk: bytes
    sum: float
    update: float
    seed: bytes
    mask_config: MaskConfigPair
    model_length: int

    def __post_init__(self):
        self.pk = _check_bytes(self.pk, PUBLIC_KEY_LENGTH, "pk")
        self.seed = _check_bytes(self.seed, 32, "seed")

    def to_bytes(self) -> bytes:
        return _ROUND_PARAMETERS.pack(
            PUBLIC_KEY_LENGTH, self.pk, self.sum, self.update, 32, self.seed,
            *self.mask_config.vect.bincode_indices(), *self.mask_config.unit.bincode_indices(),
            self.model_length)

    @classmethod
    def from_bytes(cls, buf) -> "RoundParameters":
        with _decoding("round parameters"):
            view = _view(buf)
            if len(view) != cls.LENGTH:
                raise DecodeError(f"expected {cls.LENGTH} bytes, got {len(view)}")
            (pk_len, pk, sum_p, update_p, seed_len, seed, *indices,
             model_length) = _ROUND_PARAMETERS.unpack(view)
            if pk_len != PUBLIC_KEY_LENGTH:
                raise DecodeError(f"pk: length prefix is {pk_len}, expected {PUBLIC_KEY_LENGTH}")
            if seed_len != 32:
                raise DecodeError(f"seed: length prefix is {seed_len}, expected 32")
            with _decoding("vect mask config"):
                vect = MaskConfig.from_bincode_indices(*indices[:4])
            with _decoding("unit mask config"):
                unit = MaskConfig.from_bincode_indices(*indices[4:])
            if model_length > _U32:
                raise DecodeError(f"model length {model_length} exceeds 2^32 - 1")
            return cls(pk, sum_p, update_p, seed, MaskConfigPair(vect, unit), model_length)


class _BincodeMap(dict):
    """bincode map of fixed-size byte strings: u64 count, then per entry
    u64 KEY_LENGTH | key | u64 VALUE_LENGTH | value."""

    NAME = KEY_NAME = VALUE_NAME = ""
    KEY_LENGTH = VALUE_LENGTH = 0

    @classmethod
    def entry_length(cls) -> int:
        return 16 + cls.KEY_LENGTH + cls.VALUE_LENGTH

    def to_bytes(self) -> bytes:
        parts = [struct.pack("<Q", len(self))]
        for key, value in self.items():
            parts.append(struct.pack("<Q", self.KEY_LENGTH))
            parts.append(_check_bytes(key, self.KEY_LENGTH, f"{self.NAME} key"))
            parts.append(struct.pack("<Q", self.VALUE_LENGTH))
            parts.append(_check_bytes(value, self.VALUE_LENGTH, f"{self.NAME} value"))
        return b"".join(parts)

    @classmethod
    def from_bytes(cls, buf):
        with _decoding(cls.NAME):
            r = _Reader(buf)
            count = r.u64("count")
            if count * cls.entry_length() != r.remaining:
                raise DecodeError(f"count {count} needs {count * cls.entry_length()} bytes of "
                                  f"entries, {r.remaining} present")
            out = cls()
            for i in range(count):
                key = r.prefixed(cls.KEY_LENGTH, f"entry {i} {cls.KEY_NAME}")
                if key in out:
                    raise DecodeError(f"duplicated key {key.hex()}")
                out[key] = r.prefixed(cls.VALUE_LENGTH, f"entry {i} {cls.VALUE_NAME}")
            return out


class SumDict(_BincodeMap):
    """`GET /sums`: sum participant pk -> its ephemeral encryption pk."""

    NAME, KEY_NAME, VALUE_NAME = "sum dict", "sum pk", "ephm pk"
    KEY_LENGTH, VALUE_LENGTH = PUBLIC_KEY_LENGTH, PUBLIC_KEY_LENGTH


class UpdateSeedDict(_BincodeMap):
    """`GET /seeds?pk=`: update participant pk -> mask seed encrypted for the caller."""

    NAME, KEY_NAME, VALUE_NAME = "update seed dict", "update pk", "encrypted mask seed"
    KEY_LENGTH, VALUE_LENGTH = PUBLIC_KEY_LENGTH, ENCRYPTED_SEED_LENGTH


_BIGINT_MIN_LENGTH = 9  # sign byte + u64 digit count


def _encode_bigint(value: int) -> bytes:
    sign = (value > 0) - (value < 0)
    magnitude = abs(value)
    digits = (magnitude.bit_length() + 31) // 32
    return (struct.pack("<bQ", sign, digits) + magnitude.to_bytes(4 * digits, "little"))


def _decode_bigint(r: _Reader, field: str) -> int:
    sign = struct.unpack("<b", r.take(1, f"{field} sign"))[0]
    if sign not in (-1, 0, 1):
        raise DecodeError(f"{field}: sign byte {sign} is not -1, 0 or 1")
    digits = r.u64(f"{field} digit count")
    if 4 * digits > r.remaining:
        raise DecodeError(f"{field}: {digits} digits need {4 * digits} bytes, "
                          f"only {r.remaining} left")
    if (sign == 0) != (digits == 0):
        raise DecodeError(f"{field}: sign {sign} with {digits} digits (zero has sign 0 and no digits)")
    raw = r.take(4 * digits, f"{field} digits")
    if digits and raw[-4:] == bytes(4):
        raise DecodeError(f"{field}: most significant digit is zero")
    return sign * int.from_bytes(raw, "little")


class Model(list):
    """`GET /model`: the global model as exact fractions (`Vec<Ratio<BigInt>>`).

    Layout: u64 count, then per weight numerator and denominator, each as
    sign i8 | u64 digit count | u32 LE digits, least significant first.
    Fractions that are not in lowest terms decode to their reduced value.
    """

    def to_bytes(self) -> bytes:
        parts = [struct.pack("<Q", len(self))]
        for weight in self:
            weight = Fraction(weight)
            parts.append(_encode_bigint(weight.numerator))
            parts.append(_encode_bigint(weight.denominator))
        return b"".join(parts)

    @classmethod
    def from_bytes(cls, buf) -> "Model":
        with _decoding("model"):
            r = _Reader(buf)
            count = r.u64("count")
            if count * 2 * _BIGINT_MIN_LENGTH > r.remaining:
                raise DecodeError(f"count {count} needs at least {count * 2 * _BIGINT_MIN_LENGTH}"
                                  f" bytes, only {r.remaining} present")
            out = cls()
            for i in range(count):
                numerator = _decode_bigint(r, f"weight {i} numerator")
                denominator = _decode_bigint(r, f"weight {i} denominator")
                if denominator <= 0:
                    raise DecodeError(f"weight {i} denominator: {denominator} is not positive")
                out.append(Fraction(numerator, denominator))
            r.finish()
            return out

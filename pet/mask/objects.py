"""MaskVect, MaskUnit and MaskObject, and their byte layouts.

MaskVect:  config (4) | count u32 BE | count x bpn bytes, each number little-endian
MaskUnit:  config (4) | one number (bpn bytes, little-endian)
MaskObject: MaskVect | MaskUnit

Elements are kept as a uint64 array when the order fits below 2^64, otherwise
as a list of Python integers. Decoding checks every length and that every
element is below the group order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from pet.errors import DecodeError
from pet.mask.config import MaskConfig

_U64_LIMIT = 1 << 64


def uses_array(config: MaskConfig) -> bool:
    """Whether elements of this config live in a uint64 array (order <= 2^64)."""
    return config.order <= _U64_LIMIT


def as_elements(config: MaskConfig, values) -> np.ndarray | list[int]:
    """Normalise element storage for the config."""
    if uses_array(config):
        if isinstance(values, np.ndarray) and values.dtype == np.uint64:
            return values
        return np.array([int(v) for v in values] if not isinstance(values, np.ndarray) else values,
                        dtype=np.uint64).reshape(-1)
    return [int(v) for v in values]


def encode_numbers(config: MaskConfig, values) -> bytes:
    bpn = config.bytes_per_number
    if uses_array(config):
        if bpn in (4, 8):
            return np.asarray(values).astype(f"<u{bpn}").tobytes()
        arr = np.ascontiguousarray(values, dtype="<u8")
        return arr.view(np.uint8).reshape(-1, 8)[:, :bpn].tobytes()
    return b"".join(int(v).to_bytes(bpn, "little") for v in values)


def decode_numbers(config: MaskConfig, data: bytes, count: int, what: str):
    bpn = config.bytes_per_number
    if len(data) != count * bpn:
        raise DecodeError(f"{what}: expected {count * bpn} bytes of numbers, got {len(data)}")
    order = config.order
    if uses_array(config):
        if bpn in (4, 8):
            values = np.frombuffer(data, dtype=f"<u{bpn}").astype(np.uint64)
        else:
            padded = np.zeros((count, 8), dtype=np.uint8)
            padded[:, :bpn] = np.frombuffer(data, dtype=np.uint8).reshape(count, bpn)
            values = padded.view("<u8").reshape(count)
        if order < _U64_LIMIT and order != 1 << 32:
            bad = np.flatnonzero(values >= np.uint64(order))
            if len(bad):
                raise DecodeError(f"{what}: element {int(bad[0])} is not below the group order {order}")
        return values
    values = [int.from_bytes(data[i:i + bpn], "little") for i in range(0, len(data), bpn)]
    for i, v in enumerate(values):
        if v >= order:
            raise DecodeError(f"{what}: element {i} is not below the group order {order}")
    return values


def _elements_equal(a, b) -> bool:
    if len(a) != len(b):
        return False
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        return bool(np.array_equal(a, b))
    return [int(x) for x in a] == [int(x) for x in b]


@dataclass(eq=False)
class MaskVect:
    config: MaskConfig
    data: np.ndarray | list[int]

    def __post_init__(self):
        self.data = as_elements(self.config, self.data)

    def __len__(self) -> int:
        return len(self.data)

    def __eq__(self, other) -> bool:
        return (isinstance(other, MaskVect) and self.config == other.config
                and _elements_equal(self.data, other.data))

    def is_valid(self) -> bool:
        if uses_array(self.config):
            return self.config.order == _U64_LIMIT or not bool(np.any(self.data >= np.uint64(self.config.order)))
        return all(0 <= v < self.config.order for v in self.data)

    def byte_len(self) -> int:
        return 8 + len(self.data) * self.config.bytes_per_number

    def to_bytes(self) -> bytes:
        return (self.config.to_bytes() + len(self.data).to_bytes(4, "big")
                + encode_numbers(self.config, self.data))

    @classmethod
    def decode_prefix(cls, buf: bytes, what: str = "mask vect") -> tuple["MaskVect", int]:
        """Decode a MaskVect at the start of buf; returns it and the bytes used."""
        if len(buf) < 8:
            raise DecodeError(f"{what}: need 8 header bytes, got {len(buf)}")
        config = MaskConfig.from_bytes(bytes(buf[:4]))
        count = int.from_bytes(buf[4:8], "big")
        end = 8 + count * config.bytes_per_number
        if len(buf) < end:
            raise DecodeError(f"{what}: {count} numbers need {end - 8} bytes, only {len(buf) - 8} present")
        return cls(config, decode_numbers(config, bytes(buf[8:end]), count, what)), end

    @classmethod
    def from_bytes(cls, buf: bytes) -> "MaskVect":
        vect, used = cls.decode_prefix(buf)
        if used != len(buf):
            raise DecodeError(f"mask vect: {len(buf) - used} trailing bytes")
        return vect


@dataclass(eq=False)
class MaskUnit:
    config: MaskConfig
    data: int

    def __post_init__(self):
        self.data = int(self.data)

    def __eq__(self, other) -> bool:
        return isinstance(other, MaskUnit) and self.config == other.config and self.data == other.data

    def is_valid(self) -> bool:
        return 0 <= self.data < self.config.order

    def byte_len(self) -> int:
        return 4 + self.config.bytes_per_number

    def to_bytes(self) -> bytes:
        return self.config.to_bytes() + self.data.to_bytes(self.config.bytes_per_number, "little")

    @classmethod
    def decode_prefix(cls, buf: bytes, what: str = "mask unit") -> tuple["MaskUnit", int]:
        if len(buf) < 4:
            raise DecodeError(f"{what}: need 4 config bytes, got {len(buf)}")
        config = MaskConfig.from_bytes(bytes(buf[:4]))
        end = 4 + config.bytes_per_number
        if len(buf) < end:
            raise DecodeError(f"{what}: need {config.bytes_per_number} number bytes, got {len(buf) - 4}")
        value = int.from_bytes(buf[4:end], "little")
        if value >= config.order:
            raise DecodeError(f"{what}: value is not below the group order {config.order}")
        return cls(config, value), end

    @classmethod
    def from_bytes(cls, buf: bytes) -> "MaskUnit":
        unit, used = cls.decode_prefix(buf)
        if used != len(buf):
            raise DecodeError(f"mask unit: {len(buf) - used} trailing bytes")
        return unit


@dataclass(eq=False)
class MaskObject:
    """A masked model (or a mask): the weight vector and the scalar."""

    vect: MaskVect
    unit: MaskUnit

    def __eq__(self, other) -> bool:
        return isinstance(other, MaskObject) and self.vect == other.vect and self.unit == other.unit

    def __len__(self) -> int:
        return len(self.vect)

    def is_valid(self) -> bool:
        return self.vect.is_valid() and self.unit.is_valid()

    def byte_len(self) -> int:
        return self.vect.byte_len() + self.unit.byte_len()

    def to_bytes(self) -> bytes:
        return self.vect.to_bytes() + self.unit.to_bytes()

    @classmethod
    def decode_prefix(cls, buf: bytes, what: str = "mask object") -> tuple["MaskObject", int]:
        vect, used = MaskVect.decode_prefix(buf, f"{what} vect")
        unit, used2 = MaskUnit.decode_prefix(buf[used:], f"{what} unit")
        return cls(vect, unit), used + used2

    @classmethod
    def from_bytes(cls, buf: bytes) -> "MaskObject":
        obj, used = cls.decode_prefix(buf)
        if used != len(buf):
            raise DecodeError(f"mask object: {len(buf) - used} trailing bytes")
        return obj

    @classmethod
    def from_values(cls, vect_config: MaskConfig, unit_config: MaskConfig,
                    values: Sequence[int], unit: int) -> "MaskObject":
        return cls(MaskVect(vect_config, values), MaskUnit(unit_config, unit))

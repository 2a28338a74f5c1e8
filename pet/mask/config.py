"""Mask configurations: XayNet's catalogue and this project's MCU profile.

A `MaskConfig` is four bytes on the wire: group type, data type, bound type,
model type. It fixes the group order, the fixed-point shift and scale, and how
many models may be aggregated. XayNet's group orders are figures from its
catalogue (`orders.json`); the MCU profile's follow from its definition in
docs/protocol.md.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from fractions import Fraction
from functools import cached_property
from importlib import resources

from pet.errors import DecodeError


class MaskConfigError(DecodeError):
    """A mask configuration that is not in the catalogue."""


class GroupType(enum.IntEnum):
    INTEGER = 0
    PRIME = 1
    POWER2 = 2
    # MCU profile (this project): the ring of 32- or 64-bit words.
    W32 = 3
    W64 = 4


class DataType(enum.IntEnum):
    F32 = 0
    F64 = 1
    I32 = 2
    I64 = 3


class BoundType(enum.IntEnum):
    B0 = 0
    B2 = 2
    B4 = 4
    B6 = 6
    BMAX = 255


class ModelType(enum.IntEnum):
    M3 = 3
    M6 = 6
    M9 = 9
    M12 = 12


_GROUP_NAMES = {GroupType.INTEGER: "Integer", GroupType.PRIME: "Prime", GroupType.POWER2: "Power2"}
_BOUND_NAMES = {BoundType.B0: "B0", BoundType.B2: "B2", BoundType.B4: "B4", BoundType.B6: "B6",
                BoundType.BMAX: "Bmax"}
# bincode (serde) variant indices, used by the REST encodings; they differ from the wire codes.
_BOUND_INDEX = {BoundType.B0: 0, BoundType.B2: 1, BoundType.B4: 2, BoundType.B6: 3, BoundType.BMAX: 4}
_MODEL_INDEX = {ModelType.M3: 0, ModelType.M6: 1, ModelType.M9: 2, ModelType.M12: 3}

def _float_max(mantissa_bits: int, max_exp: int) -> Fraction:
    return Fraction((2 ** mantissa_bits - 1) * 2 ** (max_exp - mantissa_bits + 1))


F32_MAX = _float_max(24, 127)
F64_MAX = _float_max(53, 1023)


def _load_orders() -> dict:
    text = resources.files("pet.mask").joinpath("orders.json").read_text()
    return json.loads(text)["orders"]


_ORDERS = _load_orders()

_MCU_GROUPS = {GroupType.W32: 32, GroupType.W64: 64}


@dataclass(frozen=True)
class MaskConfig:
    """One mask configuration. For the MCU profile (group W32 / W64) the bound
    byte is log2 of the bound and the model byte is log2 of the model count."""

    group_type: int
    data_type: int
    bound_type: int
    model_type: int

    def __post_init__(self):
        try:
            group = GroupType(self.group_type)
        except ValueError:
            raise MaskConfigError(f"mask config: unknown group type {self.group_type}") from None
        try:
            data = DataType(self.data_type)
        except ValueError:
            raise MaskConfigError(f"mask config: unknown data type {self.data_type}") from None
        object.__setattr__(self, "group_type", group)
        object.__setattr__(self, "data_type", data)
        if group in _MCU_GROUPS:
            bits = _MCU_GROUPS[group]
            if data is not DataType.F32:
                raise MaskConfigError(f"mask config: the MCU profile masks F32 data only, not {data.name}")
            if not (0 <= self.bound_type and 0 <= self.model_type
                    and self.bound_type + self.model_type <= bits - 2):
                raise MaskConfigError(
                    f"mask config: MCU bound exponent {self.bound_type} plus model exponent "
                    f"{self.model_type} must be at most {bits - 2} for a {bits}-bit ring")
            return
        try:
            object.__setattr__(self, "bound_type", BoundType(self.bound_type))
        except ValueError:
            raise MaskConfigError(f"mask config: unknown bound type {self.bound_type}") from None
        try:
            object.__setattr__(self, "model_type", ModelType(self.model_type))
        except ValueError:
            raise MaskConfigError(f"mask config: unknown model type {self.model_type}") from None

    # -- constructors -------------------------------------------------------------------------

    @classmethod
    def from_bytes(cls, data: bytes) -> "MaskConfig":
        if len(data) != 4:
            raise MaskConfigError(f"mask config: expected 4 bytes, got {len(data)}")
        return cls(data[0], data[1], data[2], data[3])

    @classmethod
    def xaynet(cls, group: str, data: str, bound: str, model: str) -> "MaskConfig":
        """By XayNet's names, e.g. `MaskConfig.xaynet("Prime", "F32", "B0", "M3")`."""
        bound_codes = {v: k for k, v in _BOUND_NAMES.items()}
        group_codes = {v: k for k, v in _GROUP_NAMES.items()}
        try:
            return cls(group_codes[group], DataType[data], bound_codes[bound], ModelType[model])
        except KeyError as e:
            raise MaskConfigError(f"mask config: unknown name {e}") from None

    @classmethod
    def mcu(cls, bound_exp: int = 2, model_exp: int = 10, wide: bool = False) -> "MaskConfig":
        """The MCU profile: bound 2^bound_exp, at most 2^model_exp models."""
        return cls(GroupType.W64 if wide else GroupType.W32, DataType.F32, bound_exp, model_exp)

    @classmethod
    def from_bincode_indices(cls, group: int, data: int, bound: int, model: int) -> "MaskConfig":
        """From the four u32 serde variant indices used by the REST encodings."""
        if group in (GroupType.W32, GroupType.W64):
            return cls(group, data, bound, model)
        bounds = {v: k for k, v in _BOUND_INDEX.items()}
        models = {v: k for k, v in _MODEL_INDEX.items()}
        if bound not in bounds:
            raise MaskConfigError(f"mask config: unknown bound type index {bound}")
        if model not in models:
            raise MaskConfigError(f"mask config: unknown model type index {model}")
        return cls(group, data, bounds[bound], models[model])

    # -- encodings ----------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        return bytes((self.group_type, self.data_type, self.bound_type, self.model_type))

    def bincode_indices(self) -> tuple[int, int, int, int]:
        if self.is_mcu:
            return (int(self.group_type), int(self.data_type), self.bound_type, self.model_type)
        return (int(self.group_type), int(self.data_type), _BOUND_INDEX[self.bound_type],
                _MODEL_INDEX[self.model_type])

    # -- derived constants --------------------------------------------------------------------

    @property
    def is_mcu(self) -> bool:
        return self.group_type in _MCU_GROUPS

    @property
    def word_bits(self) -> int:
        """MCU profile only: 32 or 64."""
        return _MCU_GROUPS[self.group_type]

    @cached_property
    def order(self) -> int:
        if self.is_mcu:
            return 1 << self.word_bits
        model = f"M{int(self.model_type)}"
        return int(_ORDERS[_GROUP_NAMES[self.group_type]][self.data_type.name]
                   [_BOUND_NAMES[self.bound_type]][model])

    @cached_property
    def bytes_per_number(self) -> int:
        return ((self.order - 1).bit_length() + 7) // 8

    @cached_property
    def add_shift(self) -> Fraction:
        """B: the bound on |scalar * weight|, added to make fixed-point values non-negative."""
        if self.is_mcu:
            return Fraction(1 << self.bound_type)
        if self.bound_type is BoundType.BMAX:
            return {DataType.F32: F32_MAX, DataType.F64: F64_MAX,
                    DataType.I32: Fraction(2 ** 31), DataType.I64: Fraction(2 ** 63)}[self.data_type]
        return Fraction(10 ** int(self.bound_type))

    @cached_property
    def exp_shift(self) -> int:
        """E: the fixed-point scale (values are kept as floor(x * E))."""
        if self.is_mcu:
            return 1 << self.fraction_bits
        if self.data_type is DataType.F32:
            return 10 ** 45 if self.bound_type is BoundType.BMAX else 10 ** 10
        if self.data_type is DataType.F64:
            return 10 ** 324 if self.bound_type is BoundType.BMAX else 10 ** 20
        return 10 ** 10

    @property
    def fraction_bits(self) -> int:
        """MCU profile only: log2 of the scale, word bits - 1 - bound exp - model exp."""
        return self.word_bits - 1 - self.bound_type - self.model_type

    @cached_property
    def max_models(self) -> int:
        if self.is_mcu:
            return 1 << self.model_type
        return 10 ** int(self.model_type)

    @property
    def name(self) -> str:
        if self.is_mcu:
            return f"{self.group_type.name}/F32/b{self.bound_type}/m{self.model_type}"
        return (f"{_GROUP_NAMES[self.group_type]}/{self.data_type.name}/"
                f"{_BOUND_NAMES[self.bound_type]}/M{int(self.model_type)}")

    def __repr__(self) -> str:
        return f"MaskConfig({self.name})"


def catalogue() -> list[MaskConfig]:
    """Every XayNet mask configuration (240 of them)."""
    return [MaskConfig(g, d, b, m) for g in _GROUP_NAMES for d in DataType
            for b in BoundType for m in ModelType]


DEFAULT_CONFIG = MaskConfig.xaynet("Prime", "F32", "B0", "M3")
DEFAULT_MCU_CONFIG = MaskConfig.mcu()

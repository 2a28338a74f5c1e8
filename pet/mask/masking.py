"""Masking, mask derivation, aggregation and unmasking (spec sections 6.4-6.7).

Pure functions over MaskObjects. The mask stream of a 32-byte mask seed is
ChaCha20Rng; its first draw masks the scalar, the following ones the weights.
XayNet configs draw by rejection (`generate_integer`); the MCU profile takes one
(W32) or two (W64, low word first) keystream words per element, no rejection.
"""

from __future__ import annotations

import os
from fractions import Fraction

import numpy as np

from pet.mask.config import MaskConfig
from pet.mask.fixed import MaskingError, as_weights, clamp_scalar, fixed_array, unit_fixed
from pet.mask.objects import MaskObject, MaskUnit, MaskVect, uses_array
from pet.mask.rng import ChaCha20Rng


class AggregationError(ValueError):
    """An object that cannot join an aggregate: wrong config, length, range or count."""


class UnmaskError(ValueError):
    """A mask that does not unmask the aggregate."""


# -- modular arithmetic on element storage ------------------------------------------------------

def _add(config: MaskConfig, a, b):
    order = config.order
    if uses_array(config):
        if order == 1 << 64:
            return a + b  # uint64 wraps around: addition mod 2^64
        if order == 1 << 32:
            return (a + b) & np.uint64(0xFFFFFFFF)
        s = a + b  # < 2 * order <= 2^64: no overflow; the wrapped s - order is the larger when s < order
        return np.minimum(s, s - np.uint64(order))
    return [(x + y) % order for x, y in zip(a, b)]


def _sub(config: MaskConfig, a, b):
    order = config.order
    if uses_array(config):
        if order == 1 << 64:
            return a - b
        d = a - b  # wraps when a < b; adding the order back then gives the smaller value
        return np.minimum(d, d + np.uint64(order))
    return [(x - y) % order for x, y in zip(a, b)]


# -- mask stream --------------------------------------------------------------------------------

def _mcu_draw(rng: ChaCha20Rng, config: MaskConfig, count: int) -> np.ndarray:
    if config.word_bits == 32:
        return rng.take_words(count).astype(np.uint64)
    pairs = rng.take_words(2 * count).reshape(count, 2).astype(np.uint64)
    return pairs[:, 0] | (pairs[:, 1] << np.uint64(32))


def draw_unit(rng: ChaCha20Rng, config: MaskConfig) -> int:
    if config.is_mcu:
        return int(_mcu_draw(rng, config, 1)[0])
    return rng.generate_integer(config.order)


def draw_vect(rng: ChaCha20Rng, config: MaskConfig, count: int):
    if config.is_mcu:
        return _mcu_draw(rng, config, count)
    return rng.generate_integers(config.order, count)


def derive_mask(seed: bytes, length: int, vect_config: MaskConfig,
                unit_config: MaskConfig | None = None) -> MaskObject:
    """The mask a mask seed stands for: the scalar's mask first, then the weights'."""
    unit_config = unit_config or vect_config
    rng = ChaCha20Rng(seed)
    unit = draw_unit(rng, unit_config)
    vect = draw_vect(rng, vect_config, length)
    return MaskObject(MaskVect(vect_config, vect), MaskUnit(unit_config, unit))


def mask_model(weights, scalar, vect_config: MaskConfig, unit_config: MaskConfig | None = None,
               seed: bytes | None = None) -> tuple[bytes, MaskObject]:
    """Mask scalar * weights with a fresh (or given) mask seed; returns (seed, masked model)."""
    unit_config = unit_config or vect_config
    seed = os.urandom(32) if seed is None else bytes(seed)
    if len(seed) != 32:
        raise MaskingError(f"mask seed must be 32 bytes, got {len(seed)}")
    arr = as_weights(weights, vect_config)
    s = clamp_scalar(scalar, unit_config)
    values = fixed_array(arr, s, vect_config)
    unit_value = unit_fixed(s, unit_config)
    mask = derive_mask(seed, len(arr), vect_config, unit_config)
    vect = _add(vect_config, values if uses_array(vect_config) else list(values), mask.vect.data)
    unit = (unit_value + mask.unit.data) % unit_config.order
    return seed, MaskObject(MaskVect(vect_config, vect), MaskUnit(unit_config, unit))


# -- aggregation --------------------------------------------------------------------------------

class Aggregation:
    """A running modular sum of masked models (coordinator) or of masks (sum participant)."""

    def __init__(self, vect_config: MaskConfig, unit_config: MaskConfig, length: int):
        self.vect_config = vect_config
        self.unit_config = unit_config
        self.length = length
        self.nb_models = 0
        self._vect = np.zeros(length, dtype=np.uint64) if uses_array(vect_config) else [0] * length
        self._unit = 0

    @property
    def object(self) -> MaskObject:
        return MaskObject(MaskVect(self.vect_config, self._vect), MaskUnit(self.unit_config, self._unit))

    def validate(self, obj: MaskObject) -> None:
        """Raise AggregationError unless obj can be added."""
        if obj.vect.config != self.vect_config or obj.unit.config != self.unit_config:
            raise AggregationError(
                f"mask config {obj.vect.config.name}/{obj.unit.config.name} differs from the round's "
                f"{self.vect_config.name}/{self.unit_config.name}")
        if len(obj.vect) != self.length:
            raise AggregationError(f"model length {len(obj.vect)} differs from the round's {self.length}")
        limit = min(self.vect_config.max_models, self.unit_config.max_models)
        if self.nb_models >= limit:
            raise AggregationError(f"the mask config aggregates at most {limit} models")
        if not obj.is_valid():
            raise AggregationError("an element is not below the group order")

    def aggregate(self, obj: MaskObject, validated: bool = False) -> None:
        """Add obj; `validated` skips the checks for a caller that just ran validate()."""
        if not validated:
            self.validate(obj)
        self._vect = _add(self.vect_config, self._vect, obj.vect.data)
        self._unit = (self._unit + obj.unit.data) % self.unit_config.order
        self.nb_models += 1

    @classmethod
    def restore(cls, obj: MaskObject, nb_models: int) -> "Aggregation":
        """An aggregation resumed from a stored aggregate and its model count."""
        agg = cls(obj.vect.config, obj.unit.config, len(obj.vect))
        agg._vect, agg._unit, agg.nb_models = obj.vect.data, obj.unit.data, nb_models
        return agg


def aggregate_masks(seeds, length: int, vect_config: MaskConfig,
                    unit_config: MaskConfig | None = None) -> MaskObject:
    """The global mask a sum participant sends: the sum of the masks of all seeds."""
    unit_config = unit_config or vect_config
    agg = Aggregation(vect_config, unit_config, length)
    for seed in seeds:
        agg.aggregate(derive_mask(seed, length, vect_config, unit_config))
    return agg.object


# -- unmasking ----------------------------------------------------------------------------------

def _check_unmask(aggregate: MaskObject, mask: MaskObject, nb_models: int) -> None:
    if nb_models < 1:
        raise UnmaskError("no model was aggregated")
    if nb_models > min(aggregate.vect.config.max_models, aggregate.unit.config.max_models):
        raise UnmaskError(f"{nb_models} models exceed what the mask config can aggregate")
    if mask.vect.config != aggregate.vect.config or mask.unit.config != aggregate.unit.config:
        raise UnmaskError("mask config differs from the aggregate's")
    if len(mask.vect) != len(aggregate.vect):
        raise UnmaskError(f"mask length {len(mask.vect)} differs from the aggregate's {len(aggregate.vect)}")
    if not mask.is_valid():
        raise UnmaskError("a mask element is not below the group order")


def scalar_sum(aggregate: MaskObject, mask: MaskObject, nb_models: int) -> Fraction:
    """The sum of the (clamped) scalars of the aggregated models."""
    cfg = aggregate.unit.config
    raw = (aggregate.unit.data - mask.unit.data) % cfg.order
    return Fraction(raw, cfg.exp_shift) - cfg.add_shift * nb_models


def unmask_exact(aggregate: MaskObject, mask: MaskObject, nb_models: int) -> list[Fraction]:
    """The global model as exact rationals: sum_j s_j * w_j / sum_j s_j."""
    _check_unmask(aggregate, mask, nb_models)
    total = scalar_sum(aggregate, mask, nb_models)
    if total <= 0:
        raise UnmaskError("the aggregated scalar is not positive")
    cfg = aggregate.vect.config
    offset = cfg.add_shift * cfg.exp_shift * nb_models
    denom = cfg.exp_shift * total
    diff = _sub(cfg, aggregate.vect.data, mask.vect.data)
    return [(int(d) - offset) / denom for d in diff]


def unmask(aggregate: MaskObject, mask: MaskObject, nb_models: int) -> np.ndarray:
    """The global model as float64 (numpy for orders below 2^64, exact otherwise)."""
    cfg = aggregate.vect.config
    if not uses_array(cfg):
        return np.array([float(x) for x in unmask_exact(aggregate, mask, nb_models)], dtype=np.float64)
    _check_unmask(aggregate, mask, nb_models)
    total = scalar_sum(aggregate, mask, nb_models)
    if total <= 0:
        raise UnmaskError("the aggregated scalar is not positive")
    diff = _sub(cfg, aggregate.vect.data, mask.vect.data)
    if cfg.order < 1 << 64:
        offset = int(cfg.add_shift * cfg.exp_shift * nb_models)
        centred = diff.astype(np.int64) - offset
    else:
        # W64: values can reach 2^64 - 1; split to keep the subtraction exact.
        offset = int(cfg.add_shift * cfg.exp_shift * nb_models)
        centred = diff.astype(np.float64) - float(offset)
    return centred.astype(np.float64) / float(cfg.exp_shift * total)




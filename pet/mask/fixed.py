"""Fixed-point conversion of weighted model weights, exactly as XayNet does it.

XayNet:  v = floor((clamp(s * w, -B, B) + B) * E), with s * w an exact rational.
MCU:     x = fl32(s * w) (subnormals flushed to zero, overflow to infinity
         clamped like any value beyond the bound), clamped to [-B, B];
         v = min(floor(x * 2^f) + B * 2^f, 2^(bits - m) - 1).

The exact definition is `fixed_exact`. `fixed_array` gives the same integers
with numpy (no Python loop per element) whenever the result fits in an int64:
the MCU profile, and XayNet's F32 / I32 / I64 configs with orders below 2^63.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from pet.mask.config import DataType, MaskConfig


class MaskingError(ValueError):
    """A model or scalar that cannot be masked (NaN, infinity, negative scalar...)."""


_NUMPY_DTYPES = {DataType.F32: np.float32, DataType.F64: np.float64,
                 DataType.I32: np.int32, DataType.I64: np.int64}
_LIMB = 30
_LIMB_MASK = (1 << _LIMB) - 1


def as_weights(weights, config: MaskConfig) -> np.ndarray:
    """The weights as a 1-D array of the config's data type; NaN and infinity rejected."""
    dtype = _NUMPY_DTYPES[config.data_type]
    try:
        if isinstance(weights, np.ndarray) and np.issubdtype(weights.dtype, np.floating) \
                and not np.issubdtype(dtype, np.floating):
            raise MaskingError(f"{config.data_type.name} model given float weights")
        arr = np.asarray(weights, dtype=dtype).reshape(-1)
    except (OverflowError, ValueError, TypeError) as e:
        if isinstance(e, MaskingError):
            raise
        raise MaskingError(f"model is not a flat vector of {config.data_type.name}: {e}") from None
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        bad = int(np.flatnonzero(~np.isfinite(arr))[0])
        raise MaskingError(f"model weight {bad} is {arr[bad]}: NaN and infinity cannot be masked")
    return arr


def clamp_scalar(scalar, config: MaskConfig) -> Fraction:
    """The scalar as used for masking: exact, non-negative, clamped to the unit bound."""
    try:
        value = float(scalar)
    except (TypeError, ValueError):
        raise MaskingError(f"scalar {scalar!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise MaskingError(f"scalar must be finite and non-negative, got {value}")
    if config.is_mcu:
        value = float(np.float32(value))
    return min(Fraction(value), config.add_shift)


def _mcu_cap(config: MaskConfig) -> int:
    return (1 << (config.word_bits - config.model_type)) - 1


def fixed_exact(weight, scalar: Fraction, config: MaskConfig) -> int:
    """One fixed-point value, by the definition (Python integers)."""
    if config.is_mcu:
        with np.errstate(over="ignore"):
            x = float(np.float32(np.float32(float(scalar)) * np.float32(weight)))
        if abs(x) < float(np.finfo(np.float32).tiny):
            x = 0.0
        bound = config.add_shift
        xb = bound if x > bound else -bound if x < -bound else Fraction(x)
        v = math.floor((xb + config.add_shift) * config.exp_shift)
        return min(v, _mcu_cap(config))
    bound = config.add_shift
    x = min(max(scalar * Fraction(weight), -bound), bound)
    return math.floor((x + bound) * config.exp_shift)


def unit_fixed(scalar: Fraction, config: MaskConfig) -> int:
    """The fixed-point value of the (clamped) scalar."""
    v = math.floor((scalar + config.add_shift) * config.exp_shift)
    return min(v, _mcu_cap(config)) if config.is_mcu else v


def fixed_array(weights: np.ndarray, scalar: Fraction, config: MaskConfig):
    """Fixed-point values of scalar * weights: uint64 array, or a list for large orders."""
    if config.is_mcu:
        return _fixed_mcu(weights, scalar, config)
    if config.order < 1 << 63 and config.data_type is not DataType.F64:
        if config.data_type is not DataType.I64 or not len(weights) or \
                int(np.max(np.abs(weights.astype(np.float64)))) < 1 << 31:
            return _fixed_limbs(weights, scalar, config)
    return [fixed_exact(w, scalar, config) for w in weights.tolist()]


def _fixed_mcu(weights: np.ndarray, scalar: Fraction, config: MaskConfig) -> np.ndarray:
    with np.errstate(over="ignore"):
        x = weights.astype(np.float32, copy=False) * np.float32(float(scalar))
    scaled = x.astype(np.float64)
    scaled[np.abs(x) < np.finfo(np.float32).tiny] = 0.0  # subnormals count as zero
    shift = 1 << config.fraction_bits
    scaled *= float(shift)  # exact: a power of two
    limit = int(config.add_shift) * shift  # up to 2^63 (W64, m = 0): work in uint64
    np.clip(scaled, -float(limit), float(limit), out=scaled)
    np.floor(scaled, out=scaled)
    top = scaled >= limit  # x = +B: only the cap is representable
    scaled[top] = 0.0
    v = scaled.astype(np.int64).view(np.uint64) + np.uint64(limit)  # two's complement + 2^k wraps right
    v[top] = _mcu_cap(config)
    return np.minimum(v, np.uint64(_mcu_cap(config)))


def _fixed_limbs(weights: np.ndarray, scalar: Fraction, config: MaskConfig) -> np.ndarray:
    """Exact floor(s * w * E) + B * E in int64 arithmetic.

    Write w = m * 2^e (|m| < 2^32) and s * E = P / 2^a (P an integer). Then
    s * w * E = P * m / 2^(a - e). P is split into 30-bit limbs so that every
    limb product fits in an int64; the shifted sum is assembled limb by limb.
    Products far outside the bound are clamped first, so the result fits.
    """
    bound = config.add_shift
    scale = config.exp_shift
    if weights.dtype == np.float32:
        bits = weights.view(np.uint32).astype(np.int64)
        biased = (bits >> 23) & 0xFF
        frac = bits & 0x7FFFFF
        m = np.where(biased == 0, frac, frac | 0x800000)
        e = np.where(biased == 0, -149, biased - 150)
        m = np.where(bits >> 31 == 1, -m, m)
    else:
        m = weights.astype(np.int64)
        e = np.zeros(len(weights), dtype=np.int64)
    se = scalar * scale
    if se.denominator & (se.denominator - 1):
        raise MaskingError("scalar must be a binary fraction (a float)")
    p, a = se.numerator, se.denominator.bit_length() - 1
    # Far outside [-B, B]: decide by floating point (2x margin), then clamp.
    approx = float(scalar) * weights.astype(np.float64)
    high = approx > 2 * float(bound)
    low = approx < -2 * float(bound)
    m = np.where(high | low, 0, m)
    k = a - e  # right shift per element
    limbs = []
    while p:
        limbs.append(p & _LIMB_MASK)
        p >>= _LIMB
    digits = [np.int64(c) * m for c in limbs] or [np.zeros_like(m)]
    for i in range(len(digits) - 1):
        digits[i + 1] = digits[i + 1] + (digits[i] >> _LIMB)
        digits[i] = digits[i] & _LIMB_MASK
    top = len(digits) - 1
    result = np.zeros(len(m), dtype=np.int64)
    for i, d in enumerate(digits):
        sh = _LIMB * i - k
        left = np.where(sh >= 0, d << np.clip(sh, 0, 63), 0)
        if i == top:
            right = d >> np.clip(-sh, 0, 63)
        else:
            right = np.where(sh > -_LIMB, d >> np.clip(-sh, 0, _LIMB), 0)
        result += np.where(sh >= 0, left, right)
    offset = int(bound * scale)
    v = np.clip(result + offset, 0, 2 * offset)
    v = np.where(high, 2 * offset, np.where(low, 0, v))
    return v.astype(np.uint64)

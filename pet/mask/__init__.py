"""Masking: configs, the ChaCha20 mask stream, fixed point, aggregation, unmasking."""

from pet.mask.config import (DEFAULT_CONFIG, DEFAULT_MCU_CONFIG, BoundType, DataType, GroupType,
                             MaskConfig, MaskConfigError, ModelType, catalogue)
from pet.mask.objects import MaskObject, MaskUnit, MaskVect
from pet.mask.rng import ChaCha20Rng

__all__ = [
    "DEFAULT_CONFIG", "DEFAULT_MCU_CONFIG", "BoundType", "DataType", "GroupType", "MaskConfig",
    "MaskConfigError", "ModelType", "catalogue", "MaskObject", "MaskUnit", "MaskVect", "ChaCha20Rng",
]

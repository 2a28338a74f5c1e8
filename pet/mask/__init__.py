"""Masking: configs, the ChaCha20 mask stream, fixed point, aggregation, unmasking."""

from pet.mask.config import (DEFAULT_CONFIG, DEFAULT_MCU_CONFIG, BoundType, DataType, GroupType,
                             MaskConfig, MaskConfigError, ModelType, catalogue)
from pet.mask.fixed import MaskingError
from pet.mask.masking import (Aggregation, AggregationError, UnmaskError, aggregate_masks, derive_mask,
                              mask_model, scalar_sum, unmask, unmask_exact)
from pet.mask.objects import MaskObject, MaskUnit, MaskVect
from pet.mask.rng import ChaCha20Rng

__all__ = [
    "DEFAULT_CONFIG", "DEFAULT_MCU_CONFIG", "BoundType", "DataType", "GroupType", "MaskConfig",
    "MaskConfigError", "ModelType", "catalogue", "MaskingError", "Aggregation", "AggregationError",
    "UnmaskError", "aggregate_masks", "derive_mask", "mask_model", "scalar_sum", "unmask",
    "unmask_exact", "MaskObject", "MaskUnit", "MaskVect", "ChaCha20Rng",
]

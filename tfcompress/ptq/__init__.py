"""Post-training quantization recovery: the deployed weight grids, layer-by-layer passes,
cross-layer equalization, learned rounding (AdaRound) with bias correction, and ``recovery``,
which chains them for a conversion mode."""

from tfcompress.ptq import (  # noqa: F401
    grids, layerwise, equalization, rounding, recovery, activation_ranges)

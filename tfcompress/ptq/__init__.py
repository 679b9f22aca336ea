"""Post-training quantization recovery: the deployed weight grids, layer-by-layer passes,
cross-layer equalization, learned rounding (AdaRound) with bias correction, and ``recovery``,
which chains them for a conversion mode."""

from tfcompress.ptq import grids, layerwise, equalization, rounding, recovery  # noqa: F401

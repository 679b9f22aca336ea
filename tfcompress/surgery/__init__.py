"""Structural surgery that really shrinks a model: channel pruning over the channel graph,
low-rank factorization, residual-block removal and BatchNormalization recalibration. Each returns a
new, smaller plain Keras model."""

from tfcompress.surgery import channel_graph, channels, factorization, blocks  # noqa: F401
from tfcompress.surgery import recalibration  # noqa: F401

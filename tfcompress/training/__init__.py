"""Training-time techniques, thin wrappers over tfmot: pruning, clustering, quantization-aware
training (``qat``) and knowledge distillation. Each returns a Keras model the caller compiles and
fits."""

from tfcompress.training import pruning, clustering, qat, distillation  # noqa: F401
from tfcompress.training import qat_int4, finetune  # noqa: F401

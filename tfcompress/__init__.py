"""tfcompress: Keras model -> small, fast, validated TFLite (LiteRT) flatbuffer.

Importing tfcompress selects Keras 2 (tf_keras) for tfmot; ``tfcompress.keras`` is that module.
"""

from tfcompress._keras import keras, quiet_tensorflow  # noqa: F401  (first: picks Keras 2)
from tfcompress import data, errors, models  # noqa: F401
from tfcompress.convert import convert  # noqa: F401
from tfcompress.errors import TfcompressError  # noqa: F401
from tfcompress.recipe import default_config, run_recipe  # noqa: F401
from tfcompress.validate import validate  # noqa: F401
from tfcompress import callbacks, clustering, pruning, quantization  # noqa: F401
from tfcompress.clustering import cluster, strip, unique_weights_report  # noqa: F401
from tfcompress.pruning import prune, sparsity_report  # noqa: F401
from tfcompress.quantization import quantize_aware  # noqa: F401
from tfcompress import profile, surgery  # noqa: F401  (tfcompress.profile stays the module)
from tfcompress.profile import profile as profile_model  # noqa: F401
from tfcompress.surgery import factorize, prune_channels  # noqa: F401
from tfcompress.blocks import prune_blocks  # noqa: F401
from tfcompress import distillation  # noqa: F401
from tfcompress.distillation import Distiller  # noqa: F401
from tfcompress.search import search  # noqa: F401  (shadows the submodule: import from it)
from tfcompress.keras3 import from_keras3, to_keras3  # noqa: F401
from tfcompress import lowbit  # noqa: F401  (registers the low-bit and 'mixed' modes)
from tfcompress.lowbit import mixed_precision  # noqa: F401

__version__ = "0.1.0"

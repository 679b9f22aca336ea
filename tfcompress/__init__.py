"""tfcompress: Keras model -> small, fast, validated TFLite (LiteRT) flatbuffer.

Importing tfcompress selects Keras 2 (tf_keras) for tfmot; ``tfcompress.keras`` is that module.
Modules are nouns and imported with the package (``tfcompress.conversion``,
``tfcompress.validation``, ``tfcompress.study``, ``tfcompress.profiling``, ...); the verbs at the
top level are their functions (``tfcompress.convert``, ``tfcompress.validate``,
``tfcompress.search``, ``tfcompress.profile``, ...).
"""

from tfcompress import _native  # noqa: I001  (first: the command hides native log lines)

_native.install_for_command()

from tfcompress._keras import keras, quiet_tensorflow  # noqa: F401  (first: picks Keras 2)
from tfcompress import errors, data, keras3, models, profiling, stats  # noqa: F401
from tfcompress import wrappers, pruning, clustering, quantization  # noqa: F401
from tfcompress import distillation, surgery, factorization, blocks, recalibration  # noqa: F401
from tfcompress import grids, equalization, layerwise, rounding, recovery  # noqa: F401
from tfcompress import conversion, validation, lowbit, mixed  # noqa: F401
from tfcompress import android, callbacks, report, stages, recipe, study  # noqa: F401
from tfcompress.clustering import cluster, unique_weights_report  # noqa: F401
from tfcompress.conversion import convert  # noqa: F401
from tfcompress.distillation import Distiller  # noqa: F401
from tfcompress.equalization import equalize  # noqa: F401
from tfcompress.errors import TfcompressError  # noqa: F401
from tfcompress.keras3 import from_keras3, to_keras3  # noqa: F401
from tfcompress.mixed import mixed_precision  # noqa: F401
from tfcompress.profiling import profile  # noqa: F401
from tfcompress.pruning import prune, sparsity_report  # noqa: F401
from tfcompress.quantization import quantize_aware  # noqa: F401
from tfcompress.recalibration import recalibrate_batchnorm  # noqa: F401
from tfcompress.recovery import recover  # noqa: F401
from tfcompress.rounding import adaround, correct_bias  # noqa: F401
from tfcompress.recipe import default_config, run_recipe  # noqa: F401
from tfcompress.study import search  # noqa: F401
from tfcompress.surgery import factorize, prune_channels  # noqa: F401
from tfcompress.validation import validate  # noqa: F401
from tfcompress.wrappers import strip  # noqa: F401
from tfcompress.blocks import prune_blocks  # noqa: F401

profile_model = profile  # the name the first release used

__version__ = "0.1.0"

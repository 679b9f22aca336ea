"""tfcompress: Keras model -> small, fast, validated TFLite (LiteRT) flatbuffer.

Importing tfcompress selects Keras 2 (tf_keras) for tfmot; ``tfcompress.keras`` is that module.
The folders follow the flow: core modules here (errors, data, models, keras3, profiling, wrappers,
graph, tasks), ``training`` (tfmot techniques), ``surgery`` (structural), ``ptq`` (post-training
recovery), ``export`` (conversion, validation, Android), ``pipeline`` (recipes, search, report);
private APIs of other packages only in ``_compat``. Every module imports with the package; the
verbs here are their functions (``tfcompress.convert`` is ``tfcompress.export.conversion.convert``,
``tfcompress.search`` is ``tfcompress.pipeline.search.search``, ...).
"""

from tfcompress import _native  # noqa: I001  (first: the command hides native log lines)

_native.install_for_command()

from tfcompress._compat.keras import keras, quiet_tensorflow  # noqa: F401  (first: picks Keras 2)
from tfcompress import errors, data, keras3, models, profiling, wrappers  # noqa: F401  (core)
from tfcompress import training, surgery, ptq, export, pipeline  # noqa: F401  (the families)
from tfcompress import callbacks, configs  # noqa: F401
from tfcompress.export import android  # noqa: F401  (the namespace ``tfcompress.android``)
from tfcompress.export.conversion import convert  # noqa: F401
from tfcompress.export.mixed import mixed_precision  # noqa: F401
from tfcompress.export.validation import validate  # noqa: F401
from tfcompress.errors import TfcompressError  # noqa: F401
from tfcompress.keras3 import from_keras3, to_keras3  # noqa: F401
from tfcompress.pipeline.recipe import default_config, run_recipe  # noqa: F401
from tfcompress.pipeline.search import search  # noqa: F401
from tfcompress.profiling import profile  # noqa: F401
from tfcompress.ptq.equalization import equalize  # noqa: F401
from tfcompress.ptq.recovery import recover  # noqa: F401
from tfcompress.ptq.rounding import adaround, correct_bias  # noqa: F401
from tfcompress.surgery.blocks import prune_blocks  # noqa: F401
from tfcompress.surgery.channels import prune_channels  # noqa: F401
from tfcompress.surgery.factorization import factorize  # noqa: F401
from tfcompress.surgery.recalibration import recalibrate_batchnorm  # noqa: F401
from tfcompress.training.clustering import cluster, unique_weights_report  # noqa: F401
from tfcompress.training.distillation import Distiller  # noqa: F401
from tfcompress.training.pruning import prune, sparsity_report  # noqa: F401
from tfcompress.training.finetune import finetune_quantized  # noqa: F401
from tfcompress.training.qat import quantize_aware  # noqa: F401
from tfcompress.wrappers import strip  # noqa: F401

profile_model = profile  # the name the first release used

__version__ = "0.1.0"

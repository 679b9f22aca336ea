"""Prune the digits CNN to 80%, then sparsity-preserving QAT (PQAT), int8, validation.

    tfcompress compress --config=digits_pqat --workdir=workdir/digits_pqat

report.md shows the sparsity after pruning and the zeros measured inside the int8 file.
"""

from tfcompress.configs import common
from tfcompress.pipeline.recipe import default_config


def get_config(variant: str = ""):
    common.check_variant(variant)
    config = default_config()
    config.stages = ("prune", "qat")
    config.prune.target_sparsity = 0.8
    config.prune.epochs = 6
    config.prune.learning_rate = 5e-4
    config.qat.preserve = "sparsity"
    config.qat.epochs = 3
    config.convert.modes = ("int8",)
    if variant == "smoke":
        common.smoke(config)
    return config

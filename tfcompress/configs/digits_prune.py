"""Prune the digits CNN to 80% sparsity, then convert and validate.

    tfcompress compress --config=digits_prune --workdir=workdir/digits_prune

The schedule comes from the plan (``prune.epochs`` x steps per epoch); report.md lists the
measured per-layer sparsity. Try ``--config.prune.target_sparsity=0.9`` or
``--config.prune.m_by_n=2:4``.
"""

from tfcompress.configs import common
from tfcompress.pipeline.recipe import default_config


def get_config(variant: str = ""):
    common.check_variant(variant)
    config = default_config()
    config.stages = ("prune",)
    config.prune.target_sparsity = 0.8
    config.prune.epochs = 6
    config.prune.learning_rate = 5e-4
    config.convert.modes = ("float32", "int8")
    if variant == "smoke":
        common.smoke(config)
    return config

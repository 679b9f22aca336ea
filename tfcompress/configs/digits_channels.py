"""Structured channel pruning: remove half of the digits CNN's filters, fine-tune, convert.

    tfcompress compress --config=digits_channels --workdir=workdir/digits_channels

The model really shrinks (fewer parameters, multiply-accumulates and milliseconds), unlike
unstructured sparsity. Override e.g. ``--config.prune_channels.ratio=0.75`` or
``--config.prune_channels.criterion=l2``. ``--config=digits_channels:smoke`` is the quick
variant the tests run.
"""

from tfcompress.configs import common
from tfcompress.pipeline.recipe import default_config


def get_config(variant: str = ""):
    common.check_variant(variant)
    config = default_config()
    config.stages = ("prune_channels",)
    config.prune_channels.ratio = 0.5
    config.prune_channels.criterion = "l1"
    config.prune_channels.epochs = 10
    config.prune_channels.learning_rate = 5e-4
    config.convert.modes = ("float32", "int8")
    if variant == "smoke":
        common.smoke(config)
    return config

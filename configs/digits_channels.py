"""Structured channel pruning: remove half of the digits CNN's filters, fine-tune, convert.

    python scripts/compress.py --config=configs/digits_channels.py --workdir=workdir/digits_channels

The model really shrinks (fewer parameters, multiply-accumulates and milliseconds), unlike
unstructured sparsity. Override e.g. ``--config.prune_channels.ratio=0.75`` or
``--config.prune_channels.criterion=l2``. ``configs/digits_channels.py:smoke`` is the quick
variant the tests run.
"""

from tfcompress.recipe import default_config


def get_config(variant: str = ""):
    config = default_config()
    config.stages = ("prune_channels",)
    config.prune_channels.ratio = 0.5
    config.prune_channels.criterion = "l1"
    config.prune_channels.epochs = 10
    config.prune_channels.learning_rate = 5e-4
    config.convert.modes = ("float32", "int8")
    if variant == "smoke":
        config.data.limit = 256
        config.train.epochs = 1
        config.prune_channels.epochs = 1
        config.convert.representative_samples = 16
        config.validate.latency_runs = 3
    return config

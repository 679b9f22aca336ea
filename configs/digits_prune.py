"""Prune the digits CNN to 80% sparsity, then convert and validate.

    python scripts/compress.py --config=configs/digits_prune.py --workdir=workdir/digits_prune

The schedule comes from the plan (``prune.epochs`` x steps per epoch); report.md lists the
measured per-layer sparsity. Try ``--config.prune.target_sparsity=0.9`` or
``--config.prune.m_by_n=2:4``.
"""

from tfcompress.recipe import default_config


def get_config(variant: str = ""):
    config = default_config()
    config.stages = ("prune",)
    config.prune.target_sparsity = 0.8
    config.prune.epochs = 6
    config.prune.learning_rate = 5e-4
    config.convert.modes = ("float32", "int8")
    if variant == "smoke":
        config.data.limit = 256
        config.train.epochs = 1
        config.prune.epochs = 1
        config.convert.representative_samples = 16
        config.validate.latency_runs = 3
    return config

"""Cluster the digits CNN's kernels to 16 shared values each, then convert and validate.

    python scripts/compress.py --config=configs/digits_cluster.py --workdir=workdir/digits_cluster

report.md lists the measured unique weights per kernel.
"""

from tfcompress.recipe import default_config


def get_config(variant: str = ""):
    config = default_config()
    config.stages = ("cluster",)
    config.cluster.number_of_clusters = 16
    config.cluster.preserve_sparsity = False
    config.cluster.epochs = 3
    config.convert.modes = ("float32", "int8")
    if variant == "smoke":
        config.data.limit = 256
        config.train.epochs = 1
        config.cluster.epochs = 1
        config.convert.representative_samples = 16
        config.validate.latency_runs = 3
    return config

"""Cluster the digits CNN's kernels to 16 shared values each, then convert and validate.

    tfcompress compress --config=digits_cluster --workdir=workdir/digits_cluster

report.md lists the measured unique weights per kernel.
"""

from tfcompress.configs import common
from tfcompress.pipeline.recipe import default_config


def get_config(variant: str = ""):
    common.check_variant(variant)
    config = default_config()
    config.stages = ("cluster",)
    config.cluster.number_of_clusters = 16
    config.cluster.preserve_sparsity = False
    config.cluster.epochs = 3
    config.convert.modes = ("float32", "int8")
    if variant == "smoke":
        common.smoke(config)
    return config

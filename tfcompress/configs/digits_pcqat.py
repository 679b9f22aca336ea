"""The full collaborative chain: prune 80% -> cluster 16 (zeros kept) -> PCQAT -> int8.

    tfcompress compress --config=digits_pcqat --workdir=workdir/digits_pcqat

Each stage works on the stripped output of the one before (tfmot's collaborative
optimization). report.md shows the sparsity, the unique weights per kernel and, measured in
the int8 flatbuffer, the zeros and distinct values per kernel next to size and accuracy.
"""

from tfcompress.configs import common
from tfcompress.pipeline.recipe import default_config


def get_config(variant: str = ""):
    common.check_variant(variant)
    config = default_config()
    config.stages = ("prune", "cluster", "qat")
    config.prune.target_sparsity = 0.8
    config.prune.epochs = 6
    config.prune.learning_rate = 5e-4
    config.cluster.number_of_clusters = 16
    config.cluster.preserve_sparsity = True
    config.cluster.epochs = 3
    config.qat.preserve = "sparsity_and_clusters"
    config.qat.epochs = 3
    config.convert.modes = ("float32", "int8")
    if variant == "smoke":
        common.smoke(config)
    return config

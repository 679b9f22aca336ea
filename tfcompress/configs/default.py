"""The default job: what tfcompress adds over the plain converter, on the bundled digits.

    tfcompress compress --workdir=workdir/demo                   # no --config: this one
    tfcompress compress --config=default --workdir=workdir/demo

Trains the digits CNN (float32 baseline), also converts it with the plain converter's full
int8 (row ``baseline int8``), then prunes it to 80% zeros and clusters each kernel to 16 shared
values with the zeros kept (tfmot's collaborative optimization; the first and last layer, 1% of
the weights, stay whole) and converts the result to float32, int8 and int4 weights
(``dynamic_wi4``, the LiteRT Quantizer): the last is about 16x smaller than float32 after gzip at
the baseline's test accuracy (3 seeds: NOTES_cli.md). report.md puts them side
by side with a size-against-accuracy plot (size_accuracy.png). ``--config=default:smoke`` is the
one-epoch, few-samples variant the tests run.
"""

from tfcompress.configs import common
from tfcompress.pipeline.recipe import default_config


def get_config(variant: str = ""):
    common.check_variant(variant)
    config = default_config()
    config.stages = ("prune", "cluster")
    config.prune.target_sparsity = 0.8
    config.prune.epochs = 10
    config.prune.learning_rate = 5e-4
    config.prune.keep_first_last = True  # conv1 and logits: 1.6k weights, most of the accuracy
    config.cluster.number_of_clusters = 16
    config.cluster.preserve_sparsity = True
    config.cluster.epochs = 5
    config.cluster.keep_first_last = True
    config.convert.modes = ("float32", "int8", "dynamic_wi4")
    config.convert.baseline_modes = ("int8",)
    if variant == "smoke":
        common.smoke(config)
    return config

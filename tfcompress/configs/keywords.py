"""Keyword spotting: a DS-CNN with BatchNormalization on the bundled synthetic-speech MFCCs.

    tfcompress compress --config=keywords --workdir=workdir/keywords

Data: ``tfcompress.data.load_keywords()``, 12 classes (silence, unknown and ten Speech Commands
keywords) spoken by espeak-ng with varied voices, speeds, pitches and noise, as 49 x 10 MFCCs;
the test clips come from voice variants that no training clip uses (see
tfcompress/datasets/README.md). Model: ``kws_dscnn`` (the "Hello Edge" small DS-CNN: Conv2D and
four DepthwiseConv2D + pointwise blocks, each followed by BatchNormalization, 24k parameters),
pruned to 50% zeros in every kernel but the depthwise ones (tfmot, 5 epochs of fine-tuning; the
BatchNormalization layers are wrapped and left whole), then converted to float32, float16 and
int8, beside the unpruned baseline's int8. ``--config.stages="()"`` skips pruning;
``--config=keywords:smoke`` is the quick variant.
"""

from tfcompress.configs import common
from tfcompress.pipeline.recipe import default_config


def get_config(variant: str = ""):
    common.check_variant(variant)
    config = default_config()
    config.data.name = "keywords"
    config.model.name = "kws_dscnn"
    config.train.epochs = 20
    config.stages = ("prune",)
    config.prune.target_sparsity = 0.5
    config.prune.epochs = 5
    config.prune.learning_rate = 5e-4
    config.convert.modes = ("float32", "float16", "int8")
    config.convert.baseline_modes = ("int8",)
    if variant == "smoke":
        common.smoke(config)
        config.convert.modes = ("float32", "int8")  # the pruned model's; no baseline modes
        config.convert.baseline_modes = ()
    return config

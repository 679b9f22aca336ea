"""Quantization-aware training of the digits CNN, then int8 conversion and validation.

    tfcompress compress --config=digits_qat --workdir=workdir/digits_qat
"""

from tfcompress.configs import common
from tfcompress.pipeline.recipe import default_config


def get_config(variant: str = ""):
    common.check_variant(variant)
    config = default_config()
    config.stages = ("qat",)
    config.qat.epochs = 3
    config.convert.modes = ("int8",)
    if variant == "smoke":
        common.smoke(config)
    return config

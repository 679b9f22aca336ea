"""Quantization-aware training of the digits CNN, then int8 conversion and validation.

    python scripts/compress.py --config=configs/digits_qat.py --workdir=workdir/digits_qat
"""

from tfcompress.recipe import default_config


def get_config(variant: str = ""):
    config = default_config()
    config.stages = ("qat",)
    config.qat.epochs = 3
    config.convert.modes = ("int8",)
    if variant == "smoke":
        config.data.limit = 256
        config.train.epochs = 1
        config.qat.epochs = 1
        config.convert.representative_samples = 16
        config.validate.latency_runs = 3
    return config

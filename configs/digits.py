"""Default recipe: train the digits CNN, convert to float32, float16 and int8, validate on LiteRT.

    python scripts/compress.py --config=configs/digits.py --workdir=workdir/digits

Any field can be overridden, e.g. ``--config.train.epochs=5``. ``configs/digits.py:smoke`` is
the one-epoch, few-samples variant the tests run.
"""

from tfcompress.recipe import default_config


def get_config(variant: str = ""):
    config = default_config()
    if variant == "smoke":
        config.data.limit = 256
        config.train.epochs = 1
        config.convert.representative_samples = 16
        config.validate.latency_runs = 3
    return config

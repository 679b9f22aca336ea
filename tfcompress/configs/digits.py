"""Default recipe: train the digits CNN, convert to float32, float16 and int8, validate on LiteRT.

    tfcompress compress --config=digits --workdir=workdir/digits

Any field can be overridden, e.g. ``--config.train.epochs=5``. ``--config=digits:smoke`` is
the one-epoch, few-samples variant the tests run.
"""

from tfcompress.configs import common
from tfcompress.pipeline.recipe import default_config


def get_config(variant: str = ""):
    common.check_variant(variant)
    config = default_config()
    if variant == "smoke":
        common.smoke(config)
    return config

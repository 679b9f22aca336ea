"""Low-rank factorization: SVD-split the digits CNN's large layers, fine-tune, convert.

    tfcompress compress --config=digits_factorize --workdir=workdir/digits_factorize

Each Dense / Conv2D layer whose truncated SVD keeping ``energy`` of the squared singular values
holds fewer parameters becomes two thinner layers. Set a fixed rank instead with
``--config.factorize.rank=16`` (0 means: use energy). ``--config=digits_factorize:smoke`` is
the quick variant the tests run.
"""

from tfcompress.configs import common
from tfcompress.pipeline.recipe import default_config


def get_config(variant: str = ""):
    common.check_variant(variant)
    config = default_config()
    config.stages = ("factorize",)
    config.factorize.energy = 0.8
    config.factorize.epochs = 10
    config.factorize.learning_rate = 5e-4
    config.convert.modes = ("float32", "int8")
    if variant == "smoke":
        common.smoke(config)
    return config

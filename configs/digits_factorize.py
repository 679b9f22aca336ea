"""Low-rank factorization: SVD-split the digits CNN's large layers, fine-tune, convert.

    python scripts/compress.py --config=configs/digits_factorize.py --workdir=workdir/digits_factorize

Each Dense / Conv2D layer whose truncated SVD keeping ``energy`` of the squared singular values
holds fewer parameters becomes two thinner layers. Set a fixed rank instead with
``--config.factorize.rank=16`` (0 means: use energy). ``configs/digits_factorize.py:smoke`` is
the quick variant the tests run.
"""

from tfcompress.recipe import default_config


def get_config(variant: str = ""):
    config = default_config()
    config.stages = ("factorize",)
    config.factorize.energy = 0.8
    config.factorize.epochs = 10
    config.factorize.learning_rate = 5e-4
    config.convert.modes = ("float32", "int8")
    if variant == "smoke":
        config.data.limit = 256
        config.train.epochs = 1
        config.factorize.epochs = 1
        config.convert.representative_samples = 16
        config.validate.latency_runs = 3
    return config

"""What the bundled recipes share: their variants and the one-epoch, few-samples smoke variant.

Each config file (big_vision's ``configs/common.py`` pattern) starts with
``common.check_variant(variant)`` and, for ``smoke``, calls ``common.smoke(config)`` and then
sets only what differs for it. The tests run every config's smoke variant in-process.
"""

from ml_collections import ConfigDict

from tfcompress import errors

VARIANTS = ("", "smoke")


def check_variant(variant: str, accepted=VARIANTS) -> str:
    """Returns ``variant`` if the config offers it.

    Raises:
        ConfigError: an unknown variant (the message names the accepted ones).
    """
    if variant not in accepted:
        names = [v or "(none)" for v in accepted]
        raise errors.ConfigError(errors.unknown("config variant", variant, names))
    return variant


def smoke(config: ConfigDict) -> ConfigDict:
    """The shared smoke variant, in place: 256 samples, one epoch for training and every stage
    in ``config.stages``, 16 calibration samples, 3 latency runs. Returns ``config``."""
    config.data.limit = 256
    config.train.epochs = 1
    for name in config.stages:
        if "epochs" in config[name]:
            config[name].epochs = 1
    config.convert.representative_samples = 16
    config.validate.latency_runs = 3
    return config

"""int4 weights that keep accuracy: the digits CNN recovered (equalize, AdaRound, bias correction)
onto the LiteRT Quantizer's int4 grid, next to plain round-to-nearest int4 of the same model.

    tfcompress compress --config=digits_ptq --workdir=workdir/digits_ptq

The ``recover`` stage (``tfcompress.ptq.recovery.recover``) returns a float model whose kernels sit
exactly on the grid of ``recover.mode``; it is converted with that same mode, so the learned
integers are the deployed ones (``report.md``: "baseline dynamic_wi4" is min-max rounding of the
untouched model, "dynamic_wi4" the recovered one, both paired with the float32 baseline on the
test images). For full integer: ``--config.recover.mode=int8 --config.convert.modes="('int8',)"
--config.convert.baseline_modes="('int8',)"``. ``--config=digits_ptq:smoke`` is the quick variant.
"""

from tfcompress.configs import common
from tfcompress.pipeline.recipe import default_config


def get_config(variant: str = ""):
    common.check_variant(variant)
    config = default_config()
    config.stages = ("recover",)
    config.recover.mode = "dynamic_wi4"
    config.convert.modes = ("float32", "dynamic_wi4")
    config.convert.baseline_modes = ("dynamic_wi4",)
    if variant == "smoke":
        common.smoke(config)
        config.recover.samples = 64
        config.recover.iterations = 20
    return config

"""Low-bit digits CNN: int4 weights, and per-layer widths chosen under a 0.10x size budget.

    tfcompress compress --config=digits_lowbit --workdir=workdir/digits_lowbit

Modes (LiteRT / AI Edge Quantizer, see ``tfcompress.export.lowbit``): ``dynamic_wi4`` (int4 weights,
float activations: about 0.136x the float32 bytes) and ``mixed`` (each layer's weights at 2, 4
or 8 bits, float16 or float32, chosen on the representative images so the flatbuffer fits
``convert.size_budget``, here 0.10x float32; ``mixed.recipe.json`` in the workdir replays it
with ``tfcompress.export.lowbit.quantize``). Try ``--config.convert.size_budget=0.2`` or
``--config.convert.overrides="('FULLY_CONNECTED=8',)"`` (per-layer widths of the fixed modes).
``--config=digits_lowbit:smoke`` is the one-epoch, few-samples variant the tests run.
"""

from tfcompress.configs import common
from tfcompress.pipeline.recipe import default_config


def get_config(variant: str = ""):
    common.check_variant(variant)
    config = default_config()
    config.convert.modes = ("float32", "dynamic_wi4", "mixed")
    config.convert.size_budget = 0.10
    if variant == "smoke":
        common.smoke(config)
        config.convert.mixed_widths = (2, 4, 8, 32)
    return config

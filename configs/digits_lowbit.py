"""Low-bit digits CNN: int4 weights, and per-layer widths chosen under a 0.10x size budget.

    python scripts/compress.py --config=configs/digits_lowbit.py --workdir=workdir/digits_lowbit

Modes (LiteRT / AI Edge Quantizer, see ``tfcompress.lowbit``): ``dynamic_wi4`` (int4 weights,
float activations: about 0.136x the float32 bytes) and ``mixed`` (each layer's weights at 2, 4
or 8 bits, float16 or float32, chosen on the representative images so the flatbuffer fits
``convert.size_budget``, here 0.10x float32; ``mixed.recipe.json`` in the workdir replays it
with ``tfcompress.lowbit.quantize``). Try ``--config.convert.size_budget=0.2`` or
``--config.convert.overrides="('FULLY_CONNECTED=8',)"`` (per-layer widths of the fixed modes).
``configs/digits_lowbit.py:smoke`` is the one-epoch, few-samples variant the tests run.
"""

from tfcompress.recipe import default_config


def get_config(variant: str = ""):
    config = default_config()
    config.convert.modes = ("float32", "dynamic_wi4", "mixed")
    config.convert.size_budget = 0.10
    if variant == "smoke":
        config.data.limit = 256
        config.train.epochs = 1
        config.convert.representative_samples = 16
        config.convert.mixed_widths = (2, 4, 8, 32)
        config.validate.latency_runs = 3
    return config

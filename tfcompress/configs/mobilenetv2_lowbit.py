"""Low-bit MobileNetV2 on the digits as 32x32 RGB: int8/int4 weights and mixed precision.

    tfcompress compress --config=mobilenetv2_lowbit \
        --workdir=workdir/mobilenetv2_lowbit

MobileNetV2 (``keras.applications``, weights=None, alpha ``model.width``) is trained on the
bundled digits resized to 32x32 RGB (``data.resize``); use your own images with
``--config.data.name=image_folder --config.data.path=DIR --config.data.image_size="(96, 96)"``.
The LiteRT Quantizer has no int4/int2 weights for DEPTHWISE_CONV_2D, so ``dynamic_wi4`` keeps
those float32; ``--config.convert.overrides="('DEPTHWISE_CONV_2D=8',)"`` makes them int8, which
XNNPACK does not take (dynamic-range depthwise runs on the builtin kernels). ``mixed`` chooses
every layer's width under ``convert.size_budget`` (0.2x, between ``dynamic_wi4`` and
``dynamic_wi8``; ``--config.convert.mixed_max_layers=16`` analyzes only the 16 largest layers and
gives the others int8). ``--config=mobilenetv2_lowbit:smoke`` is the tiny variant the tests run.
"""

from tfcompress.configs import common
from tfcompress.pipeline.recipe import default_config


def get_config(variant: str = ""):
    common.check_variant(variant)
    config = default_config()
    config.data.resize = True  # 8x8 digits -> 32x32 RGB, the smallest MobileNetV2 input
    config.data.image_size = (32, 32)
    config.model.name = "mobilenet_v2"
    config.model.width = 0.5
    config.train.epochs = 15
    config.convert.modes = ("float32", "dynamic_wi8", "dynamic_wi4", "mixed")
    config.convert.representative_samples = 100
    config.convert.size_budget = 0.2  # between dynamic_wi4 and dynamic_wi8
    config.validate.latency_runs = 20
    if variant == "smoke":
        common.smoke(config)
        config.data.limit = 64
        config.model.width = 0.35
        config.convert.modes = ("dynamic_wi4", "mixed")
        config.convert.representative_samples = 8
        config.convert.size_budget = 0.3
        config.convert.mixed_widths = (4, 8, 32)
        config.convert.mixed_max_layers = 2
    return config

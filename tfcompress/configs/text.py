"""Text classification on token ids: a small Transformer encoder on the bundled fortunes.

    tfcompress compress --config=text --workdir=workdir/text

Data: ``tfcompress.data.load_text()``, six topics of Debian's ``fortunes`` as int32 ids of a
2,000-word vocabulary, 64 per text (see tfcompress/datasets/README.md). Model:
``text_transformer`` (Embedding(2000, 32) -> one encoder block: MultiHeadAttention,
LayerNormalization, feed-forward -> GlobalAveragePooling1D -> softmax; 73k parameters).
Converted to float32, dynamic (int8 weights) and int8 (full integer, calibrated on int32 ids);
the token-id input stays int32 in every flatbuffer. The int8 file agrees with the Keras model on
0.992 / 0.992 / 0.994 of the test texts (min / median / max over seeds 0-2, every op integer:
``benchmarks/text_int8.py``), helped by the model's attention dropout.
``--config.model.name=text_bow`` trains the average-embedding classifier (Embedding(2000, 16)
-> GlobalAveragePooling1D -> Dense) instead; its post-training int8 agrees on only 0.965-0.978
(its int8 embedding lookup holds one scale for the whole table): add
``--config.stages="('qat',)"`` for 0.998-1.0 against the QAT model. ``--config=text:smoke`` is
the quick variant.
"""

from tfcompress.configs import common
from tfcompress.pipeline.recipe import default_config


def get_config(variant: str = ""):
    common.check_variant(variant)
    config = default_config()
    config.data.name = "text"
    config.model.name = "text_transformer"
    config.train.epochs = 10
    config.train.learning_rate = 3e-3
    config.convert.modes = ("float32", "dynamic", "int8")
    if variant == "smoke":
        common.smoke(config)
    return config

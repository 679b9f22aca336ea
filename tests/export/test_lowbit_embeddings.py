"""Low-bit embedding tables: int4/int8 rows and blocks read back from the flatbuffer, sizes."""

import numpy as np
import pytest

import tfcompress
from tfcompress import keras, models
from tfcompress.export import lowbit
from tfcompress.export import mixed
from tfcompress.export.conversion import conversion_info, convert
from tfcompress.export.validation import predict


def _text_bow(width: float, epochs: int = 3):
    (x, y), (xt, yt) = tfcompress.data.load_text(0)
    keras.utils.set_random_seed(0)
    model = models.text_bow(width=width)
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=epochs, batch_size=64, verbose=0)
    return model, (x, y), (xt[:200], yt[:200])


@pytest.fixture(scope="module")
def bow2():
    """The bundled text model at width 2 (Embedding(2000, 32): 97% of the weights)."""
    return _text_bow(2)


@pytest.fixture(scope="module")
def bow2_f32(bow2):
    return convert(bow2[0], "float32")


def _table(flatbuffer: bytes) -> lowbit.Layer:
    (table,) = [l for l in lowbit.weight_layers(flatbuffer) if l.name == "embedding"]
    return table


def _agreement(a: bytes, b: bytes, x) -> float:
    return float(np.mean(predict(a, x).argmax(-1) == predict(b, x).argmax(-1)))


def test_float32_table_is_a_gather_and_the_rewrite_keeps_outputs(bow2, bow2_f32):
    _, _, (xt, _) = bow2
    assert _table(bow2_f32).op == "GATHER" and _table(bow2_f32).dtype == "float32"
    rewritten = lowbit.embedding_lookups(bow2_f32)
    table = _table(rewritten)
    assert (table.op, table.shape, table.dtype) == ("EMBEDDING_LOOKUP", (2000, 32), "float32")
    np.testing.assert_allclose(predict(rewritten, xt), predict(bow2_f32, xt), atol=1e-6)


@pytest.mark.parametrize("mode, bits, block, max_ratio", [
    ("dynamic_wi4", 4, 0, 0.24),          # per row: 16 bytes of int4 + 12 of scale/zero point
    ("dynamic_wi4_block32", 4, 32, 0.17),  # a float16 scale per 32 values, no zero points
    ("weight_only_wi8", 8, 0, 0.37),
])
def test_int_modes_quantize_the_table(bow2, bow2_f32, mode, bits, block, max_ratio):
    _, _, (xt, _) = bow2
    fb = convert(bow2[0], mode)
    table = _table(fb)
    assert (table.op, table.bits, table.block_size) == ("EMBEDDING_LOOKUP", bits, block)
    # the stored integers (int4: two a byte) and their scales: per row a float32 scale and an
    # int64 zero point, per block a float16 scale
    scales = 2000 * 12 if not block else 2000 * (32 // block) * 2
    assert table.weight_bytes == 2000 * 32 * bits // 8 + scales
    assert len(fb) / len(bow2_f32) <= max_ratio, len(fb) / len(bow2_f32)
    assert _agreement(fb, bow2_f32, xt) >= 0.95
    info = conversion_info(fb)
    rows = {row["layer"]: row for row in info["layers"]}
    assert rows["embedding"]["bits"] == bits and rows["embedding"]["op"] == "EMBEDDING_LOOKUP"
    assert not info.get("left_alone")  # the table (97% of the weights) is not left in float32


def test_override_sets_the_table_width_alone(bow2, bow2_f32):
    fb = lowbit.quantize(bow2_f32, "dynamic_wi4", overrides={"embedding": 8})
    assert lowbit.layer_bits(fb) == {"embedding": 8, "dense": 4, "logits": 4}
    fb = convert(bow2[0], "dynamic_wi4", options={"overrides": {"EMBEDDING_LOOKUP": 32}})
    assert lowbit.layer_bits(fb) == {"embedding": 32, "dense": 4, "logits": 4}
    (name, share), = conversion_info(fb)["left_alone"]  # a float table is named with its share
    assert name == "embedding" and share > 0.95


def test_static_mode_keeps_the_gather_at_int8(bow2, bow2_f32):
    x = bow2[1][0]
    fb = lowbit.quantize(bow2_f32, "static_wi8_ai8", representative_data=x[:32])
    table = _table(fb)
    assert (table.op, table.dtype) == ("GATHER", "int8")


def test_narrow_table_falls_back_to_rows_in_a_block_mode():
    """Embedding(2000, 16): a block of 32 does not divide a row; one scale per row instead."""
    model, _, (xt, _) = _text_bow(1, epochs=1)
    f32 = convert(model, "float32")
    fb = convert(model, "dynamic_wi4_block32")
    table = _table(fb)
    assert (table.bits, table.block_size) == (4, 0)
    assert _agreement(fb, f32, xt) >= 0.9


def test_mixed_precision_chooses_the_table_width(bow2, bow2_f32):
    _, (x, y), _ = bow2
    result = mixed.mixed_precision(bow2_f32, x[-200:], y[-200:], size_budget=0.3,
                                   widths=(4, 8, 32))
    chosen = {row["name"]: row for row in result.layers}
    assert chosen["embedding"]["op"] == "EMBEDDING_LOOKUP"
    assert chosen["embedding"]["bits_read_back"] in (4, 8)  # 32 cannot fit 0.3x
    assert result.meets_budget and len(result.flatbuffer) <= 0.31 * len(bow2_f32)
    assert _table(result.flatbuffer).bits == chosen["embedding"]["bits_read_back"]

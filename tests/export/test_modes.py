"""The one registry of conversion modes: written order, duplicates refused, every mode converts
the tiny digits CNN as its descriptor says, and recovery, mixed precision and the search read it."""

import subprocess
import sys

import numpy as np
import pytest

import tfcompress
from tfcompress import errors
import tfcompress.export.conversion as conversion
import tfcompress.export.lowbit as lowbit
import tfcompress.export.mixed as mixed
import tfcompress.export.modes as modes


@pytest.fixture(scope="module")
def tiny(digits):
    (x, _), _ = digits
    tfcompress.keras.utils.set_random_seed(0)
    return tfcompress.models.digits_cnn(width=0.25), x[:32]


def test_builtin_modes_keep_their_written_order_in_a_fresh_process():
    """The registry lists the built-ins in ``BUILTIN`` order whatever module a process imports
    first (here: mixed, then lowbit, the reverse of the package's own order)."""
    code = ("import tfcompress.export.mixed, tfcompress.export.lowbit\n"
            "import tfcompress.export.conversion as c\n"
            "print('MODES', ','.join(c.available_modes()))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    line = next(l for l in out.stdout.splitlines() if l.startswith("MODES "))
    fresh = tuple(line.split(" ", 1)[1].split(","))
    written = tuple(m.name for m in modes.BUILTIN)
    assert fresh == written == conversion.available_modes()[:len(written)]
    assert written[:5] == conversion.MODES == ("float32", "float16", "dynamic", "int8", "int16x8")
    assert written[-2:] == ("mixed", "mixed_a16w8")
    assert tuple(lowbit.MODES) == written[5:-2]  # lowbit's settings are the registry's
    assert all(lowbit.MODES[m.name] is m.quantizer for m in modes.modes("quantizer"))


def test_a_duplicate_name_is_refused_and_leaves_the_registry_as_it_was():
    before = modes.names()
    original = modes.get("int8")
    with pytest.raises(errors.ConfigError, match="conversion mode 'int8' is already registered") as e:
        modes.register(modes.Mode("int8", "converter", converter=modes.Converter()))
    assert "\n" not in str(e.value)
    with pytest.raises(errors.ConfigError, match="'float16' is already registered"):
        conversion.register_mode("float16")(lambda req: b"")
    with pytest.raises(errors.ConfigError, match="backend 'quantizer' is already registered"):
        modes.register_backend(modes.Backend("quantizer", lambda req, mode: b""))
    assert modes.names() == before and modes.get("int8") is original
    with pytest.raises(errors.ConfigError, match="non built-in"):
        modes.unregister("int8")


def test_an_unknown_mode_names_what_exists():
    with pytest.raises(errors.ConversionError, match="unknown conversion mode 'int3'") as e:
        modes.get("int3")
    assert "static_wi4_ai16" in str(e.value) and "mixed" in str(e.value)


def _expected(mode: modes.Mode, info: dict, bits: dict) -> None:
    """What the flatbuffer shows of the descriptor: stored weight widths and activation types."""
    assert info["mode"] == mode.name
    if mode.converter is not None:
        c = mode.converter
        if not c.optimize:
            assert set(info["weight_dtypes"]) <= {"float32", "int32"}
        elif c.supported_types == ("float16",):
            assert "float16" in info["weight_dtypes"]
        else:  # int8 weights
            assert bits["dense"] == 8 and bits["conv2"] == 8
        if c.calibrate:
            assert info["activation_dtype"] == ("int16" if "INT16" in c.ops_set else "int8")
    elif mode.quantizer is not None:
        q = mode.quantizer
        assert bits["dense"] == q.bits  # FULLY_CONNECTED takes every width and block size
        if q.activation_bits:
            assert info["activation_dtype"] == f"int{q.activation_bits}"
        else:
            assert info["activation_dtype"] == "float32"
    elif mode.name == "mixed_a16w8":  # int8 weights; the int16 ops listed are those read back
        chosen = info["facts"]["mixed_activations"]["int16_ops"]
        assert set(bits.values()) == {8} and len(chosen) <= info["facts"][
            "mixed_activations"]["ops_total"]
    else:  # mixed: a size budget met by per-layer widths read back
        assert set(bits.values()) <= set(lowbit.WIDTHS) and info["facts"]["mixed"]["meets_budget"]


@pytest.mark.parametrize("name", [m.name for m in modes.BUILTIN])
def test_every_builtin_mode_converts_the_tiny_digits_cnn(tiny, name):
    model, x = tiny
    mode = modes.get(name)
    if mode.quantizer is not None and mode.quantizer.block > 32:
        # Blocks split a FULLY_CONNECTED layer's inputs: logits takes 128 * width of them.
        model = tfcompress.models.digits_cnn(width=mode.quantizer.block / 128)
    kwargs = {"representative_data": x} if mode.needs_representative_data else {}
    if name == "mixed":
        kwargs["options"] = {"size_budget": 0.6, "widths": (4, 8, 32)}
    flatbuffer = conversion.convert(model, name, **kwargs)
    info = conversion.conversion_info(flatbuffer)
    _expected(mode, info, lowbit.layer_bits(flatbuffer))
    out = tfcompress.export.validation.predict(flatbuffer, x[:8])
    assert out.shape == (8, 10)
    if name != "dynamic_wi2":  # LiteRT 2.3's int2 CONV_2D kernel may give non-finite outputs
        assert np.isfinite(out).all()


def test_a_mode_needing_representative_data_says_so(tiny):
    model, _ = tiny
    for name in (m.name for m in modes.BUILTIN if m.needs_representative_data and m.quantizer):
        with pytest.raises(errors.ConversionError, match="representative_data"):
            conversion.convert(model, name)


def test_recovery_reads_the_grid_from_the_registry(tiny):
    """recovery_settings and convert(recovery=...) follow each mode's grid; a custom mode with a
    grid becomes a recovery target, one without is refused naming those with one."""
    model, x = tiny
    for m in modes.modes():
        if m.grid is not None:
            assert modes.recovery_settings(m.name) == {
                "bits": m.grid.bits, "activation_bits": m.grid.activation_bits,
                **({"block": m.grid.block} if m.grid.block else {})}
    assert modes.recovery_settings("int8") == {"bits": 8, "activation_bits": 8}
    assert modes.recovery_settings("dynamic_wi4")["bits"] == 4
    with pytest.raises(errors.ConfigError, match="conversion mode for recovery 'float16'") as e:
        modes.recovery_settings("float16")
    assert "dynamic_wi4" in str(e.value) and "static_wi8_ai8" not in str(e.value)
    with pytest.raises(errors.ConversionError, match="recovery=True does not apply to mode 'dynamic_wi2'"):
        conversion.convert(model, "dynamic_wi2", recovery=("correct_bias",), representative_data=x)
    # block-wise int4: bias correction on the block grid, no AdaRound
    assert modes.recovery_settings("dynamic_wi4_block64") == {
        "bits": 4, "activation_bits": None, "block": 64}
    with pytest.raises(errors.ConversionError,
                       match="recovery step for block-wise mode 'dynamic_wi4_block32' 'adaround'"):
        conversion.convert(model, "dynamic_wi4_block32", recovery=("adaround",),
                           representative_data=x)

    modes.register(modes.Mode("int4_copy", "quantizer", options=("overrides", "algorithm"),
                              quantizer=modes.Quantizer("dynamic", 4), grid=modes.Grid(4)))
    try:
        assert "int4_copy" in modes.recoverable()
        assert modes.recovery_settings("int4_copy") == {"bits": 4, "activation_bits": None}
    finally:
        modes.unregister("int4_copy")
    assert "int4_copy" not in conversion.available_modes()


def test_mixed_precision_reads_its_executions_and_options_from_the_registry():
    float_activations = {m.quantizer.execution for m in modes.modes("quantizer")
                         if not m.quantizer.activation_bits}
    assert set(mixed.SCHEMES) == float_activations == {"dynamic", "weight_only"}
    with pytest.raises(errors.ConversionError, match="mixed-precision execution 'static'"):
        mixed.sensitivity(b"", np.zeros((1, 8, 8, 1), np.float32), execution="static")
    assert conversion.mode_options("mixed") == modes.get("mixed").options
    assert conversion.mode_options("dynamic_wi4") == modes.get("dynamic_wi4").options
    assert conversion.mode_options("int8") == ("activation_ranges",)  # ptq.activation_ranges


@pytest.mark.parametrize("mode", ["dynamic_wi4", "int8", "float16", "dynamic_wi2"])
def test_a_search_trial_recovers_only_modes_with_a_grid(mode):
    import tfcompress.pipeline.search_space as search_space

    config = tfcompress.configs.load("digits_search")
    recipe = search_space.trial_recipe(config, {"mode": mode, "recovery": 1}, "model.keras")
    recovers = "recover" in recipe.stages
    assert recovers == (modes.get(mode).grid is not None)
    if recovers:
        assert recipe.recover.mode == mode


def test_the_command_takes_its_android_mode_from_the_registry(tmp_path):
    """``--android_mode`` accepts the registry's names only: a wrong one is refused before any
    work, in one line that lists them in the registry's order."""
    out = subprocess.run(
        [sys.executable, "-m", "tfcompress", "compress", "--android_mode=int3",
         f"--workdir={tmp_path}"], capture_output=True, text=True, timeout=300)
    line = next(l for l in out.stderr.splitlines() if "--android_mode=int3" in l)
    assert out.returncode != 0 and not list(tmp_path.iterdir())
    listed = line.split("<", 1)[1].rstrip(">").split("|")
    assert tuple(listed) == tuple(m.name for m in modes.BUILTIN)

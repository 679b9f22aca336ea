"""The one registry of conversion modes: what each mode is, in one frozen descriptor.

A mode is data: its name, the backend that makes it (the TFLite converter, the LiteRT
Quantizer, or mixed precision over the quantizer), that backend's settings (converter
options, or the quantizer recipe's execution, weight bits, block size and activation bits),
what it needs (representative data), the input/output types it accepts, the options
``convert(..., options=...)`` may pass, and the weight grid PTQ recovery targets for it.

The built-in modes are registered here, in the one written order of ``BUILTIN``, whatever
module is imported first; ``register`` adds more (``conversion.register_mode`` wraps it) and
refuses a name that exists. The code that makes a mode is a backend: ``register_backend``
binds one function per backend name (the converter in ``conversion``, the quantizer in
``lowbit``, mixed precision in ``mixed``), so the set of modes never depends on import order.
Recovery, mixed precision, the recipe runner and the command read modes from here.
"""

import dataclasses
from typing import Callable, Optional

from tfcompress import errors

@dataclasses.dataclass(frozen=True)
class Converter:
    """TFLite converter settings of a mode.

    Attributes:
        optimize: ``optimizations = [tf.lite.Optimize.DEFAULT]`` (else a plain float32 model).
        supported_types: ``target_spec.supported_types`` names, e.g. ``("float16",)``.
        ops_set: the ``tf.lite.OpsSet`` name of ``target_spec.supported_ops``, or "".
        calibrate: activations calibrated on the representative data.
        qat_skips_calibration: a QAT model uses its trained ranges instead (no ops set either).
    """

    optimize: bool = False
    supported_types: tuple = ()
    ops_set: str = ""
    calibrate: bool = False
    qat_skips_calibration: bool = False


@dataclasses.dataclass(frozen=True)
class Quantizer:
    """LiteRT Quantizer recipe settings of a mode: how ops run, weight bits, block size
    (0: one scale per output channel), activation bits (0: float activations)."""

    execution: str
    bits: int
    block: int = 0
    activation_bits: int = 0

    @property
    def name(self) -> str:
        """The mode name these settings give, e.g. ``dynamic_wi4_block32`` or ``static_wi8_ai16``."""
        name = f"{self.execution}_wi{self.bits}"
        name += f"_block{self.block}" if self.block else ""
        return name + (f"_ai{self.activation_bits}" if self.activation_bits else "")


@dataclasses.dataclass(frozen=True)
class Grid:
    """The weight grid a mode deploys, which PTQ recovery rounds onto.

    Attributes:
        bits: weight bits (8 or 4).
        granularity: ``"channel"`` (one symmetric scale per output channel) or ``"block"``.
        activation_bits: activation bits recovery simulates (8 for full integer), or None for
            float (or int16, whose rounding is negligible) activations.
        block: the block size of a block-wise grid (``ptq.grids.block_kernels``), else 0.
    """

    bits: int
    granularity: str = "channel"
    activation_bits: Optional[int] = None
    block: int = 0

    def recovery_settings(self) -> dict:
        """``{"bits", "activation_bits"}`` (and ``"block"`` for a block-wise grid): the keyword
        arguments of ``ptq.recovery.recover``."""
        return {"bits": self.bits, "activation_bits": self.activation_bits,
                **({"block": self.block} if self.block else {})}


@dataclasses.dataclass(frozen=True)
class Mode:
    """One conversion mode.

    Attributes:
        name: the mode name ``convert`` takes.
        backend: ``converter``, ``quantizer``, ``mixed``, or ``custom:<name>``.
        needs_representative_data: calibration images are required (QAT models excepted for
            the converter's modes that skip calibration).
        io_types: accepted ``io_type`` values (the first is the default); () keeps float32.
        options: names ``convert(..., options=...)`` may pass.
        converter: the converter's settings (backend ``converter``).
        quantizer: the quantizer recipe's settings (backend ``quantizer``).
        grid: the weight grid recovery targets, or None where recovery is not offered.
        function: ``fn(request) -> bytes`` of a custom mode (``conversion.register_mode``).
    """

    name: str
    backend: str
    needs_representative_data: bool = False
    io_types: tuple = ()
    options: tuple = ()
    converter: Optional[Converter] = None
    quantizer: Optional[Quantizer] = None
    grid: Optional[Grid] = None
    function: Optional[Callable] = dataclasses.field(default=None, compare=False)


@dataclasses.dataclass(frozen=True)
class Backend:
    """The code that makes a backend's modes.

    Attributes:
        name: the backend name modes refer to.
        convert: ``fn(request, mode) -> flatbuffer bytes``.
        section_options: ``fn(mode, recipe convert section) -> options or None`` (raises
            ConversionError for values the mode cannot take), or None.
        describe: ``fn(flatbuffer) -> [{"layer", "bits", ...}]``, the per-layer weight widths
            ``conversion_info`` reports, or None.
    """

    name: str
    convert: Callable
    section_options: Optional[Callable] = None
    describe: Optional[Callable] = None


_LOWBIT_OPTIONS = ("overrides", "algorithm")


def _quantizer_modes() -> tuple:
    """The LiteRT Quantizer modes, in the table's order: (execution, bits, blocks, activations)."""
    table = (
        ("dynamic", (8, 4, 2), (0,), (0,)),
        ("dynamic", (4,), (32, 64, 128), (0,)),
        ("weight_only", (8, 4), (0,), (0,)),
        ("static", (8, 4), (0,), (8, 16)),
    )
    # Recovery's grid: the channelwise 8- and 4-bit weights of dynamic and weight-only modes
    # (ptq.grids matches the quantizer's int4/int8 channelwise scales) and the block-wise int4
    # ones (ptq.grids.block_kernels: bias correction only).
    out = []
    for execution, widths, blocks, activations in table:
        for bits in widths:
            for block in blocks:
                for act in activations:
                    spec = Quantizer(execution, bits, block, act)
                    grid = (None if execution == "static" or bits not in (8, 4)
                            else Grid(bits, "block", block=block) if block else Grid(bits))
                    # int8 activations: "activation_ranges" as the converter's int8 takes it
                    options = _LOWBIT_OPTIONS + (("activation_ranges",) if act == 8 else ())
                    out.append(Mode(spec.name, "quantizer",
                                    needs_representative_data=execution == "static",
                                    options=options, quantizer=spec, grid=grid))
    return tuple(out)


# The built-in modes, in the order ``available_modes()`` lists them.
BUILTIN = (
    Mode("float32", "converter", converter=Converter()),
    Mode("float16", "converter", converter=Converter(optimize=True, supported_types=("float16",))),
    Mode("dynamic", "converter", converter=Converter(optimize=True), grid=Grid(8)),
    # int8 option "activation_ranges": "min_max" (the converter's calibrated ranges, default),
    # "mse" (each activation's range with the least int8 squared error on its calibration
    # histogram) or "percentile" (its 99.99th percentile); tfcompress.ptq.activation_ranges.
    Mode("int8", "converter", needs_representative_data=True, io_types=("int8", "uint8", "float32"),
         options=("activation_ranges",),
         converter=Converter(optimize=True, ops_set="TFLITE_BUILTINS_INT8", calibrate=True,
                             qat_skips_calibration=True),
         grid=Grid(8, activation_bits=8)),
    Mode("int16x8", "converter", needs_representative_data=True, io_types=("float32", "int16"),
         converter=Converter(optimize=True,
                             ops_set="EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8",
                             calibrate=True),
         grid=Grid(8)),  # int16 activations: their rounding is negligible, not simulated
    *_quantizer_modes(),
    Mode("mixed", "mixed", needs_representative_data=True,
         options=("size_budget", "widths", "max_layers")),
    # int8 activations, int16 on the fewest ops that keep the float model's decisions
    # (tfcompress.export.mixed_activations)
    Mode("mixed_a16w8", "mixed_activations", needs_representative_data=True,
         options=("target", "tolerance", "max_ops", "algorithm", "ranges")),
)

_MODES: dict = {}
_BACKENDS: dict = {}


def register(mode: Mode) -> Mode:
    """Adds ``mode`` to the registry; returns it.

    Raises:
        ConfigError: a mode of that name exists already.
    """
    if mode.name in _MODES:
        raise errors.ConfigError(
            f"conversion mode {mode.name!r} is already registered; accepted: a new name (not "
            "one of " + ", ".join(_MODES) + ")")
    _MODES[mode.name] = mode
    return mode


def unregister(name: str) -> None:
    """Removes a mode added with ``register`` (built-in modes stay).

    Raises:
        ConfigError: an unknown or built-in mode.
    """
    if name not in _MODES or _MODES[name] in BUILTIN:
        raise errors.ConfigError(errors.unknown(
            "registered (non built-in) conversion mode", name,
            [n for n, m in _MODES.items() if m not in BUILTIN] or ["(none)"]))
    del _MODES[name]
    _BACKENDS.pop(f"custom:{name}", None)


def register_backend(backend: Backend) -> Backend:
    """Binds the code of a backend (``Backend.convert`` makes its modes); returns it.

    Raises:
        ConfigError: that backend has code already.
    """
    if backend.name in _BACKENDS:
        raise errors.ConfigError(
            f"conversion backend {backend.name!r} is already registered; accepted: a new name")
    _BACKENDS[backend.name] = backend
    return backend


def get(name: str) -> Mode:
    """The mode called ``name``.

    Raises:
        ConversionError: an unknown mode (the message lists them).
    """
    if name not in _MODES:
        raise errors.ConversionError(errors.unknown("conversion mode", name, names()))
    return _MODES[name]


def backend(mode: Mode) -> Backend:
    """The code of ``mode``'s backend.

    Raises:
        ConversionError: the backend's module was not imported (``import tfcompress`` does).
    """
    if mode.backend not in _BACKENDS:
        raise errors.ConversionError(
            f"conversion mode {mode.name!r} needs backend {mode.backend!r}, which has no code "
            "loaded; accepted: import tfcompress (it loads every backend), or one of "
            + ", ".join(_BACKENDS))
    return _BACKENDS[mode.backend]


def names() -> tuple:
    """Every registered mode name: the built-ins in ``BUILTIN`` order, then those registered."""
    return tuple(_MODES)


def modes(backend_name: Optional[str] = None) -> tuple:
    """Every registered mode (of one backend when named), in registry order."""
    return tuple(m for m in _MODES.values() if backend_name in (None, m.backend))


def recoverable() -> tuple:
    """The names of the modes PTQ recovery can target (those with a weight grid)."""
    return tuple(m.name for m in _MODES.values() if m.grid is not None)


def recovery_settings(name: str) -> dict:
    """``{"bits", "activation_bits"}`` that make recovered weights deploy exactly in mode ``name``.

    Raises:
        ConfigError: a mode without a weight grid for recovery (the message lists those with one).
    """
    mode = _MODES.get(name)
    if mode is None or mode.grid is None:
        raise errors.ConfigError(errors.unknown("conversion mode for recovery", name,
                                                recoverable()))
    return mode.grid.recovery_settings()


for _mode in BUILTIN:
    register(_mode)

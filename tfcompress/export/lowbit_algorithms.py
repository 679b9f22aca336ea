"""The quantizer algorithms of the low-bit modes (``algorithm=``) and where each applies.

``tfcompress.export.lowbit.quantize(..., algorithm=...)`` (and ``convert``'s ``algorithm``
option) takes one of ``ALGORITHMS``; ``ALGORITHM_RULES`` says which modes, widths and data each
needs, ``algorithm_ops`` which op types it quantizes (the quantizer's registry). ``check_applies``
refuses an algorithm where it does not apply, with the modes it does; ``algorithm_for`` picks it,
or min-max, for one recipe entry.
"""

import dataclasses

from tfcompress import errors
import tfcompress._compat.quantizer as _quantizer
import tfcompress.export.modes as modes

EXECUTIONS = ("dynamic", "weight_only", "static")
# Algorithms of the quantizer offered here (``algorithm=``; ``ALGORITHM_RULES`` says where each
# applies): min-max scales (its default), OCTAV (clipping chosen for the least squared error;
# much better than min-max at 2 bits), MSE, GPTQ, OSCAR and (decomposed) Hadamard rotation.
ALGORITHMS = _quantizer.ALGORITHMS


@dataclasses.dataclass(frozen=True)
class AlgorithmRule:
    """Where a quantizer algorithm applies (checked here; the quantizer fails or misbehaves
    elsewhere).

    Attributes:
        executions: the mode executions it takes (``dynamic``, ``weight_only``, ``static``).
        blockwise: it takes the block-wise modes.
        bits: the integer weight widths it takes.
        needs_data: it needs representative data (its statistics come from calibration).
        why: the reason for the limits, said in the error.
    """

    executions: tuple
    blockwise: bool
    bits: tuple
    needs_data: bool = False
    why: str = ""


# The algorithms' ops are the quantizer's own (``algorithm_ops``): min-max and OCTAV every op
# the policy quantizes; MSE FULLY_CONNECTED, CONV_2D, DEPTHWISE_CONV_2D, CONV_2D_TRANSPOSE and
# EMBEDDING_LOOKUP; GPTQ and OSCAR FULLY_CONNECTED; Hadamard FULLY_CONNECTED and
# EMBEDDING_LOOKUP. Other ops of the model get min-max scales at the mode's width.
ALGORITHM_RULES = {
    "min_max": AlgorithmRule(EXECUTIONS, True, (2, 4, 8)),
    "octav": AlgorithmRule(EXECUTIONS, True, (2, 4, 8)),
    "mse": AlgorithmRule(EXECUTIONS, False, (4, 8),
                         why="its clip multipliers exist for 4 and 8 bits, one scale a channel"),
    "gptq": AlgorithmRule(("dynamic", "weight_only"), True, (2, 4, 8), needs_data=True,
                          why="in static_wi8_ai8 MTCNN ONet's outputs lost their decisions: "
                              "agreement 0.47, R^2 -0.85 where min-max gave 1.00 and 0.98"),
    "oscar": AlgorithmRule(EXECUTIONS, True, (2, 4, 8)),
    "hadamard": AlgorithmRule(("dynamic", "weight_only"), False, (2, 4, 8),
                              why="the quantizer rotates float activations only, one scale a "
                                  "channel"),
}


def algorithm_modes(algorithm: str) -> tuple:
    """The low-bit modes (``tfcompress.export.lowbit.MODES``: the registry's quantizer modes)
    ``algorithm`` applies to (``ALGORITHM_RULES``)."""
    rule = ALGORITHM_RULES[algorithm]
    return tuple(m.name for m in modes.modes("quantizer")
                 if m.quantizer.execution in rule.executions
                 and (rule.blockwise or not m.quantizer.block) and m.quantizer.bits in rule.bits)


def algorithm_ops(algorithm: str) -> tuple:
    """The op types ``algorithm`` quantizes (the quantizer's registry)."""
    return _quantizer.algorithm_ops(algorithm)


def check_applies(algorithm: str, mode: str, layers: list) -> None:
    """Raises ConversionError where ``algorithm`` does not apply to ``mode`` or the model."""
    if algorithm not in ALGORITHMS:
        raise errors.ConversionError(errors.unknown("quantizer algorithm", algorithm, ALGORITHMS))
    if mode not in algorithm_modes(algorithm):
        why = ALGORITHM_RULES[algorithm].why
        raise errors.ConversionError(
            f"quantizer algorithm {algorithm!r} does not apply to mode {mode!r}"
            + (f" ({why})" if why else "") + f"; accepted for {algorithm}: "
            + ", ".join(algorithm_modes(algorithm)))
    ops = algorithm_ops(algorithm)
    present = sorted({layer.op for layer in layers})
    if layers and not set(ops) & set(present):
        fits = [a for a in ALGORITHMS if mode in algorithm_modes(a)
                and set(algorithm_ops(a)) & set(present)]
        raise errors.ConversionError(
            f"quantizer algorithm {algorithm!r} quantizes {', '.join(ops)} layers and the model "
            f"has none (its weight layers: {', '.join(present)}); accepted for this model in "
            f"mode {mode!r}: " + ", ".join(fits))


def algorithm_for(algorithm: str, ops, bits: int) -> str:
    """``algorithm`` where it covers every op of ``ops`` at ``bits``, else min-max (so that an
    entry never falls through to another entry's width where the algorithm lacks an op)."""
    rule = ALGORITHM_RULES[algorithm]
    if bits not in rule.bits or not set(ops) <= set(algorithm_ops(algorithm)):
        return "min_max"
    return algorithm

"""Post-training quantization that keeps accuracy: one entry point over equalize, adaround and
correct_bias.

``recover(model, x, steps=("equalize", "adaround", "correct_bias"), bits=8)`` runs the chosen
steps in their one sensible order, whatever order ``steps`` lists them in: cross-layer
equalization first (it changes the float weights, exactly), learned rounding next (it decides
the integers), bias correction last (it removes the mean output shift the chosen integers and,
for full-integer conversion, the int8 activations leave, measured against the equalized float
model). The result is a float model whose kernels sit on the grid of the conversion it is meant
for, so the conversion keeps them. Which grid a conversion mode deploys is a fact of the mode:
the registry of modes holds it (``tfcompress.export.modes.recovery_settings(mode)`` gives
``recover``'s ``bits`` and ``activation_bits``); this module knows no mode names.
"""

import time
from typing import Optional, Sequence

from absl import logging

from tfcompress import errors
from tfcompress._compat.keras import keras
from tfcompress.ptq.rounding import adaround, correct_bias
from tfcompress.ptq.equalization import equalize, fold_batchnorm

STEPS = ("equalize", "adaround", "correct_bias")


def steps_for(block: int = 0) -> tuple:
    """The steps of ``STEPS`` that ``recover`` takes on a grid: all of them per channel; no
    ``adaround`` on a block-wise grid (``block`` > 0)."""
    return tuple(s for s in STEPS if not (block and s == "adaround"))


def recover(
    model: keras.Model,
    x,
    *,
    steps: Sequence[str] = STEPS,
    bits: int = 8,
    activation_bits: Optional[int] = None,
    relu6: str = "keep",
    samples: int = 512,
    iterations: int = 300,
    checkpoint_dir: Optional[str] = None,
    block: int = 0,
    max_seconds: Optional[float] = None,
) -> keras.Model:
    """Equalization, learned rounding and bias correction, chained.

    Args:
        model: a Sequential or functional tf_keras model.
        x: calibration images (a subset of the training images).
        steps: any of ``STEPS``; run in the order of ``STEPS``. An empty tuple only folds
            BatchNormalization.
        bits: 8 or 4, the weight grid (``export.modes.recovery_settings(mode)`` gives it for
            a conversion mode).
        activation_bits: 8 for full-integer conversion (``int8``): the int8 activations are
            simulated while rounding and correcting; None for float activations.
        relu6: ``equalize``'s handling of ReLU6 (``"keep"`` or ``"relu"``).
        samples, iterations: calibration images used, Adam steps per layer (``adaround``).
        checkpoint_dir: ``adaround``'s per-layer checkpoints.
        block: 0 for one scale per output channel; the block size of the quantizer's
            block-wise int4 modes, whose grid ``correct_bias`` rounds Dense kernels and
            Embedding tables onto (``steps_for(block)``: no ``adaround`` there).
        max_seconds: ``adaround``'s time budget: no layer starts learning its rounding after
            this many seconds from the start of ``recover`` (the later ones keep
            round-to-nearest); None: no budget.

    Returns:
        A new float model, BatchNormalization folded, kernels on the grid when ``adaround``
        or ``correct_bias`` ran. ``model.recovery`` holds each step's report and seconds.

    Raises:
        ConfigError: an unknown step (or ``adaround`` on a block-wise grid), bits or relu6
            value.
        DataError: calibration data that is empty or not finite.
    """
    bad = [s for s in steps if s not in steps_for(block)]
    if bad:
        raise errors.ConfigError(errors.unknown(
            "recovery step" + (f" on a block-wise grid (block={block})" if block else ""),
            bad[0], steps_for(block)))
    report = {}
    start = begin = time.perf_counter()
    current = equalize(model, relu6=relu6) if "equalize" in steps else fold_batchnorm(model)
    report["equalize"] = {"seconds": time.perf_counter() - start,
                          **getattr(current, "equalization", {})}
    reference = current
    if "adaround" in steps:
        start = time.perf_counter()
        current = adaround(current, x, bits=bits, activation_bits=activation_bits,
                           samples=samples, iterations=iterations,
                           checkpoint_dir=checkpoint_dir,
                           max_seconds=None if max_seconds is None else max(
                               1e-3, max_seconds - (start - begin)))
        report["adaround"] = {"seconds": time.perf_counter() - start,
                              "layers": current.adaround}
    if "correct_bias" in steps:
        start = time.perf_counter()
        current = correct_bias(current, x, bits=bits, reference=reference,
                               activation_bits=activation_bits, samples=samples, block=block)
        report["correct_bias"] = {"seconds": time.perf_counter() - start,
                                  "layers": current.bias_correction}
    logging.info("recover (%s, %d bits): %s", ", ".join(s for s in STEPS if s in steps), bits,
                 ", ".join(f"{k} {v['seconds']:.1f} s" for k, v in report.items()))
    current.recovery = report
    return current

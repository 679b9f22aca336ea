"""Distillation recipe: digits CNN teacher -> width-0.25 student (15x fewer parameters) -> int8.

    tfcompress compress --config=digits_distill --workdir=workdir/digits_distill

The recipe trains the teacher (or loads ``--config.model.path=teacher.keras``), distills it into
the student (``distill`` section: student model name and width, alpha, temperature, epochs),
also trains the same student from the same initial weights on the labels alone
(``distill.scratch``) so report.md shows teacher, scratch and distilled accuracies and parameter
counts side by side, then converts the distilled student and validates it on LiteRT.
``--config=digits_distill:smoke`` is the one-epoch, few-samples variant the tests run.
"""

from tfcompress.configs import common
from tfcompress.pipeline.recipe import default_config


def get_config(variant: str = ""):
    common.check_variant(variant)
    config = default_config()
    config.train.epochs = 20  # the teacher
    config.stages = ("distill",)
    config.distill.student = "digits_cnn"
    config.distill.width = 0.25
    config.distill.alpha = 0.1
    config.distill.temperature = 4.0
    config.distill.epochs = 30  # short schedules favour the scratch student: see the benchmark
    config.distill.scratch = True
    config.convert.modes = ("float32", "int8")
    if variant == "smoke":
        common.smoke(config)
    return config

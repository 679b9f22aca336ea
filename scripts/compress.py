"""Runs a compression recipe: train or load, compress, convert, validate, report.

    python scripts/compress.py                          # the default digits recipe
    python scripts/compress.py --config=configs/digits.py --workdir=workdir/digits \
        --config.train.epochs=5

Writes baseline.keras, the .tflite files, report.json and report.md into --workdir and prints
the report table. ``--android_dir=DIR`` (and optionally ``--android_mode=int8``) also writes an
Android bundle there. A bad recipe, file or mode ends with one line naming it, exit status 2.
"""

import os

from absl import flags, logging

import _cli
import tfcompress
from tfcompress import report as report_lib

_CONFIG = _cli.define_config("digits.py")
_WORKDIR = flags.DEFINE_string("workdir", "workdir/default", "Where outputs are written.")
_ANDROID_DIR = flags.DEFINE_string(
    "android_dir", None, "Also write an Android bundle (model.tflite, labels.txt, model.json, "
    "README.md with the Kotlin lines) into this folder.")
_ANDROID_MODE = flags.DEFINE_string(
    "android_mode", None, "Conversion mode of the Android bundle (default: the last of "
    "--config.convert.modes).")


def main(argv):
    del argv
    report = tfcompress.run_recipe(_CONFIG.value, _WORKDIR.value, android_dir=_ANDROID_DIR.value,
                                   android_mode=_ANDROID_MODE.value)
    logging.info("outputs in %s", os.path.abspath(_WORKDIR.value))
    print(report_lib.markdown(report))
    print(f"outputs: {os.path.abspath(_WORKDIR.value)}")
    if _ANDROID_DIR.value:
        print(f"android bundle: {report['android']['dir']}")


if __name__ == "__main__":
    _cli.run(main)

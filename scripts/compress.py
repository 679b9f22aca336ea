"""Runs a compression recipe: ``tfcompress compress`` from a checkout (see tfcompress/cli.py).

    python scripts/compress.py                                   # the default job
    python scripts/compress.py --config=digits --workdir=workdir/digits --config.train.epochs=5

Same flags as ``tfcompress compress``: ``--config`` takes a bundled recipe name or a file
(``[:variant]``), ``--workdir``, ``--android_dir``/``--android_mode``. Bad input ends with one
line naming it, exit status 2.
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
os.environ.setdefault("TFCOMPRESS_COMMAND", "1")  # the command's console: native log lines hidden

from tfcompress import cli  # noqa: E402

if __name__ == "__main__":
    cli.main([cli.PROG, "compress", *sys.argv[1:]])

"""What every script shares: its recipe flag, and bad input ending in one line with exit 2."""

import ast
import os
import sys

from absl import app, flags
from ml_collections import config_flags

CONFIGS = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "configs"))
sys.path.insert(0, os.path.dirname(CONFIGS))  # run from a checkout without installing


def fail(message) -> None:
    """Ends the script with one line naming what was wrong (no traceback), exit status 2."""
    text = str(message)
    while text[:1] in "'\"":  # KeyError wraps its message in quotes, sometimes twice
        try:
            text = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            break
    if isinstance(message, (KeyError, AttributeError)):
        text = f"unknown recipe field {text}"
    print("error: " + " ".join(text.split()), file=sys.stderr)
    sys.exit(2)


def define_config(default_file: str):
    """``--config`` (an ml_collections recipe file, default ``configs/<default_file>``)."""
    try:
        return config_flags.DEFINE_config_file(
            "config", os.path.join(CONFIGS, default_file), "Recipe file (configs/*.py).")
    except (KeyError, AttributeError, TypeError, ValueError, OSError) as e:  # bad --config
        fail(e)


def _parse(argv):
    try:
        return flags.FLAGS(argv)
    except (flags.Error, KeyError, AttributeError, TypeError, ValueError, OSError) as e:
        fail(e)


def run(main) -> None:
    """``app.run(main)`` with the one-line errors above; TfcompressError from main included."""
    import tfcompress

    def guarded(argv):
        if len(argv) > 1:
            fail(f"unexpected arguments: {argv[1:]}")
        tfcompress.quiet_tensorflow()
        try:
            main(argv)
        except tfcompress.TfcompressError as e:
            fail(e)
        except OSError as e:  # config_flags reports a missing or broken --config file this way
            fail(" ".join(str(e).split()))

    app.run(guarded, flags_parser=_parse)

#!/usr/bin/env bash
# Installs tfcompress into .venv and runs the default recipe on the bundled digits:
# train the CNN, convert to float32/float16/int8, validate on LiteRT, write workdir/demo.
source "$(dirname "$0")/_env.sh"
python scripts/compress.py --workdir=workdir/demo "$@"

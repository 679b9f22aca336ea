#!/usr/bin/env bash
# Installs tfcompress into .venv and runs the default job on the bundled digits: float32, the
# plain converter's int8 and a pruned + clustered model in int8 and int4, validated on LiteRT,
# with report.md and size_accuracy.png in workdir/demo.
source "$(dirname "$0")/_env.sh"
tfcompress compress --workdir=workdir/demo "$@"

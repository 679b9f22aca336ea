#!/usr/bin/env bash
# Installs tfcompress with its test extra into .venv and runs the whole test suite
# (slow end-to-end tests included; pass -m "not slow" to skip them).
source "$(dirname "$0")/_env.sh" test
python -m pytest -n 2 --durations=15 "$@"

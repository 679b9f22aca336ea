#!/usr/bin/env bash
# Installs tfcompress with its test and postgres extras into .venv and runs the whole test
# suite (slow end-to-end tests included, among them a search on a real PostgreSQL server;
# pass -m "not slow" to skip them).
source "$(dirname "$0")/_env.sh" test,postgres
python -m pytest -n 2 --durations=15 "$@"

# Sourced by demo.sh and test.sh: makes .venv (Python 3.10-3.13) and installs the project
# into it, once per version of setup.cfg/setup.py and the extras asked for ($1).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
extras="${1:-}"
if [ ! -x .venv/bin/python ]; then
  py="${PYTHON:-$(command -v python3.11 || command -v python3)}"
  "$py" -m venv .venv
fi
stamp=".venv/.tfcompress-$(cat setup.cfg setup.py | sha256sum | cut -c1-12)${extras:+-$extras}"
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e ".${extras:+[$extras]}"
  touch "$stamp"
fi
export PATH="$PWD/.venv/bin:$PATH"

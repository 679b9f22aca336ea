"""Searches compression recipes under an accuracy budget: ``tfcompress search`` from a checkout.

    python scripts/search.py --config=digits_search --workdir=workdir/digits_search
    python scripts/search.py --config=digits_search --workdir=workdir/digits_search \
        --config.n_trials=60 --config.timeout=1800 --config.objective=latency

Rerunning the same command resumes the study (SQLite file study.db in --workdir). Several
processes or machines share one study through ``--config.storage`` (any Optuna database URL,
e.g. ``postgresql://user:pass@host/db`` with ``pip install tfcompress[postgres]``, or
``mysql+pymysql://user:pass@host/db``) with the same ``--config.study_name``; a process whose
share is done stays until the trials running elsewhere end, and retries those whose process
died. Writes report.md (with pareto.png), trials.jsonl, front/trial_N.py
(runnable with scripts/compress.py) and best/model.tflite. A progress line with the current
best is logged after every trial. A bad config ends with one line naming it, exit status 2.
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
os.environ.setdefault("TFCOMPRESS_COMMAND", "1")  # the command's console: native log lines hidden

from tfcompress import cli  # noqa: E402

if __name__ == "__main__":
    cli.main([cli.PROG, "search", *sys.argv[1:]])

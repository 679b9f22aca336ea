"""Searches compression recipes under an accuracy budget (tfcompress.search, over Optuna).

    python scripts/search.py --config=configs/digits_search.py --workdir=workdir/digits_search
    python scripts/search.py --config=configs/digits_search.py --workdir=workdir/digits_search \
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

from absl import flags, logging

import _cli
import tfcompress

_CONFIG = _cli.define_config("digits_search.py")
_WORKDIR = flags.DEFINE_string("workdir", "workdir/search", "Where the study and outputs live.")


def main(argv):
    del argv
    logging.set_verbosity(logging.INFO)
    summary = tfcompress.search(_CONFIG.value, _WORKDIR.value)
    with open(os.path.join(_WORKDIR.value, "report.md")) as f:
        print(f.read())
    best = summary["best"]
    if best:
        print(f"best within budget: {best['model']} (recipe {best['config_file']})")
    print(f"outputs: {os.path.abspath(_WORKDIR.value)}")


if __name__ == "__main__":
    _cli.run(main)

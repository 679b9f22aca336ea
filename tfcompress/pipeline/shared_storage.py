"""A study shared by processes and machines: storage URLs, dead workers' trials, staying on.

Used by ``tfcompress.search``; nothing here knows of recipes. Optuna's RDB storage does the
sharing (``RDBStorage`` with heartbeats and ``RetryHeartbeatStaleTrialCallback``); we add:

- ``storage_url``: a plain ``postgresql://`` URL works with psycopg 3 (``pip install
  tfcompress[postgres]``), not only with psycopg2, SQLAlchemy's default driver.
- ``fail_stale``: Optuna's ``fail_stale_trials``, plus the trials of a process killed between
  taking a trial and its first heartbeat, which Optuna would leave RUNNING for ever.
- ``run_share``: a process whose share of ``n_trials`` is done stays while trials run
  elsewhere and runs the retries of those whose process died, so the last process standing
  leaves no candidate behind.
"""

import datetime
import importlib.util
import time
import warnings
from typing import Callable, Optional, Sequence

from tfcompress import errors
import tfcompress._compat.optuna as _optuna  # Optuna internals; imports nothing of Optuna itself


def storage_url(url: str) -> str:
    """``url`` with a driver SQLAlchemy can load: plain ``postgresql://`` (or ``postgres://``)
    names psycopg 3 (``postgresql+psycopg://``) when psycopg2, SQLAlchemy's default, is absent.

    Raises:
        ConfigError: a PostgreSQL URL and neither driver installed.
    """
    scheme, sep, rest = url.partition("://")
    if scheme not in ("postgresql", "postgres") or not sep:
        return url
    if importlib.util.find_spec("psycopg2") is not None:
        return "postgresql://" + rest
    if importlib.util.find_spec("psycopg") is None:
        raise errors.ConfigError(
            f"storage {scheme}://... needs a PostgreSQL driver; accepted: "
            "`pip install tfcompress[postgres]` (psycopg 3) or psycopg2")
    return "postgresql+psycopg://" + rest


def fail_stale(study, storage, grace: float) -> None:
    """Fails trials whose process died and queues them again (Optuna's ``fail_stale_trials``).

    A process killed between taking a trial and its heartbeat thread's first beat leaves a
    RUNNING trial without a heartbeat, which Optuna never calls stale. Such a trial started
    more than ``grace`` seconds ago (on the clock of the machine that took it) gets one
    heartbeat here: if its process is alive it goes on beating, otherwise it is failed and
    queued again one grace period later, like any other.
    """
    import optuna  # loaded when a search runs, not on import
    with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna since 2.8
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    now = datetime.datetime.now()
    old = [t for t in running if t.datetime_start and
           (now - t.datetime_start).total_seconds() > grace]
    if not old:
        return
    beating = _optuna.beating_trial_ids(storage)
    for trial in old:
        if _optuna.trial_id(trial) not in beating:
            storage.record_heartbeat(_optuna.trial_id(trial))


def run_share(study, storage, objective: Callable, *, n_trials: int, counted: Callable[[], int],
              callbacks: Sequence[Callable] = (), timeout: Optional[float] = None,
              heartbeat_interval: float = 30, catch: tuple = ()) -> None:
    """Runs trials until ``counted()`` reaches ``n_trials``, then stays while trials run
    elsewhere (a callback stops the study at ``n_trials``).

    A trial whose process died stays RUNNING (and counted) until its heartbeat is older than
    the grace period (2 x ``heartbeat_interval``); then it is failed, queued again and run
    here. Returns when no trial is running, or after ``timeout`` seconds (0/None: no limit).
    """
    import optuna  # loaded when a search runs, not on import

    deadline = time.time() + timeout if timeout else None
    running = (optuna.trial.TrialState.RUNNING,)
    while True:
        remaining = n_trials - counted()
        left = None if deadline is None else deadline - time.time()
        if remaining > 0 and (left is None or left > 0):
            study.optimize(objective, n_trials=3 * remaining + 10, timeout=left,
                           callbacks=list(callbacks), catch=catch)
        if (deadline is not None and time.time() >= deadline) or not study.get_trials(
                deepcopy=False, states=running):
            return
        time.sleep(heartbeat_interval)
        fail_stale(study, storage, 2 * heartbeat_interval)

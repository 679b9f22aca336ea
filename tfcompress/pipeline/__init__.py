"""Orchestration: the recipe runner and its stage table, the automatic search (Optuna) and its
shared storage, preflight checks, statistics and the report writer. Nothing here compresses; it
chains the techniques of ``training``, ``surgery``, ``ptq`` and ``export``."""

from tfcompress.pipeline import config_files, stats, preflight, results, workdir  # noqa: F401
from tfcompress.pipeline import report, stages, recipe  # noqa: F401
from tfcompress.pipeline import shared_storage, search  # noqa: F401

"""Checks that run before any training: recipe values in range, the workdir, a recipe file, the
study storage.

Everything that can be known wrong before the first epoch is refused then, with one line naming
the value and what is accepted: a run must not train a baseline for minutes and then fail on a
URL. The recipe runner (``recipe.check_config``/``run_recipe``) and the search
(``study.search``) call these; they import nothing above the bottom layer.
"""

import os
import tempfile

from ml_collections import ConfigDict

from tfcompress import errors

# section -> {field: (lowest accepted, whether the lowest is included)}
_RANGES = {
    "train": {"batch_size": (1, True), "learning_rate": (0, False), "epochs": (0, True)},
    "data": {"limit": (0, True)},
    "model": {"width": (0, False)},
    "convert": {"representative_samples": (1, True), "size_budget": (0, True),
                "mixed_max_layers": (0, True)},
    "validate": {"latency_runs": (0, True), "num_threads": (1, True)},
}
# in every stage section
_STAGE_RANGES = {"epochs": (0, True), "learning_rate": (0, True)}


def _check_range(name: str, value, low, inclusive: bool) -> None:
    ok = value >= low if inclusive else value > low
    if not ok:
        raise errors.ConfigError(
            f"{name}={value!r}; accepted: a number {'>=' if inclusive else '>'} {low}")


def check_values(config: ConfigDict, stage_names=()) -> None:
    """Raises ConfigError for a recipe value out of its range (after the type checks).

    ``train.epochs`` must be >= 1 where the recipe trains its reference model (no
    ``model.path``); stage ``epochs`` may be 0 (no fine-tune). ``convert.modes`` must name at
    least one mode.
    """
    for section, fields in _RANGES.items():
        for field, (low, inclusive) in fields.items():
            _check_range(f"{section}.{field}", config[section][field], low, inclusive)
    if not config.model.path and config.train.epochs < 1:
        raise errors.ConfigError(
            f"train.epochs={config.train.epochs!r}; accepted: >= 1 (the reference model "
            f"{config.model.name!r} is trained here; 0 only with model.path)")
    for name in stage_names:
        for field, (low, inclusive) in _STAGE_RANGES.items():
            if field in config[name]:
                _check_range(f"{name}.{field}", config[name][field], low, inclusive)
    if not config.convert.modes:
        raise errors.ConfigError("convert.modes is empty; accepted: one or more modes, e.g. "
                                 "('float32', 'int8')")
    if not 0.0 < float(config.data.validation_fraction) < 1.0:
        raise errors.ConfigError(f"data.validation_fraction={config.data.validation_fraction!r};"
                                 " accepted: a number in (0, 1)")


def check_workdir(workdir: str) -> str:
    """Creates ``workdir`` if needed and checks a file can be written there; returns it."""
    workdir = os.fspath(workdir)
    try:
        os.makedirs(workdir, exist_ok=True)
        with tempfile.TemporaryFile(dir=workdir):
            pass
    except OSError as e:
        raise errors.ConfigError(
            f"workdir {workdir!r} is not a writable folder ({e.strerror or e}); accepted: a "
            "folder this process may create and write") from e
    return workdir


def check_storage(url: str, timeout: float = 10.0) -> None:
    """Checks an Optuna storage URL before anything trains: parsed, its driver importable, the
    database reachable (within ``timeout`` seconds). The password never appears in a message.

    Raises:
        ConfigError: a malformed URL, a missing driver (named, with the package to install),
            or a server that does not answer.
    """
    import sqlalchemy
    from sqlalchemy import exc

    try:
        parsed = sqlalchemy.engine.make_url(url)
    except (exc.ArgumentError, ValueError) as e:
        raise errors.ConfigError(
            f"storage URL {url.split('@')[-1]!r} is malformed ({e}); accepted: "
            "dialect+driver://user:password@host/db, e.g. sqlite:///study.db") from e
    shown = parsed.render_as_string(hide_password=True)
    kwargs = {}
    if parsed.get_backend_name() == "sqlite":
        kwargs["connect_args"] = {"timeout": timeout}
    elif parsed.get_backend_name() in ("postgresql", "mysql", "mariadb"):
        kwargs["connect_args"] = {"connect_timeout": int(max(1, timeout))}
    try:
        engine = sqlalchemy.create_engine(parsed, **kwargs)
    except exc.NoSuchModuleError as e:
        raise errors.ConfigError(
            f"storage URL {shown!r} names an unknown database dialect ({e}); accepted: sqlite, "
            "postgresql, mysql") from e
    except ImportError as e:
        raise errors.ConfigError(
            f"storage URL {shown!r} needs the database driver {e.name or e!s} which is not "
            f"installed; accepted: install it (e.g. pip install {e.name or 'the driver'}) or "
            "name an installed driver in the URL (postgresql+psycopg://...)") from e
    try:
        with engine.connect():
            pass
    except exc.SQLAlchemyError as e:
        first = " ".join(str(getattr(e, "orig", None) or e).split())[:300]
        raise errors.ConfigError(f"storage {shown!r} cannot be reached: {first}") from e
    finally:
        engine.dispose()

"""The config-file loader: a recipe spec ``name_or_path[:variant]`` -> its file, module and
``get_config(variant)``. The bundled recipes live in ``tfcompress/configs/`` (recipes only);
``tfcompress.configs.load`` and ``names`` are these functions."""


import importlib.util
import os
from typing import Optional

from tfcompress import errors

HERE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")  # tfcompress/configs: the bundled recipe files
DEFAULT = "default"  # the default job (``tfcompress compress`` without --config)


def names() -> tuple:
    """The bundled config names (file names without ``.py``; ``common`` is not a config)."""
    return tuple(sorted(f[:-3] for f in os.listdir(HERE) if f.endswith(".py")
                        and not f.startswith("_") and f != "common.py"))


def path(spec: str) -> str:
    """The file behind a config spec ``name_or_path[:variant]``, with the variant kept.

    A bundled name (``digits_pcqat``) becomes its file here; an existing path stays as it is.

    Raises:
        ConfigError: neither a bundled name nor an existing file (the message lists the names).
    """
    where, sep, variant = spec.partition(":")
    if os.path.isfile(where):
        return spec
    name = where[:-3] if where.endswith(".py") and os.sep not in where else where
    if name in names():
        return os.path.join(HERE, name + ".py") + sep + variant
    raise errors.ConfigError(
        f"config {where!r} is neither a bundled recipe nor an existing file; accepted: "
        + ", ".join(names()) + " or a path to a .py config file")


def module(spec: str):
    """The config module of a spec (its variant ignored), loaded from its file."""
    file = path(spec).partition(":")[0]
    spec_ = importlib.util.spec_from_file_location(
        os.path.splitext(os.path.basename(file))[0], file)
    loaded = importlib.util.module_from_spec(spec_)
    spec_.loader.exec_module(loaded)
    return loaded


def load(spec: str, variant: Optional[str] = None):
    """``get_config(variant)`` of a config spec ``name_or_path[:variant]``.

    Raises:
        ConfigError: an unknown name, file or variant.
    """
    _, _, spec_variant = spec.partition(":")
    return module(spec).get_config(spec_variant if variant is None else variant)

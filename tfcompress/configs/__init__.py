"""The bundled recipes: ml_collections config files, each with ``get_config(variant)``.

Reach one by name (``tfcompress compress --config=digits_pcqat:smoke``) or by path
(``--config=path/to/file.py:smoke``); from Python, ``tfcompress.configs.load("digits_pcqat")``.
Each file's docstring holds the exact command that runs it; ``common`` holds what they share.
"""

from tfcompress.pipeline.config_files import DEFAULT, HERE, load, module, names, path  # noqa: F401

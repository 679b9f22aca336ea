"""Atomic file output: write to a temporary name in the same folder, then rename.

A process killed while writing leaves its temporary file (``.<name>.<random>.tmp<suffix>``)
behind; ``remove_stale`` deletes those that are older than the current process, and
``atomic_path`` does so for the name it writes, so a rerun cleans up after a killed run.
"""

import contextlib
import os
import re
import shutil
import tempfile
import time
from typing import Iterator, Optional

# When this process started (close enough: when this module was first imported). A temporary
# file older than that was left by another, finished or killed, process.
PROCESS_START = time.time()
# mkstemp's names: prefix ".<base>.", 8 characters of [a-z0-9_], suffix ".tmp" + the base's suffix
_TMP = re.compile(r"^\.(?P<base>.+)\.[a-z0-9_]{8}\.tmp(\..*)?$")


def is_temporary(name: str) -> bool:
    """Whether ``name`` (a base name) is one of ``atomic_path``'s temporary names."""
    return bool(_TMP.match(name))


def remove_stale(folder: str, *, before: Optional[float] = None, recursive: bool = True,
                 base: Optional[str] = None) -> list:
    """Removes ``atomic_path`` temporaries in ``folder`` last modified before ``before``
    (default: this process' start), files or folders (a SavedModel is a folder).

    Args:
        folder: where to look (a missing folder has nothing to remove).
        before: a ``time.time()`` value; newer temporaries are left (another live process may
            be writing them).
        recursive: also look in sub-folders.
        base: only the temporaries of this file name.

    Returns:
        The paths removed.
    """
    cutoff = PROCESS_START if before is None else before
    removed = []
    if not os.path.isdir(folder):
        return removed
    for root, dirs, files in os.walk(folder):
        for name in list(files) + list(dirs):
            match = _TMP.match(name)
            if not match or (base is not None and match.group("base") != base):
                continue
            path = os.path.join(root, name)
            try:
                if os.lstat(path).st_mtime >= cutoff:
                    continue
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path)
                    dirs.remove(name)
                else:
                    os.remove(path)
            except FileNotFoundError:  # another process removed it first
                continue
            removed.append(path)
        if not recursive:
            break
    return removed


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """Yields a temporary path beside ``path`` (same suffix); renames it to ``path`` on success.

    On any exception the temporary file is removed and ``path`` is left as it was; the stale
    temporaries of ``path`` a killed process left are removed first.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    base = os.path.basename(path)
    remove_stale(folder, recursive=False, base=base)
    suffix = "." + base.split(".", 1)[1] if "." in base else ""
    fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=".tmp" + suffix, dir=folder)
    os.close(fd)
    os.remove(tmp)  # writers such as Keras' save() want to create the file themselves
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.isdir(tmp) and not os.path.islink(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
        elif os.path.lexists(tmp):
            os.remove(tmp)


def write_bytes(path: str, data: bytes) -> str:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
    return path


def write_text(path: str, text: str) -> str:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    return path

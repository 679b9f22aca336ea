"""Helpers for the tests that run several search processes on one study (not fixtures).

The processes are ``scripts/search.py`` children whose output goes to a file (a pipe nobody
reads while the test polls would fill and block them). To make two processes overlap for sure,
a test holds a workdir's ``.study.lock`` (the lock ``tfcompress.search`` takes to create and
seed the study) until the processes wait on it, as ``/proc/locks`` shows.
"""

import contextlib
import fcntl
import os
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOST = socket.gethostname()


def start(config_file: str, workdir: str, log: str, *flags: str) -> subprocess.Popen:
    """``scripts/search.py`` on ``config_file`` in ``workdir``, output to the file ``log``."""
    with open(log, "w") as out:
        return subprocess.Popen(
            [sys.executable, os.path.join(ROOT, "scripts", "search.py"),
             f"--config={config_file}", f"--workdir={workdir}", *flags],
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def worker(proc: subprocess.Popen) -> str:
    """The ``worker`` user attribute the search records for ``proc``'s trials."""
    return f"{HOST}:{proc.pid}"


def tail(log: str, chars: int = 3000) -> str:
    with open(log) as f:
        return f.read()[-chars:]


@contextlib.contextmanager
def hold_lock(path: str):
    """Holds the flock on ``path`` (created if missing) for the block."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def waiting_on(path: str) -> int:
    """How many processes are blocked on the flock of ``path`` now (from /proc/locks)."""
    inode = f":{os.stat(path).st_ino} "
    with open("/proc/locks") as f:
        return sum(" -> " in line and inode in line for line in f)


def wait_until(predicate, procs, logs, timeout: float, what: str) -> None:
    """Polls ``predicate()`` until true; fails if a process ends or ``timeout`` passes."""
    deadline = time.time() + timeout
    while not predicate():
        for proc, log in zip(procs, logs):
            assert proc.poll() is None, f"a search ended before {what}:\n{tail(log)}"
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)

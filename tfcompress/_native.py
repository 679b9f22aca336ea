"""Keeps native libraries' log lines out of the console of the ``tfcompress`` command.

TensorFlow 2.21 logs through absl's C++ logging before ``absl::InitializeLog`` (which ignores
``TF_CPP_MIN_LOG_LEVEL``: the oneDNN note, the CUDA stub lines, the cuInit error), the LiteRT
interpreter prints "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." and the converter's
quantizer prints "fully_quantize: 0, inference_type: 6, ...": all straight to file descriptors
1 and 2, where Python's logging cannot filter them. ``install`` points fd 1 and 2 at pipes whose
reader threads drop those lines (``NATIVE_LINE``) and forward everything else, for the process
and the children it starts (the crash-safe LiteRT child included).

Only the command does this: ``tfcompress/__init__.py`` calls ``install_for_command`` first,
which acts when the process is the ``tfcompress`` console script (or a script that sets
``TFCOMPRESS_COMMAND=1``) and ``--verbosity`` is below 1. Importing tfcompress as a library
changes nothing. Standard library only: this runs before TensorFlow is imported.
"""

import atexit
import os
import re
import sys
import threading
import time

# absl/glog INFO and WARNING lines of C++ files (not absl's Python lines: those name .py files),
# the CUDA probe's error on machines without a GPU, LiteRT's and the converter's prints.
NATIVE_LINE = re.compile(
    rb"^(WARNING: All log messages before absl::InitializeLog\(\) is called"
    rb"|[IW]\d{4} [\d:.]+\s+\d+ [\w.+-]+\.(?:cc|cpp|c|h):\d+\]"
    rb"|E\d{4} [\d:.]+\s+\d+ cuda\w*\.cc:\d+\]"
    rb"|INFO: (?:Created TensorFlow Lite|Initialized TensorFlow Lite)"
    rb"|fully_quantize: \d"
    rb"|.*TF-TRT Warning"
    rb"|.*This TensorFlow binary is optimized to use available CPU instructions"
    rb"|To enable the following instructions:)")
COMMAND_NAMES = ("tfcompress", "tfcompress.exe")
_INSTALLED: list = []


class LineFilter:
    """Drops the lines matching ``pattern`` written to file descriptor ``fd`` (1 or 2) while
    active: the descriptor points at a pipe that a thread reads and forwards, line by line, to
    the original target. ``dropped`` counts the lines left out."""

    def __init__(self, fd: int, pattern: re.Pattern = NATIVE_LINE):
        self.fd, self.pattern = fd, pattern
        self.dropped = 0
        self._broken = False  # the target was closed (e.g. `| head`): keep draining, drop all
        self._saved = self._read = None
        self._done = threading.Event()

    def __enter__(self) -> "LineFilter":
        _flush()
        self._saved = os.dup(self.fd)
        self._read, write = os.pipe()
        os.dup2(write, self.fd)
        os.close(write)
        threading.Thread(target=self._pump, daemon=True).start()
        return self

    def _keep(self, line: bytes) -> bool:
        if self.pattern.match(line):
            self.dropped += 1
            return False
        return True

    def _write(self, data: bytes) -> None:
        try:
            while data and not self._broken:
                data = data[os.write(self._saved, data):]
        except OSError:  # a closed pipe must not stop the draining, or writers would block
            self._broken = True

    def _pump(self) -> None:
        pending = b""
        while True:
            try:
                chunk = os.read(self._read, 65536)
            except OSError:
                break
            if not chunk:
                break
            *lines, pending = (pending + chunk).split(b"\n")
            out = b"".join(line + b"\n" for line in lines if self._keep(line))
            if b"\r" in pending or len(pending) > 65536:  # progress bars, huge lines
                out, pending = out + pending, b""
            if out:
                self._write(out)
        if pending and self._keep(pending):
            self._write(pending)
        self._done.set()

    def __exit__(self, *exc) -> bool:
        _flush()
        os.dup2(self._saved, self.fd)  # our end of the pipe closes; children may hold theirs
        deadline = time.monotonic() + 2.0
        while not self._done.is_set() and time.monotonic() < deadline:
            if not self._done.wait(0.02) and not _unread(self._read):
                time.sleep(0.02)  # what the thread took last is forwarded
                break
        os.close(self._saved)
        return False


def _unread(fd: int) -> int:
    """Bytes waiting in a pipe (0 where that cannot be asked)."""
    try:
        import fcntl
        import termios

        buf = bytearray(4)
        fcntl.ioctl(fd, termios.FIONREAD, buf)
        return int.from_bytes(buf, sys.byteorder)
    except (ImportError, OSError):
        return 0


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass


def verbosity(argv) -> int:
    """The ``--verbosity``/``-v`` asked for in ``argv`` (0 when absent), read before absl parses
    anything: native libraries log while they load."""
    level = 0
    for i, arg in enumerate(argv):
        for name in ("--verbosity", "-v", "--v"):
            value = None
            if arg.startswith(name + "="):
                value = arg.split("=", 1)[1]
            elif arg == name and i + 1 < len(argv):
                value = argv[i + 1]
            if value is not None:
                try:
                    level = int(value)
                except ValueError:
                    pass
    return level


def install() -> list:
    """Filters fd 2 and fd 1 until the process exits (idempotent); returns the filters."""
    if not _INSTALLED:
        os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
        for fd in (2, 1):
            _INSTALLED.append(LineFilter(fd).__enter__())
        atexit.register(uninstall)
    return list(_INSTALLED)


def uninstall() -> None:
    """Restores fd 1 and 2 (at exit, after what is still in the pipes is forwarded)."""
    while _INSTALLED:
        _INSTALLED.pop().__exit__(None, None, None)


def is_command(argv=None) -> bool:
    """Whether this process runs as the ``tfcompress`` command."""
    argv = sys.argv if argv is None else argv
    name = os.path.basename(argv[0]) if argv and argv[0] else ""
    return (name in COMMAND_NAMES or os.environ.get("TFCOMPRESS_COMMAND") == "1"
            or _run_as_module(argv))


def _run_as_module(argv) -> bool:
    """``python -m tfcompress ...``: while the package is imported, ``sys.argv[0]`` is "-m"
    (then __main__.py's path); the interpreter's own arguments name the module."""
    if not argv or argv[0] != "-m" and not argv[0].endswith(os.path.join("tfcompress",
                                                                           "__main__.py")):
        return False
    orig = list(getattr(sys, "orig_argv", []))
    return any(a == "-m" and b == "tfcompress" for a, b in zip(orig, orig[1:])) or \
        any(a == "-mtfcompress" for a in orig)


def install_for_command() -> None:
    """``install`` when running as the command below ``--verbosity=1``; else, with
    ``--verbosity`` >= 1, lets TensorFlow's own C++ logging through as well."""
    if not is_command():
        return
    if verbosity(sys.argv[1:]) >= 1:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0")
        return
    install()

"""What the ``tfcompress`` command shows people: one line per step, a progress bar for long ones.

The library prints nothing through this module unless a caller turns it on: the command (and
``scripts/``) call ``enable()``; a user's own script may too. While it is off, ``current()`` is
a silent console and the library behaves as it always did (Keras epoch lines, absl logging).

    console.enable()                       # the command, at --verbosity=0
    out = console.current()
    out.line("prune      80% of conv2, dense zeroed   validation accuracy 0.9861")
    with out.progress("fine-tune", total=10, unit="epoch") as bar:
        for _ in range(10):
            ...
            bar.update(note="val_accuracy 0.98")

A bar is one line redrawn in place with ``\\r`` (at most every ``REDRAW_S`` seconds), showing
done/total, the elapsed time and the time left at the pace so far; ``line()`` clears it first,
and a finished bar is erased (the step's own line says what it did). No absl, no Keras here.
"""

import contextlib
import io
import logging
import re
import sys
import time
from typing import Optional, TextIO

REDRAW_S = 0.2
WIDTH = 20  # characters of the bar itself


def _clock(seconds: float) -> str:
    """``seconds`` as ``12s``, ``3m05s`` or ``1h02m``."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Progress:
    """One progress bar (use ``Console.progress``): ``update`` after each unit of work."""

    def __init__(self, console: "Console", label: str, total: int, unit: str = ""):
        self.console, self.label, self.total, self.unit = console, label, max(int(total), 1), unit
        self.done, self.note = 0, ""
        self.started = time.monotonic()
        self._drawn = 0.0
        self.draw(force=True)

    def text(self) -> str:
        """The bar as it is drawn now, e.g. ``fine-tune [#####-----] 5/10 epochs 4s, 4s left``."""
        filled = int(WIDTH * self.done / self.total)
        elapsed = time.monotonic() - self.started
        left = (f", {_clock(elapsed / self.done * (self.total - self.done))} left"
                if 0 < self.done < self.total else "")
        unit = f" {self.unit}{'s' if self.unit and self.total > 1 else ''}" if self.unit else ""
        note = f"  {self.note}" if self.note else ""
        return (f"  {self.label} [{'#' * filled}{'-' * (WIDTH - filled)}] {self.done}/"
                f"{self.total}{unit} {_clock(elapsed)}{left}{note}")

    def update(self, n: int = 1, note: Optional[str] = None) -> None:
        """Counts ``n`` more units done (``note``: a short figure shown after the bar)."""
        self.done = min(self.done + n, self.total)
        if note is not None:
            self.note = note
        self.draw(force=self.done >= self.total)

    def draw(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._drawn >= REDRAW_S:
            self._drawn = now
            self.console.draw_bar(self.text())

    def close(self) -> None:
        """Erases the bar (what the step did is the next ``line``)."""
        self.console.clear_bar()
        if self.console.active is self:
            self.console.active = None

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False


class _Silent(Progress):
    """A bar that draws nothing (the console is off)."""

    def draw(self, force: bool = False) -> None:
        pass


class Console:
    """Lines and progress bars for people, written to ``stream`` (stdout by default).

    Args:
        stream: where lines go (``sys.stdout`` when None, read at each write).
        enabled: False: a silent console (``line`` and bars print nothing).
        verbose: the caller asked for everything (``--verbosity=1``): libraries keep their
            own per-epoch lines and log prefixes; this console still prints its lines.
    """

    def __init__(self, stream: Optional[TextIO] = None, enabled: bool = True,
                 verbose: bool = False):
        self.stream, self.enabled, self.verbose = stream, enabled, verbose
        self.active: Optional[Progress] = None
        self._width = 0  # characters of the bar drawn last (to erase it)

    @property
    def for_people(self) -> bool:
        """On and not verbose: libraries' own console lines (Keras epochs) should be quiet."""
        return self.enabled and not self.verbose

    def _out(self) -> TextIO:
        return self.stream or sys.stdout

    def _write(self, text: str) -> None:
        out = self._out()
        out.write(text)
        out.flush()

    def draw_bar(self, text: str) -> None:
        if not self.enabled:
            return
        pad = max(self._width - len(text), 0)
        self._write("\r" + text + " " * pad)
        self._width = len(text)

    def clear_bar(self) -> None:
        if self.enabled and self._width:
            self._write("\r" + " " * self._width + "\r")
        self._width = 0

    def line(self, text: str) -> None:
        """Writes one line (erasing a bar being drawn; it is redrawn below by its next update)."""
        if not self.enabled:
            return
        self.clear_bar()
        self._write(text + "\n")

    def warning(self, text: str) -> None:
        """A warning as a plain sentence: ``warning: <text>``."""
        self.line("warning: " + " ".join(str(text).split()))

    def progress(self, label: str, total: int, unit: str = "") -> Progress:
        """A progress bar of ``total`` units (``unit``: e.g. "epoch", "layer", "trial"); drawn
        only for people (a verbose console's log lines would cut through it)."""
        bar = (Progress if self.for_people else _Silent)(self, label, total, unit)
        self.active = bar
        return bar


_CURRENT = [Console(enabled=False)]


def current() -> Console:
    """The console in use: silent unless ``enable`` was called (the command calls it)."""
    return _CURRENT[0]


def enable(verbose: bool = False, stream: Optional[TextIO] = None) -> Console:
    """Turns the console on for this process (``verbose``: ``--verbosity`` >= 1); returns it."""
    _CURRENT[0] = Console(stream=stream, enabled=True, verbose=verbose)
    return _CURRENT[0]


@contextlib.contextmanager
def muted():
    """Inside, the console writes nothing but stays "for people" (so Keras stays quiet too):
    a search runs whole recipes per trial and shows one line per trial instead."""
    before = _CURRENT[0]
    _CURRENT[0] = Console(stream=io.StringIO(), enabled=before.enabled, verbose=before.verbose)
    try:
        yield
    finally:
        _CURRENT[0] = before


def disable() -> None:
    """Back to the silent console (tests)."""
    _CURRENT[0] = Console(enabled=False)


_PY_WARNING = re.compile(r"^[^\n]*?:\d+: (\w+): ([^\n]*)")


def _plain(value):
    """A ``{name: reason}`` argument as words: ``conv1, logits (first or last layer kept
    dense)``; anything else as it is."""
    if isinstance(value, dict) and value and all(isinstance(v, str) for v in value.values()):
        by_reason: dict = {}
        for name, reason in value.items():
            by_reason.setdefault(reason, []).append(str(name))
        return "; ".join(f"{', '.join(names)} ({reason})" for reason, names in by_reason.items())
    return value


class LogHandler(logging.Handler):
    """Python logging's warnings and errors as plain sentences on a console (``warning: ...``),
    without absl's ``W1206 07:03:50.445314 140543365270400 wrappers.py:83]`` prefix; records
    below WARNING are dropped (the console's own lines say what happens)."""

    def __init__(self, out: Optional[Console] = None):
        super().__init__(level=logging.WARNING)
        self.out = out

    def emit(self, record: logging.LogRecord) -> None:
        try:
            args = record.args
            if isinstance(args, tuple):
                args = tuple(_plain(a) for a in args)
            text = str(record.msg) % args if args else str(record.msg)
        except (TypeError, ValueError):  # a library's bad format string: show it as it is
            text = str(record.msg)
        if record.name == "py.warnings":  # "path.py:12: UserWarning: text\n  source line"
            found = _PY_WARNING.match(text)
            if found:
                text = f"{found.group(2)} ({found.group(1)} from {found.group(0).split(':')[0]})"
        out = self.out or current()
        if record.levelno >= logging.ERROR:
            out.line("error: " + " ".join(text.split()))
        else:
            out.warning(text)

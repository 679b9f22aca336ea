"""The console for people (issue 29): one line per step, progress bars, plain warnings, row
labels that say what made them, plot labels that do not overlap, a default job on one screen."""

import io
import json
import logging
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import tfcompress
from tfcompress import console, progress
import tfcompress.pipeline.report as report

import recipe_reports

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ABSL_PREFIX = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ \S+\.py:\d+\]")


def _screen(text: str) -> list:
    """The lines a terminal shows: each ``\\r`` redraw replaced by what was drawn last."""
    return [line.split("\r")[-1].rstrip() for line in text.split("\n")]


def test_progress_bar_redraws_one_line_and_is_erased():
    buf = io.StringIO()
    out = console.Console(stream=buf)
    with out.progress("adaround", 4, unit="layer") as bar:
        for i in range(4):
            bar.update(note=f"conv{i}")
            text = bar.text()
    out.line("[1/1] adaround: done")
    assert "4/4 layers" in text and "[" + "#" * console.WIDTH + "]" in text
    assert buf.getvalue().count("\n") == 1  # the bar never took a line of its own
    assert _screen(buf.getvalue()) == ["[1/1] adaround: done", ""]


def test_time_left_follows_the_pace():
    bar = console.Console(stream=io.StringIO()).progress("fit", 10, unit="epoch")
    bar.started -= 20.0  # 2 of 10 epochs took 20 s: 80 s are left
    bar.update(2)
    assert re.search(r"2/10 epochs 20s, 1m20s left", bar.text()), bar.text()


def test_silent_console_writes_nothing(capsys):
    out = console.Console(enabled=False)
    out.line("x")
    with out.progress("y", 3) as bar:
        bar.update(3)
    assert capsys.readouterr().out == ""


def test_keras_fit_draws_one_bar_line_with_the_validation_figure():
    buf = io.StringIO()
    out = console.Console(stream=buf)
    model = tfcompress.keras.Sequential([tfcompress.keras.Input((4,)),
                                         tfcompress.keras.layers.Dense(2, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    x, y = np.random.rand(64, 4).astype("float32"), np.arange(64) % 2
    drawn = []
    cb = progress.ProgressBar("prune: fine-tune", out=out)
    orig = out.draw_bar
    out.draw_bar = lambda text: (drawn.append(text), orig(text))
    model.fit(x, y, epochs=3, validation_data=(x, y), verbose=0, callbacks=[cb])
    assert buf.getvalue().count("\n") == 0 and _screen(buf.getvalue()) == [""]
    assert any("3/3 epochs" in t and "val_accuracy 0." in t for t in drawn), drawn


def test_warnings_are_plain_sentences():
    buf = io.StringIO()
    logger = logging.getLogger("tfcompress_console_test")
    logger.propagate = False
    handler = console.LogHandler(console.Console(stream=buf))
    logger.addHandler(handler)
    try:
        logger.warning("layers not %s: %s", "pruned", {"conv1": "first or last layer kept dense",
                                                        "logits": "first or last layer kept dense",
                                                        "bn": "not selected"})
        logger.info("hidden")
    finally:
        logger.removeHandler(handler)
    assert buf.getvalue() == ("warning: layers not pruned: conv1, logits (first or last layer "
                              "kept dense); bn (not selected)\n")


@pytest.mark.parametrize("fmt, stages, label", [
    ("int8", ("prune", "cluster"), "pruned+clustered int8"),
    ("baseline float32", ("prune", "cluster"), "baseline float32"),
    ("float16", (), "float16"),
    ("dynamic_wi4", ("prune_channels", "qat"), "channel-pruned+QAT dynamic_wi4"),
])
def test_row_labels_say_what_made_them(fmt, stages, label):
    assert report.row_label(fmt, stages) == label


def _boxes_overlap(texts, renderer):
    boxes = [report._text_box(t, renderer) for t in texts]
    return [(a.get_text(), b.get_text()) for i, a in enumerate(texts)
            for b, bb in zip(texts[i + 1:], boxes[i + 1:]) if boxes[i].overlaps(bb)]


def test_plot_labels_do_not_overlap(tmp_path):
    """The default job's five rows sit at one accuracy within a factor 2 of size: the labels
    that used to overlap into "dynamint8 wi4 fl32"."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    rows = [("baseline float32", 560_458), ("baseline int8", 151_387),
            ("pruned+clustered float32", 56_790), ("pruned+clustered int8", 43_989),
            ("pruned+clustered dynamic_wi4", 34_301)]
    fig, ax = plt.subplots(figsize=(7.2, 4.6))
    ax.scatter([s for _, s in rows], [0.9749] * len(rows))
    ax.set_xscale("log")
    ax.margins(x=0.25, y=0.15)
    fig.tight_layout()
    texts = report.place_labels(ax, [(s, 0.9749, name) for name, s in rows])
    renderer = fig.canvas.get_renderer()
    assert sorted(t.get_text() for t in texts) == sorted(name for name, _ in rows)
    assert _boxes_overlap(texts, renderer) == []
    frame = ax.get_window_extent(renderer)
    assert all(frame.contains(*report._text_box(t, renderer).min) for t in texts)
    # The same rows naively at one offset overlap: the check above could fail.
    naive = [ax.annotate(n, (s, 0.9749), textcoords="offset points", xytext=(5, 5), fontsize=8)
             for n, s in rows]
    assert _boxes_overlap(naive, renderer) != []
    plt.close(fig)
    path = report.plot_size_accuracy(
        [{"format": n, "label": n, "gzip_bytes": s, "accuracy": 0.9749} for n, s in rows],
        str(tmp_path / "p.png"))
    assert os.path.getsize(path) > 1000


@pytest.mark.slow
def test_default_job_console_fits_one_screen(tmp_path):
    """``python -m tfcompress compress --config=default:smoke``: at most 40 lines, one per
    stage with its validation accuracy, no Keras epoch line, no absl prefix; the report's rows
    and report.md name what made them; the report passes the checks of every recipe's
    (tests/pipeline/test_configs.py) and keeps the default job's keys."""
    env = {**os.environ, "PYTHONPATH": ROOT}
    env.pop("TFCOMPRESS_COMMAND", None)  # run as `python -m tfcompress`, as the docs say
    result = subprocess.run(
        [sys.executable, "-m", "tfcompress", "compress", "--config=default:smoke",
         "--workdir=out"], capture_output=True, timeout=600, cwd=tmp_path, env=env)
    stdout, stderr = (b.decode() for b in (result.stdout, result.stderr))  # "\r" kept as it is
    assert result.returncode == 0, stderr[-2000:]
    text = stdout + stderr
    lines = [line for line in _screen(text) if line.strip()]
    assert text.count("\n") <= 40, text  # lines as a terminal counts them (a bar redraws)
    assert not any(line.startswith("Epoch ") or ABSL_PREFIX.match(line) for line in lines), text
    stage_lines = [line for line in lines if re.match(r"\[\d/2\] (prune|cluster): ", line)]
    assert len(stage_lines) == 2 and all(re.search(r"validation accuracy 0\.\d{4}", line)
                                         for line in stage_lines), lines
    assert "\r" in stdout  # progress bars were drawn
    assert any(line.startswith("warning: layers not pruned: conv1, logits") for line in lines)
    written = json.load(open(tmp_path / "out" / "report.json"))
    recipe_reports.check(written, tmp_path / "out")
    recipe_reports.check_default_job_keys(written)
    labels = {row["format"]: row["label"] for row in written["formats"]}
    assert labels["int8"] == "pruned+clustered int8"
    assert labels["baseline float32"] == "baseline float32"
    md = open(tmp_path / "out" / "report.md").read()
    assert "| pruned+clustered dynamic_wi4 |" in md and "| baseline int8 |" in md
    assert any(line.startswith("pruned+clustered int8 ") for line in lines)


def test_python_warnings_lose_their_source_line():
    import warnings

    buf = io.StringIO()
    handler = console.LogHandler(console.Console(stream=buf))
    logger = logging.getLogger("py.warnings")
    logger.addHandler(handler)
    logging.captureWarnings(True)
    try:
        warnings.warn_explicit("kernels have no gradients", UserWarning, "/x/optimizer.py", 7)
    finally:
        logging.captureWarnings(False)
        logger.removeHandler(handler)
    assert buf.getvalue() == ("warning: kernels have no gradients (UserWarning from "
                              "/x/optimizer.py)\n")


def test_verbose_console_prints_lines_but_no_bar():
    buf = io.StringIO()
    out = console.Console(stream=buf, verbose=True)
    with out.progress("fit", 3, unit="epoch") as bar:
        bar.update(3)
    out.line("[1/1] prune: done")
    assert buf.getvalue() == "[1/1] prune: done\n" and not out.for_people

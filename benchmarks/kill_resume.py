"""kill -9 at five moments of a recipe, then a rerun: same report figures, no temporary file left.

    python benchmarks/kill_resume.py          # configs/digits_pcqat.py smoke (~15 min on 2 cores)

Runs the recipe once uninterrupted, then, for each moment (training: the baseline's 3rd batch;
saving: right after Keras wrote baseline.keras' temporary file, before its rename; stage: the
cluster stage's 3rd batch; conversion: the start of the int8 conversion; validation: the 3rd
validate call), a run in a fresh workdir that SIGKILLs itself there, and a plain rerun in the same
workdir. Each rerun's report figures (everything but timings) are compared with the
uninterrupted run's; the workdir is searched for ``atomic_path`` temporaries. Writes
benchmarks/results/kill_resume.json.
"""

import json
import os
import signal
import subprocess
import sys
import time

from absl import app, flags

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)

FLAGS = flags.FLAGS
flags.DEFINE_string("config", os.path.join(ROOT, "configs", "digits_pcqat.py"), "Recipe file.")
flags.DEFINE_string("variant", "smoke", "Recipe variant.")
flags.DEFINE_list("moments", ["training", "saving", "stage", "conversion", "validation"],
                  "Where to kill.")
flags.DEFINE_string("root", "/tmp/kill_resume", "Workdirs go here.")
flags.DEFINE_bool("reuse", False, "Keep an uninterrupted run already in --root.")
flags.DEFINE_string("child", "", "Internal: run the recipe, killed at this moment ('' none).")
flags.DEFINE_string("workdir", "", "Internal: the child's workdir.")
flags.DEFINE_string("out", os.path.join(ROOT, "benchmarks", "results", "kill_resume.json"),
                    "Output JSON.")

TIMING = ("latency", "latency_ms", "latency_p90_ms", "seconds")


def _kill():
    os.kill(os.getpid(), signal.SIGKILL)


def _install(moment: str) -> None:
    """Patches the recipe's steps so the process SIGKILLs itself at ``moment``."""
    import tfcompress
    from tfcompress import keras
    from tfcompress.pipeline import recipe
    from tfcompress.pipeline import stages

    calls = {"fit": 0, "validate": 0}

    class KillAt(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 2:
                _kill()

    fit = stages.Context.fit

    def killing_fit(self, model, epochs, **kwargs):
        calls["fit"] += 1
        if (moment == "training" and calls["fit"] == 1) or (moment == "stage" and calls["fit"] == 3):
            kwargs["callbacks"] = list(kwargs.get("callbacks", ())) + [KillAt()]
        return fit(self, model, epochs, **kwargs)

    stages.Context.fit = killing_fit
    if moment == "saving":
        save = keras.Model.save

        def killing_save(self, path, *args, **kwargs):
            save(self, path, *args, **kwargs)
            if os.path.basename(path).startswith(".baseline.keras."):
                _kill()  # the temporary file is written, not yet renamed

        keras.Model.save = killing_save
    convert = recipe.convert

    def killing_convert(model, mode="float32", **kwargs):
        if moment == "conversion" and mode == "int8":
            _kill()
        return convert(model, mode, **kwargs)

    recipe.convert = killing_convert
    validate = recipe.validate

    def killing_validate(*args, **kwargs):
        calls["validate"] += 1
        if moment == "validation" and calls["validate"] == 3:
            _kill()
        return validate(*args, **kwargs)

    recipe.validate = killing_validate
    del tfcompress


def _child() -> None:
    import tfcompress
    from tfcompress.pipeline import preflight

    tfcompress.quiet_tensorflow()
    if FLAGS.child != "none":
        _install(FLAGS.child)
    tfcompress.run_recipe(preflight.load_config_file(f"{FLAGS.config}:{FLAGS.variant}"),
                          FLAGS.workdir)


def _run(moment: str, workdir: str) -> tuple:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, os.path.abspath(__file__), f"--child={moment}",
                           f"--workdir={workdir}", f"--config={FLAGS.config}",
                           f"--variant={FLAGS.variant}"],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ROOT})
    return done.returncode, time.perf_counter() - start, done.stderr[-1500:]


def figures(node):
    """The report without timings (they differ run to run)."""
    if isinstance(node, dict):
        return {k: figures(v) for k, v in node.items() if k not in TIMING}
    if isinstance(node, list):
        return [figures(v) for v in node]
    return node


def differences(a, b, path="") -> list:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += differences(a.get(k), b.get(k), f"{path}.{k}")
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{path}[{i}]")]
    return [] if a == b else [f"{path}: {a!r} != {b!r}"[:300]]


def _temporaries(workdir: str) -> list:
    from tfcompress import _io

    return [os.path.join(r, n) for r, ds, fs in os.walk(workdir) for n in ds + fs
            if _io.is_temporary(n)]


def _report(workdir: str) -> dict:
    with open(os.path.join(workdir, "report.json")) as f:
        return figures(json.load(f))


def main(argv):
    del argv
    if FLAGS.child:
        return _child()
    import shutil

    from tfcompress import _io

    reference_dir = os.path.join(FLAGS.root, "uninterrupted")
    seconds = None
    if not (FLAGS.reuse and os.path.exists(os.path.join(reference_dir, "report.json"))):
        shutil.rmtree(FLAGS.root, ignore_errors=True)
        rc, seconds, err = _run("none", reference_dir)
        assert rc == 0, err
    reference = _report(reference_dir)
    results = {"config": f"{FLAGS.config}:{FLAGS.variant}", "uninterrupted_seconds": seconds,
               "moments": {}}
    for moment in FLAGS.moments:
        workdir = os.path.join(FLAGS.root, moment)
        shutil.rmtree(workdir, ignore_errors=True)
        killed_rc, killed_s, _ = _run(moment, workdir)
        left = _temporaries(workdir)
        rc, rerun_s, err = _run("none", workdir)
        diffs = differences(reference, _report(workdir)) if rc == 0 else [err]
        results["moments"][moment] = {
            "killed_exit": killed_rc, "killed_after_seconds": killed_s,
            "temporaries_left_by_the_kill": [os.path.relpath(p, workdir) for p in left],
            "rerun_exit": rc, "rerun_seconds": rerun_s,
            "temporaries_after_rerun": _temporaries(workdir),
            "figures_equal": not diffs, "differences": diffs[:20]}
        print(moment, json.dumps(results["moments"][moment]), flush=True)
        _io.write_text(FLAGS.out, json.dumps(results, indent=2))
    ok = all(m["killed_exit"] == -9 and m["rerun_exit"] == 0 and m["figures_equal"]
             and not m["temporaries_after_rerun"] for m in results["moments"].values())
    print(f"wrote {FLAGS.out}; all moments killed, resumed to the same figures, no temporaries: "
          f"{ok}")


if __name__ == "__main__":
    app.run(main)

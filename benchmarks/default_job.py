"""The default job (``tfcompress compress``) over seeds; writes benchmarks/results/default_job.json.

    python benchmarks/default_job.py                 # seeds 0, 1, 2 (about 1 minute each here)
    python benchmarks/default_job.py --seeds=5

Per seed, in a fresh workdir: wall time of ``run_recipe`` (training included), and per format
row the gzip ratio to the baseline's float32, the test accuracy and its paired difference to
the float32 baseline (points, 95% interval). The summary gives min / median / max over seeds
and whether the best tfcompress row (``dynamic_wi4``) is >= 15x smaller after gzip at most
1 point below the baseline on every seed.
"""

import json
import os
import shutil
import sys
import tempfile
import time

import numpy as np
from absl import app, flags

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import tfcompress  # noqa: E402
from tfcompress import _io, configs  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("seeds", 3, "Seeds 0..N-1.")
flags.DEFINE_string("config", "default", "Recipe (name or file).")
flags.DEFINE_string("out", os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                        "default_job.json"), "Output JSON.")


def main(argv):
    del argv
    tfcompress.quiet_tensorflow()
    runs = []
    for seed in range(FLAGS.seeds):
        config = configs.load(FLAGS.config)
        config.seed = seed
        workdir = tempfile.mkdtemp(prefix="default_job_")
        start = time.perf_counter()
        report = tfcompress.run_recipe(config, workdir)
        wall = time.perf_counter() - start
        shutil.rmtree(workdir)
        runs.append({"seed": seed, "wall_seconds": wall, "rows": {
            r["format"]: {"gzip_ratio": r["gzip_ratio"], "accuracy": r["accuracy"],
                          "difference_points": r["vs_baseline"]["difference_points"],
                          "interval_points": [r["vs_baseline"]["low_points"],
                                              r["vs_baseline"]["high_points"]],
                          "bytes": r["bytes"], "gzip_bytes": r["gzip_bytes"]}
            for r in report["formats"]}})
        print(f"seed {seed}: {wall:.1f} s", json.dumps(runs[-1]["rows"], indent=1))
    spread = lambda v: {"min": min(v), "median": float(np.median(v)), "max": max(v)}  # noqa: E731
    summary = {name: {key: spread([r["rows"][name][key] for r in runs])
                      for key in ("gzip_ratio", "accuracy", "difference_points")}
               for name in runs[0]["rows"]}
    summary["wall_seconds"] = spread([r["wall_seconds"] for r in runs])
    best = [r["rows"]["dynamic_wi4"] for r in runs if "dynamic_wi4" in r["rows"]]
    summary["meets_15x_within_1_point"] = bool(best) and all(
        1 / b["gzip_ratio"] >= 15 and b["difference_points"] >= -1.0 for b in best)
    _io.write_text(FLAGS.out, json.dumps({"config": FLAGS.config, "cpu_count": os.cpu_count(),
                                          "runs": runs, "summary": summary}, indent=2))
    print(json.dumps(summary, indent=2))
    print(f"wrote {FLAGS.out}")


if __name__ == "__main__":
    app.run(main)

"""Prune, cluster and QAT fine-tunes under MirroredStrategy (two logical CPUs) and under
MultiWorkerMirroredStrategy (two worker processes on localhost, collective ops over gRPC),
each compared with the single-device run of the same plan from the same trained model.

Each strategy runs tests/distributed_worker.py in a fresh process (logical devices and
TF_CONFIG must be set before TensorFlow initializes).
"""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

import tfcompress

from tfmot_helpers import small_cnn

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "distributed_worker.py")
ROOT = os.path.dirname(os.path.dirname(WORKER))
STEPS, GLOBAL_BATCH = 8, 32  # the worker's pipeline: 256 samples, batches of 32


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(strategy: str, base: str, weights: str, tf_config=None) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=ROOT)
    env.pop("TF_CONFIG", None)
    if tf_config is not None:
        env["TF_CONFIG"] = json.dumps(tf_config)
    return subprocess.Popen([sys.executable, WORKER, strategy, base, weights], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _result(proc: subprocess.Popen, weights: str) -> dict:
    out, err = proc.communicate(timeout=300)
    lines = [line for line in out.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, err[-3000:]
    result = json.loads(lines[0][len("RESULT "):])
    with np.load(weights) as f:
        result["weights"] = [f[k] for k in sorted(f.files, key=lambda k: int(k.split("_")[1]))]
    return result


@pytest.fixture(scope="module")
def base_model(digits, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("distributed") / "base.keras")
    tfcompress.models.save_model(small_cnn(digits), path)
    return path


@pytest.fixture(scope="module")
def single(base_model):
    weights = base_model[:-len(".keras")] + "_single.npz"
    return _result(_start("single", base_model, weights), weights)


def _assert_same_plan(run: dict, single: dict) -> None:
    """The distributed run made the same steps and reached what the single-device run did."""
    assert run["replicas"] == 2 and single["replicas"] == 1
    assert run["prune_steps"] == single["prune_steps"] == STEPS * 2
    assert run["base_accuracy"] == single["base_accuracy"]  # the same starting weights
    for name, s in single["pruned"].items():
        assert abs(s - 0.7) <= 0.01, (name, s)
    assert run["pruned"] == single["pruned"]  # per-layer sparsity equal
    assert run["clustered_sparsity"] == single["clustered_sparsity"] == single["pruned"]
    assert run["clustered_unique"] == single["clustered_unique"]
    assert max(single["clustered_unique"].values()) <= 8
    for key in ("pruned_accuracy", "clustered_accuracy", "qat_accuracy"):
        assert abs(run[key] - single[key]) <= 0.01, (key, run[key], single[key])
    # The weights differ by the order of the float sums only (0.04% of their range here).
    assert [w.shape for w in run["weights"]] == [w.shape for w in single["weights"]]
    scale = max(float(np.max(np.abs(w))) for w in single["weights"])
    diff = max(float(np.max(np.abs(a - b))) for a, b in zip(run["weights"], single["weights"]))
    assert diff <= 0.01 * scale, (diff, scale)


@pytest.mark.slow
def test_mirrored_strategy_on_two_logical_cpus_matches_single_device(base_model, single):
    weights = base_model[:-len(".keras")] + "_mirrored.npz"
    run = _result(_start("mirrored", base_model, weights), weights)
    # Each step's global batch of 32 is split over the two replicas of this process.
    assert run["local_batches"] == [[GLOBAL_BATCH // 2] * 2] * STEPS
    assert single["local_batches"] == [[GLOBAL_BATCH]] * STEPS
    _assert_same_plan(run, single)


@pytest.mark.slow
def test_multiworker_strategy_on_two_processes_matches_single_device(base_model, single):
    ports = [_free_port(), _free_port()]
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    weights = [base_model[:-len(".keras")] + f"_worker{i}.npz" for i in range(2)]
    procs = [_start("multiworker", base_model, weights[i],
                    {"cluster": cluster, "task": {"type": "worker", "index": i}})
             for i in range(2)]
    runs = [_result(p, w) for p, w in zip(procs, weights)]
    for i, run in enumerate(runs):
        assert run["task"] == {"type": "worker", "index": i}
        # DATA sharding: each worker receives half of every global batch, the same 8 steps.
        assert run["local_batches"] == [[GLOBAL_BATCH // 2]] * STEPS
        _assert_same_plan(run, single)
    # The all-reduce kept the two workers' models identical.
    for a, b in zip(runs[0]["weights"], runs[1]["weights"]):
        np.testing.assert_array_equal(a, b)
    assert {k: v for k, v in runs[0].items() if k not in ("task", "weights")} == {
        k: v for k, v in runs[1].items() if k not in ("task", "weights")}

"""Issue 3 acceptance figures: pruning, the prune -> cluster -> PCQAT -> int8 chain, and both
under MirroredStrategy with two logical CPU devices, on the digits CNN.

    .venv/bin/python benchmarks/tfmot_stages.py            # writes benchmarks/results/tfmot_stages.json

Measured, not assumed: per-layer sparsity after strip (Keras weights) and inside the int8
flatbuffer (LiteRT interpreter), distinct values per kernel (and per output channel, since
convolution kernels are quantized per channel), Keras and LiteRT accuracy, gzip bytes against
the baseline's float32 flatbuffer. The MirroredStrategy runs happen in a child process, since
logical devices must be configured before TensorFlow starts.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

BATCH = 32
PLAN = dict(prune_epochs=6, prune_lr=5e-4, cluster_epochs=3, cluster_lr=1e-4,
            qat_epochs=3, qat_lr=1e-4, clusters=16, target=0.8)
if os.environ.get("TFMOT_STAGES_QUICK"):  # a plumbing check, not a measurement
    PLAN.update(prune_epochs=2, cluster_epochs=1, qat_epochs=1)


def _setup_devices(n: int) -> None:
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(n)])


def _fit(model, x, y, epochs, lr, callbacks=()):
    from tfcompress import keras

    model.compile(keras.optimizers.Adam(lr), "sparse_categorical_crossentropy", ["accuracy"])
    model.fit(x, y, batch_size=BATCH, epochs=epochs, callbacks=list(callbacks), verbose=0)
    return model


def _tflite_figures(model, splits, float_gzip):
    from tfcompress import profiling, tasks
    from tfcompress.training import pruning
    from tfcompress.export.conversion import convert
    from tfcompress.export.validation import predict

    (x, _), (xt, yt) = splits
    flatbuffer = convert(model, "int8", representative_data=x, representative_samples=200)
    sizes = profiling.tflite_sizes(flatbuffer)
    return {
        "int8_accuracy": tasks.top1(predict(flatbuffer, xt), yt),
        "int8_bytes": sizes["bytes"], "int8_gzip_bytes": sizes["gzip_bytes"],
        "int8_gzip_ratio_to_float32": sizes["gzip_bytes"] / float_gzip,
        "int8_tensors": pruning.flatbuffer_sparsity(flatbuffer),
    }


def run_stages(baseline_path: str, strategy_devices: int = 0, seed: int = 1) -> dict:
    """Prune, then cluster and PCQAT, from the saved baseline; returns measured figures."""
    import contextlib

    import tensorflow as tf
    import tensorflow_model_optimization as tfmot

    import tfcompress
    from tfcompress import models, profiling, tasks
    from tfcompress.export.conversion import convert

    splits = tfcompress.data.load_digits()
    (x, y), (xt, yt) = splits
    steps = int(np.ceil(len(x) / BATCH))
    strategy = tf.distribute.MirroredStrategy() if strategy_devices else None
    scope = strategy.scope() if strategy else contextlib.nullcontext()
    acc = lambda m: tasks.top1(m.predict(xt, verbose=0), yt)  # noqa: E731
    out = {"replicas": strategy.num_replicas_in_sync if strategy else 1, "plan": PLAN,
           "seed": seed}
    tfcompress.keras.utils.set_random_seed(seed)
    t0 = time.time()
    with scope:
        base = models.load_model(baseline_path)
        float_gzip = profiling.tflite_sizes(convert(base, "float32"))["gzip_bytes"]
        out["baseline"] = {"accuracy": acc(base), "float32_gzip_bytes": float_gzip}
        pruned = tfcompress.prune(base, PLAN["target"], epochs=PLAN["prune_epochs"],
                                  steps_per_epoch=steps)
        schedule = tfcompress.training.pruning.pruning_info(pruned)["schedule"]
        _fit(pruned, x, y, PLAN["prune_epochs"], PLAN["prune_lr"],
             [tfmot.sparsity.keras.UpdatePruningStep()])
        pruned = tfcompress.strip(pruned)
        out["prune"] = {
            "schedule": schedule,
            "sparsity": tfcompress.sparsity_report(pruned)["layers"],
            "accuracy": acc(pruned),
            **_tflite_figures(pruned, splits, float_gzip),
        }
        clustered = tfcompress.cluster(pruned, PLAN["clusters"], preserve_sparsity=True)
        _fit(clustered, x, y, PLAN["cluster_epochs"], PLAN["cluster_lr"])
        clustered = tfcompress.strip(clustered)
        out["cluster"] = {
            "sparsity": tfcompress.sparsity_report(clustered)["layers"],
            "unique_weights": tfcompress.unique_weights_report(clustered)["layers"],
            "accuracy": acc(clustered),
        }
        pcqat = tfcompress.quantize_aware(clustered, preserve="sparsity_and_clusters")
        _fit(pcqat, x, y, PLAN["qat_epochs"], PLAN["qat_lr"])
        pcqat = tfcompress.strip(pcqat)
        out["pcqat"] = {"accuracy": acc(pcqat), **_tflite_figures(pcqat, splits, float_gzip)}
    out["seconds"] = time.time() - t0
    return out


def _summary(r: dict) -> dict:
    base = r["baseline"]["accuracy"]
    chain = r["pcqat"]["int8_tensors"]
    return {
        "prune_sparsity_after_strip": r["prune"]["sparsity"],
        "prune_max_abs_gap_to_target": max(abs(s - PLAN["target"])
                                           for s in r["prune"]["sparsity"].values()),
        "prune_keras_accuracy_drop": base - r["prune"]["accuracy"],
        "prune_int8_accuracy_drop": base - r["prune"]["int8_accuracy"],
        "prune_int8_gzip_ratio": r["prune"]["int8_gzip_ratio_to_float32"],
        "chain_int8_min_zeros": min(t["zeros"] for t in chain.values()),
        "chain_int8_max_distinct_per_tensor": max(t["distinct"] for t in chain.values()),
        "chain_int8_max_distinct_per_channel": max(
            t["distinct_per_channel"] for t in chain.values()),
        "chain_int8_accuracy_drop": base - r["pcqat"]["int8_accuracy"],
        "chain_int8_gzip_ratio": r["pcqat"]["int8_gzip_ratio_to_float32"],
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", default="", help="internal: baseline path for a child run")
    parser.add_argument("--devices", type=int, default=0)
    parser.add_argument("--seed", type=int, default=1, help="fine-tuning seed (child run)")
    parser.add_argument("--seeds", default="1,2,3", help="fine-tuning seeds, single device")
    parser.add_argument("--baseline_epochs", type=int, default=15)
    parser.add_argument("--out", default=os.path.join(HERE, "results", "tfmot_stages.json"))
    args = parser.parse_args()
    if os.environ.get("TFMOT_STAGES_QUICK"):
        args.baseline_epochs = 1
    if args.child:
        if args.devices:
            _setup_devices(args.devices)
        print("RESULT " + json.dumps(run_stages(args.child, args.devices, args.seed),
                                     default=str))
        return

    import tfcompress
    from tfcompress import _io, models

    (x, y), _ = tfcompress.data.load_digits()
    tfcompress.keras.utils.set_random_seed(0)
    base = tfcompress.models.digits_cnn()
    _fit(base, x, y, args.baseline_epochs, 1e-3)
    with tempfile.TemporaryDirectory() as tmp:
        path = models.save_model(base, os.path.join(tmp, "baseline.keras"))
        results = {}
        seeds = [int(s) for s in args.seeds.split(",")]
        runs = [("single", 0, seeds[0]), ("mirrored_2_logical_cpus", 2, seeds[0])]
        runs += [(f"single_seed{s}", 0, s) for s in seeds[1:]]
        for name, devices, seed in runs:
            proc = subprocess.run(
                [sys.executable, __file__, "--child", path, "--devices", str(devices),
                 "--seed", str(seed)], capture_output=True, text=True)
            line = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
            if proc.returncode or not line:
                raise SystemExit(f"{name} run failed:\n{proc.stderr[-4000:]}")
            results[name] = json.loads(line[0][len("RESULT "):])
            results[name]["summary"] = _summary(results[name])
    single, mirrored = results["single"]["summary"], results["mirrored_2_logical_cpus"]["summary"]
    results["mirrored_vs_single_max_sparsity_gap"] = max(
        abs(single["prune_sparsity_after_strip"][k] - mirrored["prune_sparsity_after_strip"][k])
        for k in single["prune_sparsity_after_strip"])
    singles = [r["summary"] for k, r in results.items() if k.startswith("single")]
    results["worst_over_seeds"] = {
        "seeds": seeds,
        "prune_max_abs_gap_to_target": max(s["prune_max_abs_gap_to_target"] for s in singles),
        "prune_keras_accuracy_drop": max(s["prune_keras_accuracy_drop"] for s in singles),
        "prune_int8_gzip_ratio": max(s["prune_int8_gzip_ratio"] for s in singles),
        "chain_int8_min_zeros": min(s["chain_int8_min_zeros"] for s in singles),
        "chain_int8_max_distinct_per_channel": max(
            s["chain_int8_max_distinct_per_channel"] for s in singles),
        "chain_int8_accuracy_drop": max(s["chain_int8_accuracy_drop"] for s in singles),
        "chain_int8_gzip_ratio": max(s["chain_int8_gzip_ratio"] for s in singles),
    }
    results["command"] = ".venv/bin/python benchmarks/tfmot_stages.py"
    _io.write_text(args.out, json.dumps(results, indent=2, sort_keys=True))
    print(json.dumps({k: results[k]["summary"] for k in ("single", "mirrored_2_logical_cpus")},
                     indent=2))
    print("mirrored vs single sparsity gap", results["mirrored_vs_single_max_sparsity_gap"])
    print("worst over seeds", json.dumps(results["worst_over_seeds"], indent=2))


if __name__ == "__main__":
    main()

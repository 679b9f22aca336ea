"""Run by test_multiworker in a fresh process: one compression plan under a distribution
strategy, measured, so the test can compare the strategies with each other.

    python tests/distributed_worker.py STRATEGY BASE_MODEL WEIGHTS_NPZ

STRATEGY: ``single`` (the default strategy, one device), ``mirrored`` (MirroredStrategy on two
logical CPU devices of this process) or ``multiworker`` (MultiWorkerMirroredStrategy; this
process is one worker of the cluster in ``TF_CONFIG``, set before TensorFlow is imported).
BASE_MODEL: a trained .keras file every strategy starts from (same weights everywhere).
WEIGHTS_NPZ: where this process writes the final (stripped QAT) model's weights.

The plan: prune to 70% with ``tfcompress.callbacks.Pruning()`` (2 epochs), strip, cluster to 8
preserving sparsity (1 epoch), strip, QAT preserving sparsity and clusters (1 epoch), strip.
The data is one unshuffled tf.data pipeline with a global batch of 32; under multi-worker it is
sharded by DATA (each worker takes half of every global batch), so every strategy makes the
same number of steps on the same batches. Prints one line "RESULT <json>".
"""

import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import tensorflow as tf  # noqa: E402

import tfcompress  # noqa: E402  (selects Keras 2 before tf.keras is touched)

STRATEGY, BASE, WEIGHTS = sys.argv[1], sys.argv[2], sys.argv[3]
SAMPLES, BATCH, PRUNE_EPOCHS = 256, 32, 2

if STRATEGY == "mirrored":  # logical devices must exist before TensorFlow initializes
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])

from tfcompress import keras  # noqa: E402

strategy = {"single": tf.distribute.get_strategy,
            "mirrored": tf.distribute.MirroredStrategy,
            "multiworker": tf.distribute.MultiWorkerMirroredStrategy}[STRATEGY]()
(x, y), (xt, yt) = tfcompress.data.load_digits()
options = tf.data.Options()
options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
data = tf.data.Dataset.from_tensor_slices((x[:SAMPLES], y[:SAMPLES])).batch(
    BATCH, drop_remainder=True).with_options(options)
steps = SAMPLES // BATCH
# What each replica of this process receives per step (the sharding, measured).
local_batches = [[int(t.shape[0]) for t in strategy.experimental_local_results(xb)]
                 for xb, _ in strategy.experimental_distribute_dataset(data)]


def fit(model, epochs, callbacks=()):
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", ["accuracy"])
    history = model.fit(data, epochs=epochs, callbacks=list(callbacks), verbose=0)
    return len(history.history["loss"])


def accuracy(model) -> float:
    return float(np.mean(np.argmax(model(xt, training=False).numpy(), -1) == yt))


with strategy.scope():
    base = tfcompress.models.load_model(BASE)
    pruned = tfcompress.prune(base, 0.7, epochs=PRUNE_EPOCHS, steps_per_epoch=steps)
    fit(pruned, PRUNE_EPOCHS, [tfcompress.callbacks.Pruning()])
    step = int(keras.backend.get_value(pruned.optimizer.iterations))
    pruned = tfcompress.strip(pruned)
    clustered = tfcompress.cluster(pruned, 8, preserve_sparsity=True)
    fit(clustered, 1)
    clustered = tfcompress.strip(clustered)
    qat = tfcompress.quantize_aware(clustered, preserve="sparsity_and_clusters")
    fit(qat, 1)
    qat = tfcompress.strip(qat)

result = {
    "strategy": STRATEGY, "replicas": strategy.num_replicas_in_sync,
    "task": json.loads(os.environ.get("TF_CONFIG", "{}")).get("task"),
    "local_batches": local_batches, "prune_steps": step,
    "base_accuracy": accuracy(base),
    "pruned": tfcompress.sparsity_report(pruned)["layers"],
    "pruned_accuracy": accuracy(pruned),
    "clustered_sparsity": tfcompress.sparsity_report(clustered)["layers"],
    "clustered_unique": tfcompress.unique_weights_report(clustered)["layers"],
    "clustered_accuracy": accuracy(clustered),
    "qat_accuracy": accuracy(qat),
}
np.savez(WEIGHTS, *[w.numpy() for w in qat.weights])
print("RESULT " + json.dumps(result), flush=True)

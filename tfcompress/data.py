"""Datasets: the bundled digits, a user's .npz, an image folder or a tf.data.Dataset.

Every loader returns ``((x_train, y_train), (x_test, y_test))`` as numpy arrays: float32 images
(N, H, W, C) and integer labels (N,). ``split_validation`` carves the validation split that every
decision uses from the training split (``DataSplits``: train, validation, test), so the test split
is only measured, once per exported model. ``representative_dataset`` turns images into the
generator the TFLite converter wants for full-integer quantization.
"""

import gzip
import os
from typing import Callable, Iterator, NamedTuple, Optional, Sequence

import numpy as np

from tfcompress import errors
from tfcompress._keras import keras

Split = tuple[np.ndarray, np.ndarray]
Splits = tuple[Split, Split]


class DataSplits(NamedTuple):
    """Train (fit), validation (every decision) and test (measured once, for the report)."""

    train: Split
    validation: Split
    test: Split

_DIGITS = os.path.join(os.path.dirname(__file__), "datasets", "digits.csv.gz")
DIGITS_CLASSES = tuple(str(i) for i in range(10))


def load_digits(test_fraction: float = 0.2, seed: int = 0) -> Splits:
    """The bundled 8x8 handwritten digits (1,797 images, 10 classes; see datasets/README.md).

    Returns:
        ((x_train, y_train), (x_test, y_test)) with float32 images (N, 8, 8, 1) in [0, 1] and
        int32 labels. The split is stratified per class and fixed by ``seed`` (359 test images
        with the defaults).
    """
    if not 0.0 < test_fraction < 1.0:
        raise errors.DataError(f"test_fraction={test_fraction!r}; accepted: a number in (0, 1)")
    with gzip.open(_DIGITS, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.float32)
    x = (table[:, :64] / 16.0).reshape(-1, 8, 8, 1).astype(np.float32)
    y = table[:, 64].astype(np.int32)
    rng = np.random.default_rng(seed)
    test = np.zeros(len(y), dtype=bool)
    for label in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == label))
        test[idx[: int(round(len(idx) * test_fraction))]] = True
    train_idx, test_idx = rng.permutation(np.flatnonzero(~test)), np.flatnonzero(test)
    return (x[train_idx], y[train_idx]), (x[test_idx], y[test_idx])


def _stratified(y: np.ndarray, fraction: float, rng) -> np.ndarray:
    """A boolean mask holding ``fraction`` of each class (at least one where a class has 2+)."""
    chosen = np.zeros(len(y), dtype=bool)
    for label in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == label))
        n = int(round(len(idx) * fraction))
        chosen[idx[: max(n, 1) if len(idx) > 1 else n]] = True
    return chosen


def split_validation(train: Split, fraction: float = 0.15, seed: int = 0) -> tuple[Split, Split]:
    """(train, validation): a stratified ``fraction`` of the training split, fixed by ``seed``.

    Raises:
        DataError: ``fraction`` outside (0, 1), or a training split too small to split.
    """
    if not 0.0 < float(fraction) < 1.0:
        raise errors.DataError(
            f"validation_fraction={fraction!r}; accepted: a number in (0, 1)")
    x, y = train
    if len(y) < 2:
        raise errors.DataError(
            f"the training split has {len(y)} samples; a validation split needs at least 2")
    val = _stratified(np.asarray(y), fraction, np.random.default_rng(seed + 7919))
    keep = np.flatnonzero(~val)
    return (x[keep], y[keep]), (x[val], y[val])


def load_npz(path: str) -> Splits:
    """A user's ``.npz`` holding ``x_train``, ``y_train``, ``x_test`` and ``y_test``."""
    if not os.path.isfile(path):
        raise errors.DataError(f"data file {path!r} does not exist; accepted: an .npz file")
    with np.load(path) as npz:
        missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in npz]
        if missing:
            raise errors.DataError(
                f"{path!r} lacks arrays {missing}; it has {sorted(npz.files)}, "
                "accepted: x_train, y_train, x_test, y_test"
            )
        out = []
        for split in ("train", "test"):
            x, y = npz[f"x_{split}"].astype(np.float32), npz[f"y_{split}"]
            if len(x) != len(y):
                raise errors.DataError(
                    f"{path!r}: x_{split} has {len(x)} rows but y_{split} has {len(y)}"
                )
            out.append((x, _labels(y)))
    return tuple(out)


def npz_validation(path: str) -> Optional[Split]:
    """The ``x_val``/``y_val`` pair a user's ``.npz`` brings, if it has both (else None)."""
    with np.load(path) as npz:
        if "x_val" not in npz or "y_val" not in npz:
            return None
        x, y = npz["x_val"].astype(np.float32), npz["y_val"]
    if len(x) != len(y):
        raise errors.DataError(f"{path!r}: x_val has {len(x)} rows but y_val has {len(y)}")
    return x, _labels(y)


def load_image_folder(
    path: str,
    image_size: Sequence[int],
    *,
    color_mode: str = "rgb",
    test_fraction: float = 0.2,
    seed: int = 0,
) -> tuple[Splits, tuple[str, ...]]:
    """An image folder with one sub-folder per class, pixels scaled to [0, 1].

    Returns:
        (splits, class_names).
    """
    if not os.path.isdir(path):
        raise errors.DataError(f"image folder {path!r} does not exist; accepted: a folder "
                               "with one sub-folder of images per class")
    common = dict(
        image_size=tuple(image_size), color_mode=color_mode, batch_size=None, seed=seed,
        validation_split=test_fraction, shuffle=True, label_mode="int",
    )
    train = keras.utils.image_dataset_from_directory(path, subset="training", **common)
    test = keras.utils.image_dataset_from_directory(path, subset="validation", **common)
    names = tuple(train.class_names)
    (xtr, ytr), (xte, yte) = from_dataset(train), from_dataset(test)
    return ((xtr / 255.0, ytr), (xte / 255.0, yte)), names


def resize_images(x: np.ndarray, image_size: Sequence[int], color_mode: str = "rgb") -> np.ndarray:
    """Images resized (bilinear) to ``image_size`` with 3 (``rgb``) or 1 (``grayscale``) channels.

    E.g. the 8x8 digits as 32x32 RGB, the smallest input ``keras.applications`` models take.
    """
    if color_mode not in ("rgb", "grayscale"):
        raise errors.DataError(errors.unknown("color_mode", color_mode, ("rgb", "grayscale")))
    import tensorflow as tf

    out = tf.image.resize(np.asarray(x, np.float32), tuple(image_size)).numpy()
    if color_mode == "rgb" and out.shape[-1] == 1:
        out = np.repeat(out, 3, axis=-1)
    elif color_mode == "grayscale" and out.shape[-1] != 1:
        out = out.mean(axis=-1, keepdims=True)
    return out.astype(np.float32)


def from_dataset(dataset, limit: Optional[int] = None) -> Split:
    """Collects a ``tf.data.Dataset`` of (image, label) pairs, batched or not, into numpy.

    A dataset of images alone gives labels of -1.
    """
    spec = dataset.element_spec
    pairs = isinstance(spec, (tuple, list))
    if pairs and len(spec) != 2:
        raise errors.DataError(f"dataset elements must be images or (image, label) pairs, "
                               f"got tuples of {len(spec)}")
    image_spec = spec[0] if pairs else spec
    if image_spec.shape.rank and image_spec.shape[0] is None:  # batched
        dataset = dataset.unbatch()
    if limit:
        dataset = dataset.take(limit)
    xs, ys = [], []
    for item in dataset.as_numpy_iterator():
        xs.append(item[0] if pairs else item)
        ys.append(item[1] if pairs else -1)
    if not xs:
        raise errors.DataError("the dataset is empty")
    return np.stack(xs).astype(np.float32), _labels(np.stack(ys))


def _labels(y: np.ndarray) -> np.ndarray:
    """Integer class labels from integer or one-hot labels."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] > 1:
        y = y.argmax(axis=1)
    return y.reshape(-1).astype(np.int32)


def check_fits(x: np.ndarray, input_shape: Sequence[Optional[int]], what: str = "data") -> None:
    """Raises DataError unless images ``x`` fit a model input of ``input_shape`` (batch first)."""
    want = tuple(input_shape)[1:]
    got = tuple(np.shape(x))[1:]
    if len(want) != len(got) or any(w is not None and w != g for w, g in zip(want, got)):
        raise errors.DataError(
            f"{what} has sample shape {got} but the model expects {tuple(want)}"
        )


def representative_dataset(x, num_samples: int = 200) -> Callable[[], Iterator[list]]:
    """The converter's ``representative_dataset``: one float32 sample per step.

    Args:
        x: images as a numpy array, a ``tf.data.Dataset`` of images or (image, label) pairs,
            or the ``Splits`` tuple our loaders return (the training images are used).
        num_samples: how many samples to yield at most.
    """
    if num_samples < 1:
        raise errors.DataError(f"num_samples={num_samples!r}; accepted: an integer >= 1")
    if isinstance(x, tuple) and len(x) == 2 and isinstance(x[0], tuple):  # Splits
        x = x[0][0]
    if hasattr(x, "element_spec"):
        x = from_dataset(x, limit=num_samples)[0]
    samples = np.asarray(x, np.float32)[:num_samples]

    def generate():
        for sample in samples:
            yield [sample[None]]

    return generate

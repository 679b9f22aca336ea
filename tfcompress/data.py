"""Datasets: the bundled digits, a user's .npz, an image folder or a tf.data.Dataset.

Every loader returns ``((x_train, y_train), (x_test, y_test))`` as numpy arrays: float32 images
(N, H, W, C) and integer labels (N,); integer inputs (token ids) stay integers (int32), and a
regression task's targets are float32 (``targets``; ``check_data(..., task="regression")``).
``split_validation`` carves the validation split that every decision uses from the training
split (``DataSplits``: train, validation, test), so the test split is only measured, once per
exported model. ``representative_dataset`` turns images into the
generator the TFLite converter wants for full-integer quantization.
"""

import gzip
import os
import re
import warnings
import zipfile
from typing import Callable, Iterator, NamedTuple, Optional, Sequence

import numpy as np

from tfcompress import errors
from tfcompress._compat.keras import keras

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
    """(train, validation): a stratified ``fraction`` of the training split, fixed by ``seed``
    (float regression targets: a random ``fraction``).

    Raises:
        DataError: ``fraction`` outside (0, 1), or a training split too small to split.
    """
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float, np.number)) or not (
            0.0 < float(fraction) < 1.0):
        raise errors.DataError(
            f"validation_fraction={fraction!r}; accepted: a number in (0, 1)")
    x, y = train
    if len(y) < 2:
        raise errors.DataError(
            f"the training split has {len(y)} samples; a validation split needs at least 2")
    rng = np.random.default_rng(seed + 7919)
    if np.asarray(y).dtype.kind == "f":  # regression targets: a plain random share
        val = np.zeros(len(y), dtype=bool)
        val[rng.permutation(len(y))[: max(int(round(len(y) * fraction)), 1)]] = True
    else:
        val = _stratified(np.asarray(y), fraction, rng)
    keep = np.flatnonzero(~val)
    return (x[keep], y[keep]), (x[val], y[val])


def _npz_arrays(path: str, names: Sequence[str], required: bool = True) -> Optional[dict]:
    """The named arrays of an ``.npz`` (None if ``required`` is False and one is missing)."""
    if not os.path.isfile(path):
        raise errors.DataError(f"data file {path!r} does not exist; accepted: an .npz file")
    if not zipfile.is_zipfile(path):
        raise errors.DataError(
            f"data file {path!r} is not an .npz archive (no zip structure); accepted: a file "
            "written by numpy.savez with x_train, y_train, x_test, y_test")
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in names if k not in npz]
            if missing and not required:
                return None
            if missing:
                raise errors.DataError(
                    f"{path!r} lacks arrays {missing}; it has {sorted(npz.files)}, "
                    "accepted: x_train, y_train, x_test, y_test")
            return {k: npz[k] for k in names}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
        if isinstance(e, errors.TfcompressError):
            raise
        raise errors.DataError(
            f"cannot read {path!r} as an .npz of numeric arrays ({' '.join(str(e).split())}); "
            "accepted: numeric arrays saved by numpy.savez (object arrays are refused)") from e


def load_npz(path: str, task: str = "classification",
             splits: Sequence[str] = ("train", "test")) -> tuple:
    """A user's ``.npz`` holding ``x_train``, ``y_train``, ``x_test`` and ``y_test`` (the
    ``splits`` asked for: ``("test",)`` reads only ``x_test``/``y_test``), one pair per split.

    Integer inputs (token ids) stay integers (int32 where they fit), float inputs are float32.
    ``task`` "regression" takes float targets (``targets``); any other task class labels.

    Raises:
        DataError: a missing file, a file that is not an ``.npz``, missing or object arrays,
            non-numeric images, labels that are not class indices (see ``check_data``).
    """
    arrays = _npz_arrays(path, tuple(f"{k}_{split}" for split in splits for k in "xy"))
    return tuple(_pair(arrays[f"x_{split}"], arrays[f"y_{split}"], f"{path!r}: {split}", task)
                 for split in splits)


def npz_targets(path: str) -> np.ndarray:
    """The raw ``y_train`` of a user's ``.npz`` (unchecked), for inferring its task."""
    return _npz_arrays(path, ("y_train",))["y_train"]


def npz_validation(path: str, task: str = "classification") -> Optional[Split]:
    """The ``x_val``/``y_val`` pair a user's ``.npz`` brings, if it has both (else None).

    Raises:
        DataError: the file holds one of ``x_val``/``y_val`` without the other.
    """
    arrays = _npz_arrays(path, ("x_val", "y_val"), required=False)
    if arrays is None:
        half = [k for k in ("x_val", "y_val") if _npz_arrays(path, (k,), required=False)]
        if half:
            other = ({"x_val", "y_val"} - set(half)).pop()
            raise errors.DataError(
                f"{path!r} holds {half[0]} without {other}; accepted: both x_val and y_val "
                "(a validation split of its own) or neither (carved from the training split)")
        return None
    return _pair(arrays["x_val"], arrays["y_val"], f"{path!r}: validation", task)


def _pair(x, y, what: str, task: str = "classification") -> Split:
    """(inputs, int32 labels or float32 targets) after the checks of ``check_images`` and
    ``labels``/``targets``; float inputs become float32, integer inputs stay integers."""
    x = check_images(x, f"{what} images")
    y = (targets if task == "regression" else labels)(y, f"{what} labels")
    if len(x) != len(y):
        raise errors.DataError(f"{what} has {len(x)} images but {len(y)} labels")
    return _inputs(x), y


def _inputs(x: np.ndarray) -> np.ndarray:
    """Float inputs as float32; integer inputs (token ids) as int32 where every value fits
    (else kept as they are); bool inputs kept."""
    if x.dtype.kind == "f":
        return x.astype(np.float32)
    if x.dtype.kind in "iu" and x.dtype != np.int32:
        info = np.iinfo(np.int32)
        if not x.size or (x.min() >= info.min and x.max() <= info.max):
            return x.astype(np.int32)
    return x


def targets(y, what: str = "targets") -> np.ndarray:
    """Regression targets as float32, (N,) or (N, K), checked finite.

    Raises:
        DataError: non-numeric targets, NaN/Inf (also beyond float32's range), more than two
            dimensions.
    """
    y = np.asarray(y)
    if y.dtype.kind not in "biuf":
        raise errors.DataError(
            f"{what}: targets have dtype {y.dtype}; accepted: numbers (regression targets)")
    if y.ndim > 2:
        raise errors.DataError(
            f"{what}: targets have shape {y.shape}; accepted: (N,) or (N, outputs)")
    with np.errstate(over="ignore"):
        out = y.astype(np.float32)
    bad = ~np.isfinite(out)
    if bad.any():
        raise errors.DataError(
            f"{what}: {int(bad.sum())} targets are NaN, Inf or beyond float32's range (e.g. "
            f"{y[bad].reshape(-1)[0]!r}); accepted: finite float32 numbers")
    return out


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

    Raises:
        DataError: a missing folder, a bad ``image_size``/``color_mode``/``test_fraction``, a
            folder without images or with too few for both splits, or a file that is not a
            readable image (named).
    """
    if not os.path.isdir(path):
        raise errors.DataError(f"image folder {path!r} does not exist; accepted: a folder "
                               "with one sub-folder of images per class")
    size = tuple(image_size) if isinstance(image_size, (list, tuple)) else (image_size,)
    if len(size) != 2 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                                 and v > 0 for v in size):
        raise errors.DataError(
            f"image_size={image_size!r}; accepted: (height, width), two integers > 0")
    if color_mode not in _COLOR_MODES:
        raise errors.DataError(errors.unknown("color_mode", color_mode, _COLOR_MODES))
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float)) or not (
            0.0 < test_fraction < 1.0):
        raise errors.DataError(f"test_fraction={test_fraction!r}; accepted: a number in (0, 1)")
    images = _folder_images(path)
    n_test = int(test_fraction * len(images))  # Keras' own count for the "validation" subset
    if n_test < 1 or len(images) - n_test < 1:
        raise errors.DataError(
            f"image folder {path!r} holds {len(images)} image"
            f"{'' if len(images) == 1 else 's'} ({', '.join(_IMAGE_EXTENSIONS)} files in class "
            f"sub-folders), too few for a training and a test split with test_fraction="
            f"{test_fraction}; accepted: at least {_fewest_images(test_fraction)} images")
    import tensorflow as tf

    common = dict(
        image_size=size, color_mode=color_mode, batch_size=None, seed=seed,
        validation_split=test_fraction, shuffle=True, label_mode="int",
    )
    try:
        train = keras.utils.image_dataset_from_directory(path, subset="training", **common)
        test = keras.utils.image_dataset_from_directory(path, subset="validation", **common)
        names = tuple(train.class_names)
        (xtr, ytr), (xte, yte) = from_dataset(train), from_dataset(test)
    except (tf.errors.InvalidArgumentError, ValueError) as e:
        if isinstance(e, errors.TfcompressError):
            raise
        raise errors.DataError(_unreadable(path, images, e)) from None
    return ((xtr / 255.0, ytr), (xte / 255.0, yte)), names


_COLOR_MODES = ("rgb", "grayscale", "rgba")
_IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")  # what Keras' loader lists


def _folder_images(path: str) -> list[str]:
    """Image files (by extension) in the class sub-folders of ``path``, as Keras lists them."""
    found = []
    for entry in sorted(os.scandir(path), key=lambda e: e.name):
        if entry.is_dir():
            for root, _, files in os.walk(entry.path):
                found += [os.path.join(root, f) for f in sorted(files)
                          if f.lower().endswith(_IMAGE_EXTENSIONS)]
    return found


def _fewest_images(test_fraction: float) -> int:
    """The fewest images that leave both of Keras' subsets non-empty."""
    n = 2
    while int(test_fraction * n) < 1 or n - int(test_fraction * n) < 1:
        n += 1
    return n


def _unreadable(path: str, images: Sequence[str], error: Exception) -> str:
    """The one line for an image folder Keras could not read: the first bad file named."""
    import tensorflow as tf

    for file in images:
        try:
            tf.io.decode_image(tf.io.read_file(file), expand_animations=False)
        except (tf.errors.InvalidArgumentError, tf.errors.OpError) as e:
            reason = re.sub(r"\{\{.*?\}\}|\[Op:\w+\]", "", str(e.message))
            reason = " ".join(reason.split()).removesuffix(" name:")[:160]
            return (f"image folder {path!r}: {os.path.relpath(file, path)!r} is not a readable "
                    f"image ({reason}); accepted: {', '.join(_IMAGE_EXTENSIONS)} image files "
                    "(remove or replace it)")
    first = " ".join(str(error).split())[:200]
    return f"cannot read image folder {path!r} ({first}); accepted: a folder with one sub-folder of images per class"


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


def labels(y, what: str = "labels") -> np.ndarray:
    """Integer class labels (int32, (N,)) from integer or one-hot labels, checked.

    Float labels are accepted only where every value is a whole number (``3.0``); anything else
    (fractions, strings, objects) is refused rather than truncated. Rows of several columns
    are accepted only as one-hot rows (a single 1, zeros elsewhere): multi-label rows, all-zero
    rows and other multi-column targets are refused, not argmax'd. Values that int32 cannot
    hold are refused, not wrapped around.

    Raises:
        DataError: labels that are not numeric class indices or one-hot rows.
    """
    y = np.asarray(y)
    if y.dtype.kind not in "biuf":
        raise errors.DataError(
            f"{what}: labels have dtype {y.dtype}; accepted: integer class indices 0..N-1 "
            "or one-hot rows")
    if y.ndim > 2 or (y.ndim == 2 and y.shape[1] > 1):
        y = _one_hot(y, what)
    y = y.reshape(-1)
    if y.dtype.kind == "f":
        bad = ~np.isfinite(y) | (y != np.round(y))
        if bad.any():
            raise errors.DataError(
                f"{what}: {int(bad.sum())} labels are not whole numbers (e.g. "
                f"{y[bad][0]!r}); accepted: integer class indices 0..N-1 (not truncated)")
    info = np.iinfo(np.int32)
    if y.size and (y.max() > info.max or y.min() < info.min):
        bad = y.max() if y.max() > info.max else y.min()
        raise errors.DataError(
            f"{what}: label {int(bad)} is beyond what int32 holds (it would wrap around); "
            "accepted: integer class indices 0..N-1")
    return y.astype(np.int64).astype(np.int32)


def _one_hot(y: np.ndarray, what: str) -> np.ndarray:
    """Class indices of one-hot rows (N, K), checked: one 1 per row, zeros elsewhere."""
    if y.ndim > 2:
        raise errors.DataError(
            f"{what}: labels have shape {y.shape}; accepted: class indices (N,) or one-hot "
            "rows (N, classes)")
    binary = (y == 0) | (y == 1)
    ones = (y == 1).sum(axis=1)
    zero_rows = np.flatnonzero(binary.all(axis=1) & (ones == 0))
    if len(zero_rows):
        raise errors.DataError(
            f"{what}: {len(zero_rows)} one-hot rows are all zero (e.g. row {int(zero_rows[0])}); "
            "accepted: one-hot rows holding a single 1 (class indices are not guessed)")
    bad = np.flatnonzero(~binary.all(axis=1) | (ones != 1))
    if len(bad):
        row = np.array2string(y[bad[0]], threshold=8, separator=", ")
        raise errors.DataError(
            f"{what}: labels of shape {y.shape} are not one-hot rows (row {int(bad[0])} holds "
            f"{' '.join(row.split())}); accepted: class indices (N,) or one-hot rows holding a "
            "single 1 (multi-label or multi-column targets are not argmax'd)")
    return y.argmax(axis=1)


_labels = labels  # the loaders' name for it


def check_images(x, what: str = "data") -> np.ndarray:
    """``x`` as a numpy array of finite numbers with at least one sample (batch first).

    Raises:
        DataError: non-numeric (object, string) arrays, an empty array or no batch axis,
            NaN or Inf values (counted).
    """
    try:
        x = np.asarray(x)
    except (ValueError, TypeError) as e:  # ragged nested lists
        raise errors.DataError(f"{what} is not an array of images ({e})") from e
    if x.dtype.kind not in "biuf":
        raise errors.DataError(f"{what} has dtype {x.dtype}; accepted: numeric images")
    if x.ndim < 2 or len(x) == 0:
        raise errors.DataError(
            f"{what} has shape {x.shape}; accepted: at least one sample, batch first")
    if x.dtype.kind == "f":
        # Checked in the dtype native code receives: float64 1e300 is finite here and Inf
        # in float32, which crashes the converter's calibration.
        with np.errstate(over="ignore"):
            finite = np.isfinite(x.astype(np.float32, copy=False))
        if not finite.all():
            n_nan, n_inf = int(np.isnan(x).sum()), int(np.isinf(x).sum())
            big = np.isfinite(x) & ~finite
            beyond = (f" and {int(big.sum())} beyond float32's range (e.g. {x[big][0]:g}; the "
                      "model computes in float32)") if big.any() else ""
            raise errors.DataError(
                f"{what} holds {n_nan} NaN and {n_inf} Inf values{beyond} (in "
                f"{int((~finite.reshape(len(x), -1).all(1)).sum())} samples); accepted: "
                "finite float32 numbers")
    return x


def check_data(splits, num_classes: Optional[int] = None,
               input_shape: Optional[Sequence[Optional[int]]] = None,
               names: Sequence[str] = ("train", "validation", "test"),
               task: str = "classification"):
    """Checks labelled splits before any training or native code sees them; returns them.

    Each split must hold finite numeric images (batch first, at least one), as many integer
    labels in [0, ``num_classes``) (or in [0, max+1) when not given), with the same sample
    shape in every split and, with ``input_shape``, the model's input shape. The training
    and validation splits need two classes at least (every decision is taken on the latter).
    For ``task`` "regression" the labels are float targets instead (``targets``: finite, the
    same number of columns in every split) and no class rule applies. Float images become
    float32; integer inputs (token ids) stay integers (int32 where they fit). Float (or
    uint8) images whose values span 0..255 get a warning (the model gets them as they are;
    nothing is rescaled).

    Args:
        splits: ``DataSplits`` or any sequence of (x, y) pairs named by ``names``.
        num_classes: classes the model has (its output width), if known.
        input_shape: the model input shape (batch first), if known.
        task: "classification" (and "binary": 0/1 class labels) or "regression".

    Raises:
        DataError: naming the split and the bad value.
    """
    regression = task == "regression"
    shape = columns = None
    checked = []
    pixels = []  # float or uint8 images (uint8 is read as int32 below, like token ids)
    for name, (x, y) in zip(names, splits):
        uint8 = np.asarray(x).dtype == np.uint8
        x = check_images(x, f"{name} images")
        if uint8 or x.dtype.kind == "f":
            pixels.append(x)
        y = targets(y, f"{name} targets") if regression else labels(y, f"{name} labels")
        if len(y) != len(x):
            raise errors.DataError(f"the {name} split has {len(x)} images but {len(y)} labels")
        if regression:
            width = y.shape[1] if y.ndim == 2 else 1
            if columns is not None and width != columns:
                raise errors.DataError(
                    f"the {name} split has {width} target columns but {names[0]} has {columns}")
            columns = width
        elif y.min() < 0 or (num_classes is not None and y.max() >= num_classes):
            top = f"{num_classes - 1}" if num_classes is not None else "N-1"
            bad = y.min() if y.min() < 0 else y.max()
            raise errors.DataError(
                f"the {name} split has label {int(bad)}; accepted: class indices 0..{top}"
                + (f" (the model has {num_classes} outputs)" if num_classes is not None else ""))
        if shape is not None and x.shape[1:] != shape:
            raise errors.DataError(
                f"the {name} split has sample shape {x.shape[1:]} but {names[0]} has {shape}")
        shape = x.shape[1:]
        if input_shape is not None:
            check_fits(x, input_shape, f"the {name} split")
        checked.append((_inputs(x), y))
    if regression:
        pass
    elif checked and len(np.unique(checked[0][1])) < 2:
        raise errors.DataError(
            f"the {names[0]} labels hold one class ({int(checked[0][1][0])}); accepted: at "
            "least 2 classes")
    for name, (_, y) in zip(names, checked):
        # every decision is taken on the validation split
        if not regression and name == "validation" and len(np.unique(y)) < 2:
            raise errors.DataError(
                f"the validation labels hold one class ({int(y[0])}) in {len(y)} samples, and "
                "every decision is taken on them; accepted: at least 2 classes (a larger "
                "validation_fraction, more data, or an x_val/y_val of several classes)")
    top = max(float(x.max()) for x in pixels) if pixels else 0.0
    if 2.0 < top <= 255.0 and all(float(x.min()) >= 0 for x in pixels):
        warnings.warn(f"images range 0..{top:g} (pixels?), not [0, 1]; they are used as they "
                      "are: scale them (e.g. x / 255) if the model expects [0, 1]",
                      UserWarning, stacklevel=2)
    return type(splits)(*checked) if isinstance(splits, DataSplits) else tuple(checked)


def check_token_ids(x, model, what: str = "data") -> None:
    """Raises DataError where integer inputs ``x`` (token ids) index outside an Embedding that
    the model's input feeds directly: ids must lie in [0, input_dim) (TensorFlow would fail
    deep in a lookup, the converter's GATHER with "index out of bounds")."""
    x = np.asarray(x) if isinstance(x, (np.ndarray, list)) else None
    if x is None or x.dtype.kind not in "iu" or not x.size or not hasattr(model, "inputs"):
        return
    names = {t.name for t in model.inputs}
    for layer in model.layers:
        try:
            fed = isinstance(layer, keras.layers.Embedding) and layer.input.name in names
        except (AttributeError, ValueError, RuntimeError):  # a layer used twice: no one input
            fed = False
        if fed and (x.min() < 0 or x.max() >= layer.input_dim):
            bad = int(x.min() if x.min() < 0 else x.max())
            raise errors.DataError(
                f"{what}: token id {bad} is outside Embedding {layer.name!r}'s range; accepted: "
                f"ids 0..{layer.input_dim - 1} (its input_dim {layer.input_dim})")


def check_fits(x: np.ndarray, input_shape: Sequence[Optional[int]], what: str = "data") -> None:
    """Raises DataError unless images ``x`` fit a model input of ``input_shape`` (batch first)."""
    want = tuple(input_shape)[1:]
    got = tuple(np.shape(x))[1:]
    if len(want) != len(got) or any(w is not None and w != g for w, g in zip(want, got)):
        raise errors.DataError(
            f"{what} has sample shape {got} but the model expects {tuple(want)}"
        )


def as_input_dtype(x, dtype=None, what: str = "data") -> np.ndarray:
    """``x`` (numeric, batch first) in the dtype a model input takes, checked after the cast.

    Integer and bool inputs (token ids, masks) stay integers: they are never cast to float.
    Float data becomes float32 (then checked finite: float64 1e300 is Inf in float32). With
    ``dtype`` (the model input's), integer data for a float input becomes float32, whole-number
    floats or integers for an integer input are cast to it when every value fits its range.

    Raises:
        DataError: non-numeric data, non-finite floats, fractions or out-of-range values for an
            integer input.
    """
    x = np.asarray(x)
    if x.dtype.kind not in "biuf":
        raise errors.DataError(f"{what} has dtype {x.dtype}; accepted: numbers")
    want = None if dtype is None else np.dtype(dtype)
    if want is None:
        want = np.dtype(np.float32) if x.dtype.kind == "f" else x.dtype
    if want.kind == "f":
        x = x.astype(np.float32)
    elif x.dtype != want:
        if want.kind == "b":
            bad = ~np.isin(x, (0, 1))
        else:
            info = np.iinfo(want)
            bad = ~np.isfinite(x) | (x < info.min) | (x > info.max) if x.dtype.kind == "f" else (
                (x < info.min) | (x > info.max))
            if x.dtype.kind == "f":
                bad |= np.isfinite(x) & (x != np.round(np.nan_to_num(x)))
        if np.any(bad):
            example = x[bad].reshape(-1)[0].item()
            raise errors.DataError(
                f"{what}: {int(np.sum(bad))} values (e.g. {example!r}) do not fit "
                f"the model's {want.name} input; accepted: whole numbers in its range")
        x = x.astype(want)
    return check_images(x, what)


def representative_dataset(x, num_samples: int = 200,
                           dtype=None) -> Callable[[], Iterator[list]]:
    """The converter's ``representative_dataset``: one sample per step, in the input's dtype.

    Float samples are float32; integer and bool samples (token ids, masks) stay integers (the
    converter and the quantizer calibrate those correctly only in the input's own dtype).

    Args:
        x: images as a numpy array, a ``tf.data.Dataset`` of images or (image, label) pairs,
            or the ``Splits`` tuple our loaders return (the training images are used).
        num_samples: how many samples to yield at most.
        dtype: the model input's dtype, if known (``as_input_dtype``).

    Raises:
        DataError: non-numeric, empty or non-finite (NaN, Inf) samples, or values that do not
            fit an integer input.
    """
    if num_samples < 1:
        raise errors.DataError(f"num_samples={num_samples!r}; accepted: an integer >= 1")
    if isinstance(x, tuple) and len(x) == 2 and isinstance(x[0], tuple):  # Splits
        x = x[0][0]
    if hasattr(x, "element_spec"):
        x = from_dataset(x, limit=num_samples)[0]
    # The converter's int8 calibration is native code in this process: Inf there is a
    # segfault, NaN an infinite scale. Only finite numbers reach it (checked after the cast).
    head = x[:num_samples] if isinstance(x, (np.ndarray, list, tuple)) else x
    try:
        head = np.asarray(head)
    except (ValueError, TypeError) as e:  # ragged nested lists
        raise errors.DataError(f"representative_data is not an array of samples ({e})") from e
    samples = as_input_dtype(head, dtype, "representative_data")[:num_samples]

    def generate():
        for sample in samples:
            yield [sample[None]]

    return generate


_DATASETS = os.path.join(os.path.dirname(__file__), "datasets")


def _bundled_npz(name: str, seed: int, x_dtype) -> tuple[Splits, tuple]:
    """A bundled ``x_train/y_train/x_test/y_test/classes`` .npz; the training order by ``seed``."""
    with np.load(os.path.join(_DATASETS, name)) as f:
        arrays = {k: f[k] for k in f.files}
    order = np.random.default_rng(seed).permutation(len(arrays["y_train"]))
    train = (arrays["x_train"][order].astype(x_dtype), arrays["y_train"][order].astype(np.int32))
    test = (arrays["x_test"].astype(x_dtype), arrays["y_test"].astype(np.int32))
    return (train, test), arrays


def load_text(seed: int = 0) -> Splits:
    """The bundled fortune-cookie topics: 3,248 texts in 6 classes (see datasets/README.md).

    Texts from Debian's ``fortunes`` (categories computers, politics, science, art, law, food),
    as lower-cased words mapped to ids of a 2,000-word vocabulary built on the training split
    (``text_vocabulary()``; 0 pads, 1 is a word outside it), padded or cut to 64 ids.

    Returns:
        ((x_train, y_train), (x_test, y_test)): int32 token ids (N, 64) and int32 labels; 2,598
        training texts (their order shuffled by ``seed``) and a fixed test split of 650.
    """
    return _bundled_npz("fortunes_text.npz", seed, np.int32)[0]


def text_vocabulary() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(words by id, class names) of ``load_text``: ``words[i]`` is the word of token id i."""
    with np.load(os.path.join(_DATASETS, "fortunes_text.npz")) as f:
        return tuple(str(w) for w in f["vocabulary"]), tuple(str(c) for c in f["classes"])


def load_keywords(seed: int = 0) -> Splits:
    """The bundled keyword-spotting MFCCs: 12 classes of one-second clips (see datasets/README.md).

    Words spoken by espeak-ng with varied voices, speeds, pitches and noise; classes
    ``KEYWORDS_CLASSES`` ("silence", "unknown" and ten keywords). Features are 49 frames x 10
    MFCCs, standardized per coefficient on the training split. The test clips are spoken by
    voice variants that no training clip uses.

    Returns:
        ((x_train, y_train), (x_test, y_test)): float32 features (N, 49, 10, 1) and int32 labels;
        2,400 training clips (their order shuffled by ``seed``) and 600 test clips.
    """
    (train, test), arrays = _bundled_npz("keywords_mfcc.npz", seed, np.float32)
    step = float(arrays["step"])
    return (train[0] / step, train[1]), (test[0] / step, test[1])


KEYWORDS_CLASSES = ("silence", "unknown", "yes", "no", "up", "down", "left", "right", "on", "off",
                    "stop", "go")
TEXT_CLASSES = ("computers", "politics", "science", "art", "law", "food")  # load_text's labels

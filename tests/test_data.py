import numpy as np
import pytest
import tensorflow as tf

from tfcompress import data, errors, keras


def test_load_digits_is_the_full_fixed_stratified_set(digits):
    (xtr, ytr), (xte, yte) = digits
    assert len(xtr) + len(xte) == 1797 and len(xte) == 359
    assert xtr.shape[1:] == (8, 8, 1) and xtr.dtype == np.float32
    assert 0.0 <= xtr.min() and xtr.max() <= 1.0 and xtr.max() == 1.0
    assert set(np.unique(yte)) == set(range(10))
    # stratified: each class holds about 20% of its images in the test split
    share = np.bincount(yte, minlength=10) / (np.bincount(ytr, minlength=10) + np.bincount(yte, minlength=10))
    assert np.all(np.abs(share - 0.2) < 0.01)
    (xtr2, _), (xte2, _) = data.load_digits()
    np.testing.assert_array_equal(xte, xte2)
    np.testing.assert_array_equal(xtr, xtr2)


def test_npz_round_trip_and_errors(tmp_path, digits):
    (xtr, ytr), (xte, yte) = digits
    path = tmp_path / "d.npz"
    np.savez(path, x_train=xtr, y_train=np.eye(10)[ytr], x_test=xte, y_test=yte)
    (a, b), (c, d) = data.load_npz(str(path))
    np.testing.assert_array_equal(b, ytr)  # one-hot labels become integers
    np.testing.assert_array_equal(c, xte)
    np.savez(tmp_path / "bad.npz", x_train=xtr, y_train=ytr)
    with pytest.raises(errors.DataError, match=r"lacks arrays \['x_test', 'y_test'\]"):
        data.load_npz(str(tmp_path / "bad.npz"))
    with pytest.raises(errors.DataError, match="does not exist"):
        data.load_npz(str(tmp_path / "missing.npz"))


def test_image_folder(tmp_path):
    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        for i in range(5):
            keras.utils.save_img(str(tmp_path / cls / f"{i}.png"), rng.integers(0, 255, (12, 12, 3)))
    ((xtr, ytr), (xte, yte)), names = data.load_image_folder(str(tmp_path), (12, 12))
    assert names == ("cat", "dog")
    assert len(xtr) + len(xte) == 10 and xtr.shape[1:] == (12, 12, 3)
    assert 0 <= xtr.min() and xtr.max() <= 1.0
    with pytest.raises(errors.DataError, match="does not exist"):
        data.load_image_folder(str(tmp_path / "nope"), (12, 12))


@pytest.mark.parametrize("batch", [None, 7])
def test_from_dataset_batched_or_not(digits, batch):
    (x, y), _ = digits
    ds = tf.data.Dataset.from_tensor_slices((x[:20], y[:20]))
    if batch:
        ds = ds.batch(batch)
    xs, ys = data.from_dataset(ds)
    np.testing.assert_array_equal(xs, x[:20])
    np.testing.assert_array_equal(ys, y[:20])
    assert len(data.from_dataset(ds, limit=9)[0]) == 9


@pytest.mark.parametrize("kind", ["numpy", "dataset", "images_only", "splits"])
def test_representative_dataset_from_any_source(digits, kind):
    (x, y), _ = digits
    source = {
        "numpy": x,
        "dataset": tf.data.Dataset.from_tensor_slices((x, y)).batch(32),
        "images_only": tf.data.Dataset.from_tensor_slices(x),
        "splits": digits,
    }[kind]
    samples = list(data.representative_dataset(source, num_samples=50)())
    assert len(samples) == 50
    assert samples[0][0].shape == (1, 8, 8, 1) and samples[0][0].dtype == np.float32
    np.testing.assert_array_equal(samples[3][0][0], x[3])


def test_check_fits_names_shapes():
    with pytest.raises(errors.DataError, match=r"sample shape \(9, 9, 1\).*expects \(8, 8, 1\)"):
        data.check_fits(np.zeros((2, 9, 9, 1)), (None, 8, 8, 1))


def test_check_data_passes_the_loaders_splits_unchanged(digits):
    (xtr, ytr), (xte, yte) = digits
    train, val = data.split_validation((xtr, ytr))
    splits = data.check_data(data.DataSplits(train, val, (xte, yte)), num_classes=10,
                             input_shape=(None, 8, 8, 1))
    assert isinstance(splits, data.DataSplits)
    np.testing.assert_array_equal(splits.test[0], xte)
    np.testing.assert_array_equal(splits.train[1], train[1])


def test_representative_dataset_refuses_non_finite(digits):
    (x, _), _ = digits
    bad = x[:10].copy()
    bad[4, 1, 1, 0] = -np.inf
    with pytest.raises(errors.DataError, match="representative_data holds 0 NaN and 1 Inf"):
        data.representative_dataset(bad)
    assert len(list(data.representative_dataset(bad, num_samples=4)())) == 4  # the Inf unused


def test_load_text_is_fixed_int32_token_ids():
    (xtr, ytr), (xte, yte) = data.load_text()
    words, classes = data.text_vocabulary()
    assert xtr.dtype == np.int32 and xte.dtype == np.int32 and ytr.dtype == np.int32
    assert xtr.shape == (2598, 64) and xte.shape == (650, 64) and len(classes) == 6
    assert len(words) == 2000 and words[:2] == ("<pad>", "<unk>") and words[2] == "the"
    assert classes == data.TEXT_CLASSES
    assert 0 <= min(xtr.min(), xte.min()) and max(xtr.max(), xte.max()) == len(words) - 1
    assert np.array_equal(np.bincount(yte), [210, 141, 125, 93, 41, 40])
    # ids then padding: no id after the first pad, and every text holds a word
    first_pad = np.argmax(np.concatenate([xte, np.zeros((len(xte), 1), np.int32)], 1) == 0, 1)
    assert all((row[n:] == 0).all() and n > 0 for row, n in zip(xte, first_pad))
    (xtr2, ytr2), (xte2, _) = data.load_text(seed=1)  # the seed orders training only
    np.testing.assert_array_equal(xte, xte2)
    assert not np.array_equal(ytr, ytr2)
    assert sorted(map(bytes, xtr)) == sorted(map(bytes, xtr2))


def test_load_text_is_learnable_beyond_the_majority_class():
    (xtr, ytr), (xte, yte) = data.load_text()
    keras.utils.set_random_seed(0)
    from tfcompress import models
    model = models.text_bow(xtr.shape[1:], 6)
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
    model.fit(xtr, ytr, epochs=8, batch_size=32, verbose=0)
    accuracy = np.mean(model.predict(xte, verbose=0).argmax(-1) == yte)
    assert accuracy > np.bincount(yte).max() / len(yte) + 0.15, accuracy  # majority: 0.32


def test_load_keywords_is_standardized_balanced_and_separable():
    (xtr, ytr), (xte, yte) = data.load_keywords()
    assert xtr.shape == (2400, 49, 10, 1) and xte.shape == (600, 49, 10, 1)
    assert xtr.dtype == np.float32 and len(data.KEYWORDS_CLASSES) == 12
    assert np.array_equal(np.bincount(ytr), [200] * 12) and np.array_equal(np.bincount(yte), [50] * 12)
    # standardized per coefficient on the training split (clipped at 4 deviations)
    assert np.all(np.abs(xtr.mean(axis=(0, 1, 3))) < 0.02)
    assert np.all(np.abs(xtr.std(axis=(0, 1, 3)) - 1) < 0.05) and np.abs(xtr).max() <= 4.0
    # the classes differ: nearest class mean of the training split beats chance (1/12) 3x on
    # test clips from voices that no training clip uses
    means = np.stack([xtr[ytr == k].reshape(-1, 490).mean(0) for k in range(12)])
    dist = ((xte.reshape(-1, 1, 490) - means[None]) ** 2).sum(-1)
    assert np.mean(dist.argmin(1) == yte) > 3 / 12

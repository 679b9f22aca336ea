"""benchmarks/_real_models.py reads the mtcnn wheel's weights as data: a joblib pickle read by an
unpickler that builds numpy arrays and refuses any other class (no network: the pickles are made
here; the LZ4 frame around them is the ``lz4`` package's)."""

import io
import os
import pickle
import sys
import types

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))
import _real_models as real  # noqa: E402


def _joblib_pickle(arrays, wrapper) -> bytes:
    """A joblib-style pickle: a list of wrappers, each array's bytes after its BUILD."""
    body = b""
    for a in arrays:
        w = wrapper()
        w.__dict__.update(subclass=np.ndarray, shape=a.shape, order="C", dtype=a.dtype,
                          allow_mmap=False, numpy_array_alignment_bytes=16)
        buf = io.BytesIO()
        p = pickle.Pickler(buf, 2)
        p.fast = True  # no memo: the pieces are concatenated
        p.dump(w)
        body += buf.getvalue()[2:-1] + b"\x03" + b"\x00" * 3 + a.tobytes()
    return b"\x80\x02](" + body + b"e."


def test_joblib_arrays_read_back_and_code_refused(monkeypatch):
    # joblib's NumpyArrayWrapper as the pickle names it (joblib is not installed here)
    wrapper = type("NumpyArrayWrapper", (), {"__module__": "joblib.numpy_pickle"})
    module = types.ModuleType("joblib.numpy_pickle")
    module.NumpyArrayWrapper = wrapper
    monkeypatch.setitem(sys.modules, "joblib", types.ModuleType("joblib"))
    monkeypatch.setitem(sys.modules, "joblib.numpy_pickle", module)
    arrays = [np.arange(12, dtype=np.float32).reshape(3, 4), np.array([-1.5, 2.0], np.float64)]
    read = real.pickled_arrays(_joblib_pickle(arrays, wrapper))
    assert [r.dtype for r in read] == [a.dtype for a in arrays]
    for r, a in zip(read, arrays):
        np.testing.assert_array_equal(r, a)
    hostile = pickle.dumps(os.getcwd, 2)  # a callable from a module other than numpy's
    with pytest.raises(pickle.UnpicklingError, match="refused"):
        real.pickled_arrays(hostile)

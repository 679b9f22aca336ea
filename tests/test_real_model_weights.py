"""benchmarks/_real_models.py reads the mtcnn wheel's weights as data: an LZ4 frame decoded in
Python and a joblib pickle read by an unpickler that builds numpy arrays and refuses any other
class (no network: frames and pickles are made here)."""

import io
import os
import pickle
import struct
import sys
import types

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))
import _real_models as real  # noqa: E402


def _frame(*blocks) -> bytes:
    """An LZ4 frame (linked blocks, no checksums) of (payload, compressed?) blocks."""
    out = b"\x04\x22\x4d\x18\x40\x40\x00"
    for payload, compressed in blocks:
        out += struct.pack("<I", len(payload) | (0 if compressed else 0x80000000)) + payload
    return out + b"\x00\x00\x00\x00"


def test_lz4_frame_literals_overlapping_matches_and_raw_blocks():
    literals = b"0123456789ABCDEFGHIJ"  # 20 literals: length 15 + 5 in an extra byte
    block = (bytes([0xFF, 5]) + literals + b"\x14\x00" + bytes([3])  # match 22 bytes, 20 back
             + b"\x35abc\x03\x00"  # 3 literals, then 9 bytes 3 back (overlapping)
             + b"\x20xy")  # the last sequence: literals only
    raw = b"raw block"
    decoded = real._lz4_frame(_frame((block, True), (raw, False)))
    assert decoded == literals + literals + b"01" + b"abc" + b"abcabcabc" + b"xy" + raw


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


def test_joblib_arrays_read_back_and_code_refused(monkeypatch, tmp_path):
    # joblib's NumpyArrayWrapper as the pickle names it (joblib is not installed here)
    wrapper = type("NumpyArrayWrapper", (), {"__module__": "joblib.numpy_pickle"})
    module = types.ModuleType("joblib.numpy_pickle")
    module.NumpyArrayWrapper = wrapper
    monkeypatch.setitem(sys.modules, "joblib", types.ModuleType("joblib"))
    monkeypatch.setitem(sys.modules, "joblib.numpy_pickle", module)
    arrays = [np.arange(12, dtype=np.float32).reshape(3, 4), np.array([-1.5, 2.0], np.float64)]
    path = tmp_path / "w.lz4"
    path.write_bytes(_frame((_joblib_pickle(arrays, wrapper), False)))
    read = real.joblib_arrays(str(path))
    assert [r.dtype for r in read] == [a.dtype for a in arrays]
    for r, a in zip(read, arrays):
        np.testing.assert_array_equal(r, a)
    hostile = pickle.dumps(os.getcwd, 2)  # a callable from a module other than numpy's
    path.write_bytes(_frame((hostile, False)))
    with pytest.raises(pickle.UnpicklingError, match="refused"):
        real.joblib_arrays(str(path))

"""The LiteRT interpreter, loaded crash-safely, and the flatbuffer's own tables.

The one module that touches ``ai_edge_litert`` directly: a flatbuffer is first run in a child
process (``verify``), since a corrupt or truncated file can crash the native interpreter and
that must not take the caller's process down; ``interpreter`` then loads it here.

Private API, isolated here: ``Interpreter._get_ops_details`` / ``_get_tensor_details`` are the
only listing of a graph's ops (and of the graph after delegation); checked against
ai-edge-litert 2.3. ``schema_py_generated`` (the flatbuffer schema ai-edge-litert ships) reads
tensor types the interpreter does not show (int4, int2) and carries ``facts``: what made a
flatbuffer (mode, quantizer recipe, per-layer widths), written into its ``metadata`` table so a
result carries them into any process that reads the file.
"""

import atexit
import contextlib
import hashlib
import json
import os
import select
import signal
import struct
import subprocess
import sys
import threading
import time
import zlib
from typing import Optional, Sequence, Union

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.interpreter import Interpreter, OpResolverType

from tfcompress import errors

# ---------------------------------------------------------------- crash-safe loading

# The child: reads length-prefixed flatbuffers from stdin, each followed by a length-prefixed
# JSON spec and the raw bytes of a sample; loads each in the LiteRT interpreter (with and without
# the default delegates), runs it once on zeros at its default shape (ones for an integer input:
# token id 0 is the padding a mask removes, and a text of padding only divides a masked average
# by zero, which an int8 DIV refuses; unless a non-batch input dimension is dynamic: the
# caller's sample gives the shape) and, given a sample, once
# more on it (the first input resized to the sample's shape, as ``predict`` will), answers one
# JSON line each.
_CHILD = r"""
import json, os, struct, sys
out = os.fdopen(os.dup(1), "w")
os.dup2(2, 1)  # native prints must not mix with the answers
import numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType
src = sys.stdin.buffer

def chunk():
    head = src.read(8)
    return None if len(head) < 8 else src.read(struct.unpack("<Q", head)[0])

while True:
    content, spec, raw = chunk(), chunk(), chunk()
    if raw is None:
        break
    spec = json.loads(spec or b"{}")
    try:
        for kind in (OpResolverType.AUTO, OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES):
            it = Interpreter(model_content=content, experimental_op_resolver_type=kind)
            # zeros at the default shape, unless a sample dimension is dynamic: its default
            # (1) is no shape the caller uses (a conv cannot run on 1x1); the sample checks it
            if not any(-1 in list(d["shape_signature"][1:]) for d in it.get_input_details()):
                it.allocate_tensors()
                for d in it.get_input_details():  # ones for integers: id 0 is the padding
                    fill = np.ones if np.issubdtype(d["dtype"], np.integer) else np.zeros
                    it.set_tensor(d["index"], fill(d["shape"], d["dtype"]))
                it.invoke()
                for d in it.get_output_details():
                    it.get_tensor(d["index"])
            if spec:
                d = it.get_input_details()[0]
                if list(d["shape"]) != spec["shape"]:
                    it.resize_tensor_input(d["index"], spec["shape"])
                it.allocate_tensors()
                sample = np.frombuffer(raw, spec["dtype"]).reshape(spec["shape"])
                it.set_tensor(d["index"], sample)
                it.invoke()
                for d in it.get_output_details():
                    it.get_tensor(d["index"])
        answer = {"ok": True}
    except Exception as e:
        answer = {"ok": False, "error": type(e).__name__ + ": " + " ".join(str(e).split())}
    out.write(json.dumps(answer) + "\n")
    out.flush()
"""

_VERIFIED: dict[str, bool] = {}  # sha256 of flatbuffers that ran in the child
_SHARED = {"verifier": None, "lock": threading.Lock()}  # one child reused by verify()


class Verifier:
    """A child process that loads and runs flatbuffers; a crash there is an error here.

    Use as a context manager to check many flatbuffers with one child (restarted after each
    crash); ``verify`` checks one.
    """

    def __init__(self, timeout: float = 120.0):
        self.timeout = timeout
        self._proc = None
        self._buffer = b""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        if self._proc is not None:
            with contextlib.suppress(OSError):
                self._proc.stdin.close()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None

    def check(self, content: bytes, sample: Optional[np.ndarray] = None) -> Optional[str]:
        """None if ``content`` loads and runs; otherwise why not (crash, timeout, error).

        With ``sample`` (the first input's array, batch first, in the input's dtype) the child
        also resizes the first input to its shape and runs it, as the caller is about to.
        """
        if self._proc is None:
            self._buffer = b""
            self._proc = subprocess.Popen(
                [sys.executable, "-c", _CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL)
        try:
            spec, raw = b"", b""
            if sample is not None:
                spec = json.dumps({"shape": [int(d) for d in sample.shape],
                                   "dtype": sample.dtype.name}).encode()
                raw = np.ascontiguousarray(sample).tobytes()
            self._proc.stdin.write(b"".join(struct.pack("<Q", len(part)) + part
                                            for part in (content, spec, raw)))
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # the child died; _answer reports how
        line = self._answer()
        if line is None:
            return self._died()
        answer = json.loads(line)
        return None if answer["ok"] else answer["error"]

    def _answer(self) -> Optional[str]:
        fd = self._proc.stdout.fileno()
        deadline = time.monotonic() + self.timeout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                return None
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode()

    def _died(self) -> str:
        proc, self._proc = self._proc, None
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)  # a crashed child closes its pipe just before it is reaped
        if proc.poll() is None:
            proc.kill()
            proc.wait()
            return f"the LiteRT interpreter did not finish within {self.timeout:g} s"
        code = proc.returncode
        with contextlib.suppress(OSError):
            proc.stdin.close()
        if code < 0:
            with contextlib.suppress(ValueError):
                return f"the LiteRT interpreter crashed ({signal.Signals(-code).name})"
        return f"the LiteRT interpreter ended its process (exit status {code})"


def verify(tflite: Union[bytes, str], timeout: float = 120.0,
           sample: Optional[np.ndarray] = None) -> bytes:
    """Loads and runs the flatbuffer once in a child process; returns its bytes if it works.

    The child is reused between calls (and started again after a crash); a flatbuffer that
    passed is remembered by its SHA-256 (and the sample's shape and dtype), so loading it
    again costs nothing.

    Args:
        tflite: flatbuffer bytes or a path.
        timeout: seconds the child may take.
        sample: the first input array the caller will run (its shape and dtype, batch
            first): the child runs it too, after its run on zeros at the default shape.

    Raises:
        InvalidTFLiteError: the file is missing, or the interpreter rejected it, crashed on it
            or hung.
    """
    content = load_flatbuffer(tflite)
    digest = hashlib.sha256(content).hexdigest()
    if sample is not None:
        digest += f"/{tuple(sample.shape)}/{sample.dtype.name}"
    if digest in _VERIFIED:
        return content
    if len(content) < 8 or content[4:8] != b"TFL3":
        raise errors.InvalidTFLiteError(
            f"not a TFLite flatbuffer ({len(content)} bytes, file identifier "
            f"{content[4:8]!r}; accepted: identifier b'TFL3')")
    with _SHARED["lock"]:
        if _SHARED["verifier"] is None:
            _SHARED["verifier"] = Verifier(timeout)
            atexit.register(_SHARED["verifier"].close)
        _SHARED["verifier"].timeout = timeout
        problem = _SHARED["verifier"].check(content, sample)
    if problem and sample is not None and "gather index out of bounds" in problem:
        raise errors.DataError(
            f"the data makes the flatbuffer's lookup fail ({problem}): its "
            "integer inputs (token ids?) index outside the embedding table; accepted: ids in "
            "0..input_dim-1")
    if problem:
        raise errors.InvalidTFLiteError(f"the flatbuffer does not load or run: {problem}")
    if len(_VERIFIED) > 512:
        _VERIFIED.clear()
    _VERIFIED[digest] = True
    return content


def load_flatbuffer(tflite: Union[bytes, str]) -> bytes:
    """The bytes of a flatbuffer given as bytes or a path."""
    if isinstance(tflite, (bytes, bytearray, memoryview)):
        return bytes(tflite)
    path = os.fspath(tflite)
    if not os.path.isfile(path):
        raise errors.InvalidTFLiteError(
            f"TFLite file {path!r} " + ("is a folder" if os.path.isdir(path) else "does not exist")
            + "; accepted: a .tflite file")
    with open(path, "rb") as f:
        return f.read()


def interpreter(tflite: Union[bytes, str], num_threads: int = 1, *, delegates: bool = True,
                allocate: bool = True, experimental_delegates=None,
                preserve_all_tensors: bool = False) -> Interpreter:
    """A LiteRT interpreter for a verified flatbuffer; a bad flatbuffer is a clear error.

    Args:
        delegates: apply the default delegate (XNNPACK); False runs the builtin kernels only.
        allocate: allocate tensors (and so apply the delegates) before returning.
        experimental_delegates: delegates from ``load_delegate`` to apply.
        preserve_all_tensors: keep every intermediate tensor readable after ``invoke``.

    Raises:
        InvalidTFLiteError: the file is missing, corrupt, or crashes the interpreter.
    """
    content = verify(tflite)
    kind = OpResolverType.AUTO if delegates else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    try:
        interp = Interpreter(model_content=content, num_threads=num_threads,
                             experimental_op_resolver_type=kind,
                             experimental_delegates=experimental_delegates,
                             experimental_preserve_all_tensors=preserve_all_tensors)
        if allocate:
            interp.allocate_tensors()
    except (ValueError, RuntimeError) as e:
        raise errors.InvalidTFLiteError(f"the LiteRT interpreter rejected the flatbuffer: {e}")
    return interp


def io_details(details: Sequence[dict]) -> list[dict]:
    """JSON-ready name, shape, dtype, scale and zero point of interpreter input/output details."""
    out = []
    for d in details:
        scale, zero_point = d["quantization"]
        out.append({
            "name": d["name"],
            "shape": [int(v) for v in d["shape_signature"]],
            "dtype": np.dtype(d["dtype"]).name,
            "scale": float(scale),
            "zero_point": int(zero_point),
        })
    return out


def ops(interp: Interpreter) -> list[dict]:
    """The interpreter's op list (after delegation: one ``DELEGATE`` op per partition)."""
    return interp._get_ops_details()  # noqa: SLF001  (no public listing of ops)


def tensor_name(interp: Interpreter, index: int) -> str:
    """The name of tensor ``index`` of the main subgraph."""
    return interp._get_tensor_details(index, 0)["name"]  # noqa: SLF001


def tensor_types(flatbuffer: bytes) -> dict:
    """{tensor index: type name} of the main subgraph, read from the flatbuffer's own tables.

    Names are numpy-like (``float32``, ``int8``) plus those numpy lacks (``int4``, ``int2``).
    """
    names = {v: k.lower() for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    graph = schema.Model.GetRootAsModel(flatbuffer, 0).Subgraphs(0)
    return {i: names.get(graph.Tensors(i).Type(), "") for i in range(graph.TensorsLength())}


# ---------------------------------------------------------------- facts in the metadata table

FACTS = b"tfcompress"  # the metadata entry's name


def read_facts(tflite: Union[bytes, str]) -> dict:
    """The facts ``with_facts`` wrote into a flatbuffer ({} if none)."""
    content = load_flatbuffer(tflite)
    try:
        model = schema.Model.GetRootAsModel(content, 0)
        for i in range(model.MetadataLength()):
            entry = model.Metadata(i)
            if entry.Name() == FACTS:
                data = bytes(model.Buffers(entry.Buffer()).DataAsNumpy())
                return json.loads(zlib.decompress(data))
    except Exception:  # noqa: BLE001  (a corrupt table: no facts; verify() says why)
        return {}
    return {}


def with_facts(flatbuffer: bytes, **facts) -> bytes:
    """The flatbuffer with ``facts`` (JSON values) merged into its ``tfcompress`` metadata.

    The model itself is untouched: the facts are one more buffer and metadata entry, which
    the interpreter ignores; they are stored zlib-compressed (tens to a few hundred bytes:
    they count in the file's size, and a size budget sees them).
    """
    model = schema.ModelT.InitFromPackedBuf(flatbuffer, 0)
    for buffer in model.buffers:  # data stored after the flatbuffer (offset, size): inline it,
        if buffer.offset > 1:     # since repacking moves the end of the flatbuffer
            buffer.data = np.frombuffer(
                flatbuffer, np.uint8, count=buffer.size, offset=buffer.offset).copy()
            buffer.offset = buffer.size = 0
    merged = {**read_facts(flatbuffer), **facts}
    text = json.dumps(merged, sort_keys=True, separators=(",", ":"), default=str)
    data = np.frombuffer(zlib.compress(text.encode(), 9), np.uint8)
    model.metadata = [m for m in (model.metadata or []) if m.name != FACTS]
    buffer = schema.BufferT()
    buffer.data = data
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name, entry.buffer = FACTS, len(model.buffers) - 1
    model.metadata.append(entry)
    builder = flatbuffers.Builder(len(flatbuffer) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())

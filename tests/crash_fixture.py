"""Finds a flatbuffer that crashes the LiteRT interpreter (the fixture tests/data/crash.tflite).

    PYTHONPATH=$PWD python tests/crash_fixture.py --seconds 300   # writes tests/data/crash.tflite
    PYTHONPATH=$PWD python tests/crash_fixture.py --resized       # tests/data/crash_resized.tflite

Mutates a tiny float32 flatbuffer (byte flips, overwritten runs, truncation, extreme 32-bit
words in the tables, as benchmarks/convert_modes.py does) and runs each in a child process
(``_litert.Verifier``); the first whose child dies by a signal is kept, then shrunk (bytes
reset to the original one at a time while the child still dies).
"""

import argparse
import os
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURE = os.path.join(HERE, "data", "crash.tflite")


def source_flatbuffer() -> bytes:
    """A tiny float32 model: Conv2D(2, 3) -> Flatten -> Dense(3) on 4x4x1 inputs."""
    import tfcompress
    from tfcompress import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Conv2D(2, 3),
                              keras.layers.Flatten(), keras.layers.Dense(3)])
    return tfcompress.convert(model, "float32")


def mutate(content: bytes, rng, kind: int) -> bytes:
    data = bytearray(content)
    if kind == 0:  # flip 1-8 bytes anywhere
        for pos in rng.integers(0, len(data), rng.integers(1, 9)):
            data[pos] ^= int(rng.integers(1, 256))
    elif kind == 1:  # overwrite 8 bytes of the tables
        start = int(rng.integers(8, len(data) - 16))
        data[start:start + 8] = rng.integers(0, 256, 8, dtype=np.uint8).tobytes()
    elif kind == 2:  # truncate
        data = data[: int(rng.integers(8, len(data)))]
    else:  # 1-3 aligned 32-bit words set to extreme values
        for _ in range(rng.integers(1, 4)):
            pos = int(rng.integers(8, len(data) - 4)) & ~3
            value = int(rng.choice([0, 1, 2, 3, 255, 0x10000, 0x7FFFFFFF, 0xFFFFFFFF,
                                    int(rng.integers(0, 2**32))]))
            data[pos:pos + 4] = value.to_bytes(4, "little")
    return bytes(data)


RESIZED = os.path.join(HERE, "data", "crash_resized.tflite")
BATCH = np.linspace(-3, 3, 7 * 16, dtype=np.float32).reshape(7, 4, 4, 1)  # the resized run


def _died(problem) -> bool:
    return problem is not None and ("crashed" in problem or "ended its process" in problem)


def crashes(verifier, content: bytes, resized: bool = False) -> bool:
    """Whether the child dies on ``content`` (resized: only on the batch of 7, not before)."""
    if not resized:
        return _died(verifier.check(content))
    return verifier.check(content) is None and _died(verifier.check(content, BATCH))


def shrink(verifier, original: bytes, crasher: bytes, resized: bool = False) -> bytes:
    """Resets differing bytes to the original while the child still crashes."""
    data = bytearray(crasher)
    for pos in [i for i in range(min(len(data), len(original))) if data[i] != original[i]]:
        trial = bytearray(data)
        trial[pos] = original[pos]
        if crashes(verifier, bytes(trial), resized):
            data = trial
    return bytes(data)


def find_crasher(seconds: float = 240.0, seed: int = 0, resized: bool = False):
    """(crashing flatbuffer, mutants tried) or (None, tried) after ``seconds``.

    ``resized``: one that runs at its default shape but crashes on a batch of 7.
    """
    from tfcompress._compat.litert import Verifier

    original = source_flatbuffer()
    rng = np.random.default_rng(seed)
    deadline, tried = time.monotonic() + seconds, 0
    with Verifier(timeout=10) as verifier:
        while time.monotonic() < deadline:
            candidate = mutate(original, rng, tried % 4 if tried % 2 else 3)
            tried += 1
            if crashes(verifier, candidate, resized):
                return shrink(verifier, original, candidate, resized), tried
    return None, tried


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=240.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resized", action="store_true",
                        help="find one that crashes only once its input is resized")
    args = parser.parse_args()
    start = time.monotonic()
    found, tried = find_crasher(args.seconds, args.seed, args.resized)
    out = RESIZED if args.resized else FIXTURE
    took = time.monotonic() - start
    if found is None:
        print(f"no crasher in {tried} mutants ({took:.0f} s)")
    else:
        with open(out, "wb") as f:
            f.write(found)
        print(f"crasher after {tried} mutants ({took:.0f} s): {len(found)} bytes -> {out}")

"""Builds tfcompress/datasets/keywords_mfcc.npz: keyword spotting on synthetic speech.

Debian's espeak-ng speaks the ten Speech Commands keywords and twenty-five other words (class
"unknown") with varied voices, voice variants, speeds, pitches and amplitudes; sox resamples each
clip to 16 kHz (and adds reverberation to some). Each clip is trimmed, placed at a random offset
in one second, mixed with white or brown noise at 5-30 dB SNR; class "silence" is noise alone.
Features are the "Hello Edge" keyword-spotting MFCCs, computed with tf.signal: 30 ms windows
every 20 ms (49 frames), 40 mel bins over 20-4000 Hz, the first 10 cepstral coefficients.
They are standardized per coefficient with the training split's mean and deviation and stored
as int8 steps of 1/32 (the loader divides by 32; values beyond +-4 deviations are clipped).

The test split holds the voice variants named in TEST_VARIANTS only: test clips come from
"speakers" the model never heard. This script is kept for reproduction and never runs at test
time (see tfcompress/datasets/README.md):

    apt-get install espeak-ng sox
    .venv/bin/python scripts/make_keywords_data.py
"""

import argparse
import os
import subprocess

import numpy as np

KEYWORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
CLASSES = ("silence", "unknown") + KEYWORDS
UNKNOWN_WORDS = ("bed", "bird", "cat", "dog", "eight", "five", "four", "happy", "house", "marvin",
                 "nine", "one", "seven", "sheila", "six", "three", "tree", "two", "wow", "zero",
                 "backward", "forward", "follow", "learn", "visual")
VOICES = ("en-gb", "en-us", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-rp", "en-gb-x-gbcwmd",
          "en-029", "en-us-nyc")
TRAIN_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m7", "f1", "f2", "f3", "f5", "klatt", "klatt2",
                  "croak", "")
TEST_VARIANTS = ("m6", "f4", "klatt3")
RATE, CLIP = 16000, 16000
STEP = 32.0  # int8 storage: value * STEP, clipped to [-128, 127]


def speak(word: str, voice: str, variant: str, speed: int, pitch: int, amplitude: int,
          reverb: int) -> np.ndarray:
    """One spoken word as float32 samples at 16 kHz in [-1, 1]."""
    name = f"{voice}+{variant}" if variant else voice
    wav = subprocess.run(
        ["espeak-ng", "-v", name, "-s", str(speed), "-p", str(pitch), "-a", str(amplitude),
         "--stdout", word], check=True, capture_output=True).stdout
    effects = ["reverb", str(reverb)] if reverb else []
    raw = subprocess.run(
        ["sox", "-t", "wav", "-", "-r", str(RATE), "-b", "16", "-e", "signed", "-c", "1",
         "-t", "raw", "-", *effects], input=wav, check=True, capture_output=True).stdout
    return np.frombuffer(raw, np.int16).astype(np.float32) / 32768.0


def trim(x: np.ndarray, threshold: float = 0.01) -> np.ndarray:
    loud = np.flatnonzero(np.abs(x) > threshold * max(1e-6, np.abs(x).max()))
    return x[loud[0]: loud[-1] + 1] if len(loud) else x


def noise(rng, n: int) -> np.ndarray:
    if rng.random() < 0.5:
        z = rng.standard_normal(n)
    else:  # brown noise: integrated white noise, drift removed
        z = np.cumsum(rng.standard_normal(n))
        z -= np.linspace(z[0], z[-1], n)
    return (z / (np.std(z) + 1e-9)).astype(np.float32)


def clip(rng, label: str, variants) -> np.ndarray:
    out = np.zeros(CLIP, np.float32)
    if label != "silence":
        word = rng.choice(UNKNOWN_WORDS) if label == "unknown" else label
        speech = trim(speak(
            str(word), str(rng.choice(VOICES)), str(rng.choice(variants)),
            speed=int(rng.integers(110, 230)), pitch=int(rng.integers(15, 95)),
            amplitude=int(rng.integers(60, 200)),
            reverb=int(rng.integers(20, 70)) if rng.random() < 0.3 else 0))[:CLIP]
        start = int(rng.integers(0, CLIP - len(speech) + 1))
        out[start: start + len(speech)] = speech * rng.uniform(0.2, 1.0) / max(
            1e-6, np.abs(speech).max())
        snr_db = rng.uniform(5, 30)
        scale = np.sqrt(np.mean(out[start: start + len(speech)] ** 2) / 10 ** (snr_db / 10))
    else:
        scale = 10 ** rng.uniform(-3.5, -1.2)
    return out + scale * noise(rng, CLIP)


def mfcc(waves: np.ndarray) -> np.ndarray:
    import tensorflow as tf

    stft = tf.signal.stft(waves, frame_length=480, frame_step=320, fft_length=512)
    spectrum = tf.abs(stft)
    mel = tf.signal.linear_to_mel_weight_matrix(40, spectrum.shape[-1], RATE, 20.0, 4000.0)
    log_mel = tf.math.log(tf.tensordot(spectrum, mel, 1) + 1e-6)
    return tf.signal.mfccs_from_log_mel_spectrograms(log_mel)[..., :10].numpy()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(
        os.path.dirname(__file__), "..", "tfcompress", "datasets", "keywords_mfcc.npz"))
    parser.add_argument("--train_per_class", type=int, default=200)
    parser.add_argument("--test_per_class", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    splits = {}
    for split, per_class, variants in (("train", args.train_per_class, TRAIN_VARIANTS),
                                       ("test", args.test_per_class, TEST_VARIANTS)):
        labels = np.repeat(np.arange(len(CLASSES), dtype=np.int32), per_class)
        labels = labels[rng.permutation(len(labels))]
        waves = np.stack([clip(rng, CLASSES[y], variants) for y in labels])
        splits[split] = (mfcc(waves), labels)
    mean = splits["train"][0].mean(axis=(0, 1))
    std = splits["train"][0].std(axis=(0, 1))
    stored = {}
    for split, (x, y) in splits.items():
        z = np.clip(np.round((x - mean) / std * STEP), -128, 127).astype(np.int8)
        stored[f"x_{split}"], stored[f"y_{split}"] = z[..., None], y.astype(np.uint8)
    np.savez_compressed(args.out, **stored, classes=np.array(CLASSES), step=np.float32(STEP),
                        mean=mean.astype(np.float32), std=std.astype(np.float32))
    print(f"{args.out}: {len(splits['train'][1])} train, {len(splits['test'][1])} test clips, "
          f"features {stored['x_train'].shape[1:]}, {os.path.getsize(args.out)} bytes")


if __name__ == "__main__":
    main()

"""Builds tfcompress/datasets/fortunes_text.npz: topic classification of fortune-cookie texts.

The corpus is Debian's ``fortunes`` package (fortune-mod 1.99.1, BSD licence; see
tfcompress/datasets/README.md): each file of /usr/share/games/fortunes is a category and each
``%``-separated entry a text. This script is kept for reproduction and never runs at test time:

    apt-get install fortunes
    .venv/bin/python scripts/make_text_data.py

Tokens are lower-cased words (``[a-z0-9']+``); the vocabulary is the most frequent words of the
training split only (id 0 pads, id 1 is any word outside the vocabulary), ids are padded or
truncated to a fixed length. The test split (20% of each class) is fixed here.
"""

import argparse
import collections
import os
import re

import numpy as np

CATEGORIES = ("computers", "politics", "science", "art", "law", "food")
PAD, OOV = "<pad>", "<unk>"


def read_category(folder: str, name: str) -> list:
    with open(os.path.join(folder, name), encoding="utf-8", errors="replace") as f:
        entries = f.read().split("\n%\n")
    return [e.strip() for e in entries if e.strip() and e.strip() != "%"]


def tokenize(text: str) -> list:
    return re.findall(r"[a-z0-9']+", text.lower())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fortunes", default="/usr/share/games/fortunes")
    parser.add_argument("--out", default=os.path.join(
        os.path.dirname(__file__), "..", "tfcompress", "datasets", "fortunes_text.npz"))
    parser.add_argument("--vocab_size", type=int, default=2000)
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--test_fraction", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    texts, labels, test = [], [], []
    for label, name in enumerate(CATEGORIES):
        entries = read_category(args.fortunes, name)
        is_test = np.zeros(len(entries), dtype=bool)
        count = int(round(len(entries) * args.test_fraction))
        is_test[rng.permutation(len(entries))[:count]] = True
        texts += entries
        labels += [label] * len(entries)
        test += list(is_test)
    labels, test = np.array(labels, np.int32), np.array(test)
    tokens = [tokenize(t) for t in texts]
    counts = collections.Counter(w for toks, t in zip(tokens, test) if not t for w in toks)
    vocab = [PAD, OOV] + [w for w, _ in counts.most_common(args.vocab_size - 2)]
    index = {w: i for i, w in enumerate(vocab)}
    ids = np.zeros((len(tokens), args.length), np.int32)
    for row, toks in enumerate(tokens):
        seq = [index.get(w, 1) for w in toks][: args.length]
        ids[row, : len(seq)] = seq
    order = rng.permutation(len(labels))
    ids, labels, test = ids[order], labels[order], test[order]
    np.savez_compressed(
        args.out, x_train=ids[~test].astype(np.uint16), y_train=labels[~test].astype(np.uint8),
        x_test=ids[test].astype(np.uint16), y_test=labels[test].astype(np.uint8),
        vocabulary=np.array(vocab), classes=np.array(CATEGORIES))
    known = (ids[test] > 1).sum() / max(1, (ids[test] > 0).sum())
    print(f"{args.out}: {int((~test).sum())} train, {int(test.sum())} test, "
          f"{len(vocab)} words, {known:.1%} of test tokens in the vocabulary, "
          f"{os.path.getsize(args.out)} bytes")


if __name__ == "__main__":
    main()

"""Offline data: nothing is downloaded at run time.

- sklearn's bundled sets (breast cancer, digits) ship inside scikit-learn;
- Fashion-MNIST comes from the IDX files of Debian's ``dataset-fashion-mnist`` or a directory
  named by ``MEMTUNE_FASHION_MNIST_DIR``;
- English text is the stdlib's ``pydoc_data.topics``.
"""

from __future__ import annotations

import functools
import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from memtune.studies.task_options import SPLIT_SEED

FASHION_MNIST_ENV = "MEMTUNE_FASHION_MNIST_DIR"
FASHION_MNIST_VALIDATION = 10_000  # taken from the 60,000 training images
FASHION_MNIST_DEFAULT = Path("/usr/share/datasets/fashion-mnist")


class DatasetMissingError(FileNotFoundError):
    """The files of an offline dataset are not where memtune looks; the message says where."""


@dataclass(frozen=True)
class SplitData:
    """Train, validation and test tensors of a supervised task. The search selects on
    validation; only the seed re-runs ever evaluate test."""

    train_x: Tensor
    train_y: Tensor
    val_x: Tensor
    val_y: Tensor
    test_x: Tensor
    test_y: Tensor


def fixed_split(
    x: np.ndarray, y: np.ndarray, *, held_out: float = 0.2, split_seed: int = SPLIT_SEED
) -> SplitData:
    """Standardized features (train statistics) and a train / val / test split of
    1 - 2h / h / h that depends on nothing but the data and the split seed."""
    order = np.random.RandomState(split_seed).permutation(len(x))
    n = round(len(x) * held_out)
    test, val, train = order[:n], order[n : 2 * n], order[2 * n :]
    mean, std = x[train].mean(0), x[train].std(0) + 1e-8
    x = ((x - mean) / std).astype(np.float32)
    parts = [torch.from_numpy(a) for index in (train, val, test) for a in (x[index], y[index])]
    return SplitData(*parts)


@functools.cache
def breast_cancer() -> SplitData:
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    return fixed_split(data.data, data.target.astype(np.float32))


@functools.cache
def digits() -> SplitData:
    from sklearn.datasets import load_digits

    data = load_digits()
    return fixed_split(data.data, data.target.astype(np.int64))


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (the MNIST format), gzipped or not, as a numpy array of its dtype."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as stream:
        raw = stream.read()
    if raw[0:2] != b"\x00\x00" or raw[2] != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def fashion_mnist_dir() -> Path:
    return Path(os.environ.get(FASHION_MNIST_ENV) or FASHION_MNIST_DEFAULT)


def _find(directory: Path, stem: str) -> Path:
    for name in (f"{stem}.gz", stem):
        if (directory / name).is_file():
            return directory / name
    raise DatasetMissingError(
        f"Fashion-MNIST file {stem}[.gz] not found in {directory}. Install Debian's "
        f"dataset-fashion-mnist (files in {FASHION_MNIST_DEFAULT}) or set {FASHION_MNIST_ENV} "
        "to a directory holding the four IDX files."
    )


@functools.cache
def fashion_mnist() -> SplitData:
    """50,000 training and 10,000 validation images from the official training set (split
    seed fixed), and the official 10,000 t10k images as the test split; pixels in [0, 1]."""
    directory = fashion_mnist_dir()
    arrays = {
        stem: read_idx(_find(directory, stem))
        for stem in (
            "train-images-idx3-ubyte",
            "train-labels-idx1-ubyte",
            "t10k-images-idx3-ubyte",
            "t10k-labels-idx1-ubyte",
        )
    }

    def images(a: np.ndarray) -> Tensor:
        return torch.from_numpy(a.astype(np.float32) / 255.0).unsqueeze(1)

    def labels(a: np.ndarray) -> Tensor:
        return torch.from_numpy(a.astype(np.int64))

    train_images, train_labels = (
        arrays["train-images-idx3-ubyte"],
        arrays["train-labels-idx1-ubyte"],
    )
    order = np.random.RandomState(SPLIT_SEED).permutation(len(train_images))
    val, train = order[:FASHION_MNIST_VALIDATION], order[FASHION_MNIST_VALIDATION:]
    return SplitData(
        images(train_images[train]),
        labels(train_labels[train]),
        images(train_images[val]),
        labels(train_labels[val]),
        images(arrays["t10k-images-idx3-ubyte"]),
        labels(arrays["t10k-labels-idx1-ubyte"]),
    )


@functools.cache
def english_text() -> tuple[Tensor, list[str]]:
    """The stdlib's pydoc topics (about 465k characters) as character ids, and the alphabet."""
    from pydoc_data.topics import topics

    text = "".join(topics[key] for key in sorted(topics))
    alphabet = sorted(set(text))
    index = {char: i for i, char in enumerate(alphabet)}
    return torch.tensor([index[char] for char in text], dtype=torch.long), alphabet


# char_lm's held-out text is drawn in blocks of this many characters (two of its default
# sequences), spread over the whole text: see english_text_split.
CHAR_BLOCK = 128


def english_text_split(held_chars: int) -> tuple[Tensor, Tensor, Tensor]:
    """char_lm's train, validation and test character ids, fixed by the split seed.

    The text (pydoc topics sorted by name: reference tables beside prose) is cut into blocks of
    CHAR_BLOCK characters, and those into k equal runs of consecutive blocks, k = held_chars /
    CHAR_BLOCK rounded up. In each run the split seed picks one block for validation and another
    for test; the rest train, in text order. Validation and test are thereby spread over the
    whole text as the training blocks are (systematic sampling), so the configs selected on one
    are reported on text of the same kind (tests/studies/test_datasets.py compares the three
    splits' character statistics).
    """
    ids, _ = english_text()
    blocks = len(ids) // CHAR_BLOCK
    held = -(-held_chars // CHAR_BLOCK)
    run = blocks // held
    rng = np.random.RandomState(SPLIT_SEED)
    val, test = [], []
    for number in range(held):
        first, second = rng.choice(run, size=2, replace=False)
        val.append(number * run + int(first))
        test.append(number * run + int(second))
    train = sorted(set(range(blocks)) - set(val) - set(test))

    def text_of(chosen: list[int]) -> Tensor:
        return torch.cat([ids[b * CHAR_BLOCK : (b + 1) * CHAR_BLOCK] for b in chosen])

    return text_of(train), text_of(val), text_of(test)

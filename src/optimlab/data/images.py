"""The image datasets read from files: MNIST, Fashion-MNIST, the MNIST test set, CIFAR-10."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from optimlab.data import cifar
from optimlab.data.checks import check_labels
from optimlab.data.dataset import Arrays
from optimlab.data.files import IDX_FILES, Places, locate, places
from optimlab.data.idx import read_idx

TRAIN_IDX, TEST_IDX = IDX_FILES[:2], IDX_FILES[2:]
# mnist-t10k: the first T10K_TRAIN of the 10,000 test digits train, the rest test.
T10K_TRAIN = 8000


def read_idx_pair(images: Path, labels: Path) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 [N, 1, H, W], int64 [N]) from an IDX image file and its label file."""
    x, y = read_idx(images), read_idx(labels)
    if x.ndim != 3 or x.dtype != np.uint8 or y.ndim != 1:
        raise ValueError(f"{images}, {labels}: expected uint8 images [N, H, W] and labels [N], "
                         f"got {x.dtype} {x.shape} and {y.shape}")
    if len(x) != len(y):
        raise ValueError(f"{images} has {len(x)} images but {labels} has {len(y)} labels")
    check_labels(y, f"labels in {labels}", 10)
    return x[:, None], y.astype(np.int64)


def load_idx_dataset(name: str, data_dir, download: bool, cache_dir: Path) -> Arrays:
    """MNIST or Fashion-MNIST: the standard 60,000 train / 10,000 test split."""
    paths = locate(name, TRAIN_IDX + TEST_IDX, places(name, data_dir, cache_dir), download, name)
    x, y = read_idx_pair(*(paths[f] for f in TRAIN_IDX))
    x_test, y_test = read_idx_pair(*(paths[f] for f in TEST_IDX))
    return Arrays(x, y, x_test, y_test, pixels=True)


def load_mnist_t10k(data_dir, download: bool, cache_dir: Path) -> Arrays:
    """The real MNIST test set alone: first 8,000 digits train, last 2,000 test."""
    where = places("mnist-t10k", data_dir, cache_dir)
    paths = locate("mnist-t10k", TEST_IDX, where, download, "mnist")
    x, y = read_idx_pair(*(paths[f] for f in TEST_IDX))
    if len(y) <= T10K_TRAIN:
        raise ValueError(f"mnist-t10k needs more than {T10K_TRAIN} digits, found {len(y)}")
    return Arrays(x[:T10K_TRAIN], y[:T10K_TRAIN], x[T10K_TRAIN:], y[T10K_TRAIN:], pixels=True)


def _extracted_batches(where: Places) -> dict[str, bytes] | None:
    """The ``.bin`` batches from the first folder that holds all of them, if any."""
    names = cifar.TRAIN_FILES + cifar.TEST_FILES
    for folder in where.search:
        for sub in (folder, folder / "cifar-10-batches-bin"):
            if all((sub / n).is_file() for n in names):
                return {n: (sub / n).read_bytes() for n in names}
    return None


def load_cifar10(data_dir, download: bool, cache_dir: Path) -> Arrays:
    """CIFAR-10 (binary version): 50,000 train / 10,000 test, [N, 3, 32, 32]."""
    where = places("cifar10", data_dir, cache_dir)
    blobs = _extracted_batches(where)
    if blobs is None:
        archive = "cifar-10-binary.tar.gz"
        path = locate("cifar10", (archive,), where, download, "cifar10")[archive]
        blobs = cifar.read_archive(path)
        missing = [n for n in cifar.TRAIN_FILES + cifar.TEST_FILES if n not in blobs]
        if missing:
            raise ValueError(f"CIFAR-10 archive lacks {', '.join(missing)}")
    x, y = cifar.load_split(blobs, cifar.TRAIN_FILES)
    x_test, y_test = cifar.load_split(blobs, cifar.TEST_FILES)
    return Arrays(x, y, x_test, y_test, pixels=True)

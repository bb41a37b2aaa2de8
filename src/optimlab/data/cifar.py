"""Read CIFAR-10's binary version: records of 1 label byte + 3072 pixel bytes.

Never touches the Python ("pickle") version of the dataset. Accepts the
``cifar-10-binary.tar.gz`` archive as distributed, or its extracted ``.bin`` files.
"""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np

from optimlab.data.checks import check_labels

RECORD = 1 + 3 * 32 * 32
TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
TEST_FILES = ("test_batch.bin",)


def parse_batch(data: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [N, 3, 32, 32], labels int64 [N]) from one binary batch."""
    if len(data) == 0 or len(data) % RECORD:
        raise ValueError(
            f"{where}: {len(data)} bytes is not a whole number of CIFAR-10 records "
            f"({RECORD} bytes each)")
    records = np.frombuffer(data, dtype=np.uint8).reshape(-1, RECORD)
    labels = records[:, 0].astype(np.int64)
    check_labels(labels, f"labels in {where}", 10)
    return records[:, 1:].reshape(-1, 3, 32, 32).copy(), labels


def read_archive(path: Path) -> dict[str, bytes]:
    """Member base name -> bytes, for the ``.bin`` members of a CIFAR-10 tar archive."""
    wanted = set(TRAIN_FILES + TEST_FILES)
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                name = Path(member.name).name
                blob = tar.extractfile(member) if name in wanted else None
                if blob is not None:
                    found[name] = blob.read()
    except (tarfile.TarError, OSError, EOFError) as err:
        raise ValueError(f"corrupt CIFAR-10 archive {path}: {err}") from err
    return found


def load_split(blobs: dict[str, bytes], names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate the batches `names` (all must be present in `blobs`)."""
    parts = [parse_batch(blobs[name], name) for name in names]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

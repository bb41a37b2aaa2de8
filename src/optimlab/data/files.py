"""Where a dataset's files come from: a folder the user names, the cache, or a mirror.

Search order: with ``data_dir`` (``--data-dir``; else ``$OPTIMLAB_DATA_DIR`` when set),
``data_dir/<name>/`` then ``data_dir`` itself; without either, ``<cache>/<name>/``.
Nothing depends on where the package is installed: a wheel finds the same files.
Only with ``download=True`` are missing files fetched, into ``data_dir/<name>/`` or
``<cache>/<name>/``, from `MIRRORS` with checksum checks.
A folder holding a ``SHA256SUMS`` file has the files we read verified against it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from optimlab.data.download import ChecksumError, fetch, sha256_of


@dataclass(frozen=True)
class Mirror:
    """Files at ``base_url + file name``, with their published SHA-256s."""

    base_url: str
    sha256: dict[str, str]


# The datasets' standard mirrors. SHA-256s as published by TensorFlow Datasets
# (tensorflow_datasets/url_checksums/{mnist,fashion_mnist,cifar10}.txt).
# Tests point an entry at a local server; users can point one at their own mirror.
# The four IDX files of MNIST and Fashion-MNIST, in the order of the checksums below.
IDX_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
             "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
MIRRORS: dict[str, Mirror] = {
    "mnist": Mirror("https://storage.googleapis.com/cvdf-datasets/mnist/", dict(zip(IDX_FILES, (
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    ), strict=True))),
    "fashion-mnist": Mirror("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
                            dict(zip(IDX_FILES, (
        "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
    ), strict=True))),
    "cifar10": Mirror("https://www.cs.toronto.edu/~kriz/", {
        "cifar-10-binary.tar.gz":
            "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd",
    }),
}

# The folder of dataset folders used when no data_dir is given (e.g. one holding
# mnist-t10k/, the real MNIST test set).
DATA_DIR_ENV = "OPTIMLAB_DATA_DIR"


def default_cache_dir() -> Path:
    """``$OPTIMLAB_CACHE`` if set, else ``~/.cache/optimlab``."""
    return Path(os.environ.get("OPTIMLAB_CACHE") or Path.home() / ".cache" / "optimlab")


@dataclass(frozen=True)
class Places:
    """Folders to search, in order, and the folder downloads go to."""

    search: tuple[Path, ...]
    target: Path


def places(name: str, data_dir: str | Path | None, cache_dir: Path) -> Places:
    """The search order described in the module docstring."""
    data_dir = data_dir if data_dir is not None else os.environ.get(DATA_DIR_ENV) or None
    if data_dir is None:
        return Places((cache_dir / name,), cache_dir / name)
    root = Path(data_dir).expanduser()
    return Places((root / name, root), root / name)


def find(folder: Path, file: str) -> Path | None:
    """`folder/file`, or the same name without ``.gz`` (IDX files may come uncompressed)."""
    for candidate in (folder / file, folder / file.removesuffix(".gz")):
        if candidate.is_file():
            return candidate
    return None


def verify_sums(folder: Path, paths: list[Path]) -> None:
    """Check `paths` against ``folder/SHA256SUMS`` when it exists and lists them."""
    sums_file = folder / "SHA256SUMS"
    if not sums_file.is_file():
        return
    sums = {}
    for line in sums_file.read_text().splitlines():
        if line.strip():
            digest, _, name = line.strip().partition(" ")
            sums[name.strip().lstrip("*")] = digest.lower()
    for path in paths:
        if path.name in sums and sha256_of(path) != sums[path.name]:
            raise ChecksumError(f"{path} does not match its checksum in {sums_file}")


def locate(name: str, files: tuple[str, ...], where: Places, download: bool,
           mirror: str) -> dict[str, Path]:
    """Paths of all `files` from one folder of `where`, downloading them if allowed."""
    for folder in where.search:
        paths = [find(folder, f) for f in files]
        found = {f: p for f, p in zip(files, paths, strict=True) if p is not None}
        if len(found) == len(files):
            verify_sums(folder, list(found.values()))
            return found
    source = MIRRORS[mirror]
    if not download:
        folders = ", ".join(str(f) for f in where.search)
        raise FileNotFoundError(
            f"dataset {name!r}: files {', '.join(files)} not found in {folders}; pass "
            f"download=True (--download) to fetch them from {source.base_url}, or data_dir "
            f"(--data-dir, or ${DATA_DIR_ENV}) naming a folder that holds them")
    return {f: find(where.target, f) or fetch(source.base_url + f, where.target / f,
                                               source.sha256[f]) for f in files}

"""Datasets: loaders on small files the tests write, downloads from a local server,
the real MNIST test set, MNIST-1D generation and caching, and clear errors."""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import os
import shutil
import socket
import struct
import subprocess
import sys
import tarfile
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import torch
from conftest import MNIST_T10K, needs_t10k

import optimlab.data.mnist1d as mnist1d_source
from optimlab.data import (
    DATASETS,
    MIRRORS,
    ChecksumError,
    DownloadError,
    Mirror,
    default_cache_dir,
    load,
)
from optimlab.data.idx import read_idx

IDX = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
       "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
T10K_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


# ------------------------------------------------ writers, from the formats (not the loaders)

def idx_bytes(array: np.ndarray, code: int = 0x08, dtype: str = ">u1") -> bytes:
    """The IDX encoding, written from the format description."""
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(dtype).tobytes()


def tiny_images(n: int, seed: int, channels: int = 1, side: int = 28):
    """uint8 images whose pixel 0 encodes the example index, and labels 0..9."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(n, channels, side, side), dtype=np.uint8)
    x[:, 0, 0, 0] = np.arange(n)
    return x, np.arange(n) % 10


def write_idx_set(folder, gz: bool, n_train: int = 50, n_test: int = 20) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    (x, y), (xt, yt) = tiny_images(n_train, 1), tiny_images(n_test, 2)
    arrays = dict(zip(IDX, (x[:, 0], y, xt[:, 0], yt), strict=True))
    for name, array in arrays.items():
        data = idx_bytes(array)
        (folder / (name if gz else name[:-3])).write_bytes(gzip.compress(data) if gz else data)
    return {"x": x, "y": y, "x_test": xt, "y_test": yt}


def standardized(x_train: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Reference normalization in float64: /255, then train mean/std per channel."""
    t = x_train.astype(np.float64) / 255
    axes = (0, 2, 3)
    return (x.astype(np.float64) / 255 - t.mean(axis=axes, keepdims=True)) / t.std(
        axis=axes, keepdims=True)


def cifar_records(x: np.ndarray, y: np.ndarray) -> bytes:
    return b"".join(bytes([int(label)]) + img.tobytes() for img, label in zip(x, y, strict=True))


# ---------------------------------------------------------------- IDX datasets

@pytest.mark.parametrize("gz", [True, False])
def test_mnist_from_data_dir(tmp_path, gz):
    raw = write_idx_set(tmp_path / "mnist", gz)
    ds = load("mnist", data_dir=tmp_path, val_fraction=0.0, cache_dir=tmp_path / "cache")
    assert ds.input_shape == (1, 28, 28) and ds.num_classes == 10
    assert ds.x_train.dtype == torch.float32 and ds.y_train.dtype == torch.int64
    assert ds.x_val.shape == (0, 1, 28, 28) and len(ds.y_val) == 0
    np.testing.assert_allclose(ds.x_train.numpy(), standardized(raw["x"], raw["x"]), atol=1e-5)
    np.testing.assert_allclose(ds.x_test.numpy(), standardized(raw["x"], raw["x_test"]), atol=1e-5)
    assert ds.y_train.tolist() == raw["y"].tolist() and ds.y_test.tolist() == raw["y_test"].tolist()


def test_fashion_mnist_reads_its_own_subfolder(tmp_path):
    """MNIST and Fashion-MNIST share file names: each is found in data_dir/<name>/."""
    write_idx_set(tmp_path / "mnist", gz=True, n_train=30)
    write_idx_set(tmp_path / "fashion-mnist", gz=False, n_train=40)
    ds = load("fashion-mnist", data_dir=tmp_path, val_fraction=0.0)
    assert len(ds.y_train) == 40 and ds.name == "fashion-mnist"


def test_validation_split_is_seeded_disjoint_and_complete(tmp_path):
    write_idx_set(tmp_path, gz=True, n_train=50)
    ids = {}
    for seed in (0, 0, 1):
        ds = load("mnist", data_dir=tmp_path, val_fraction=0.2, seed=seed)
        assert (len(ds.y_train), len(ds.y_val), len(ds.y_test)) == (40, 10, 20)
        # Pixel 0 holds the example index; normalization is increasing, so ranks recover it.
        first = [ds.x_train[:, 0, 0, 0].numpy(), ds.x_val[:, 0, 0, 0].numpy()]
        ranks = np.argsort(np.argsort(np.concatenate(first)))
        train, val = set(ranks[:len(first[0])].tolist()), set(ranks[len(first[0]):].tolist())
        assert not train & val and len(train | val) == 50
        ids.setdefault(seed, []).append(sorted(val))
    assert ids[0][0] == ids[0][1], "same seed, same split"
    assert ids[0][0] != ids[1][0], "another seed, another split"


def test_read_idx_other_types(tmp_path):
    array = np.arange(-6, 6, dtype=np.int16).reshape(3, 4)
    (tmp_path / "a.idx").write_bytes(idx_bytes(array, code=0x0B, dtype=">i2"))
    np.testing.assert_array_equal(read_idx(tmp_path / "a.idx"), array)


@pytest.mark.parametrize(("content", "match"), [
    (b"\x00\x00\x08\x01\x00\x00\x00\x05abc", "shape"),   # header says 5 bytes, has 3
    (b"PK\x03\x04rest", "not an IDX file"),
    (b"\x1f\x8bnot really gzip", "corrupt gzip"),
])
def test_corrupt_idx_is_a_clear_error(tmp_path, content, match):
    (tmp_path / "bad").write_bytes(content)
    with pytest.raises(ValueError, match=match):
        read_idx(tmp_path / "bad")


# ---------------------------------------------------------------- CIFAR-10 (binary)

def write_cifar(folder, as_archive: bool) -> dict:
    rng = np.random.default_rng(5)
    x = rng.integers(0, 256, size=(5 * 4 + 3, 3, 32, 32), dtype=np.uint8)
    y = rng.integers(0, 10, size=len(x))
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
    blobs = {n: cifar_records(x[4 * i:4 * i + 4], y[4 * i:4 * i + 4])
             for i, n in enumerate(names[:5])}
    blobs["test_batch.bin"] = cifar_records(x[20:], y[20:])
    folder.mkdir(parents=True, exist_ok=True)
    if as_archive:
        with tarfile.open(folder / "cifar-10-binary.tar.gz", "w:gz") as tar:
            for name, blob in blobs.items():
                info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
                info.size = len(blob)
                tar.addfile(info, io.BytesIO(blob))
    else:
        for name, blob in blobs.items():
            (folder / name).write_bytes(blob)
    return {"x": x[:20], "y": y[:20], "x_test": x[20:], "y_test": y[20:]}


@pytest.mark.parametrize("as_archive", [True, False])
def test_cifar10_binary(tmp_path, as_archive):
    raw = write_cifar(tmp_path / "cifar10", as_archive)
    ds = load("cifar10", data_dir=tmp_path, val_fraction=0.0)
    assert ds.input_shape == (3, 32, 32) and ds.x_train.shape == (20, 3, 32, 32)
    assert ds.y_train.tolist() == raw["y"].tolist() and ds.y_test.tolist() == raw["y_test"].tolist()
    np.testing.assert_allclose(ds.x_test.numpy(), standardized(raw["x"], raw["x_test"]), atol=1e-5)


def test_cifar10_truncated_batch(tmp_path):
    write_cifar(tmp_path, as_archive=False)
    (tmp_path / "test_batch.bin").write_bytes(b"\x01" * 100)
    with pytest.raises(ValueError, match="test_batch.bin: 100 bytes"):
        load("cifar10", data_dir=tmp_path)


# ---------------------------------------------------------------- npz

def test_npz_with_test_arrays_used_as_given(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {"x": rng.standard_normal((30, 6)), "y": np.arange(30) % 3,
              "x_test": rng.standard_normal((8, 6)), "y_test": np.arange(8) % 3}
    np.savez(tmp_path / "mine.npz", **arrays)
    ds = load(f"npz:{tmp_path / 'mine.npz'}", val_fraction=0.0)
    assert ds.input_shape == (6,) and ds.num_classes == 3
    np.testing.assert_array_equal(ds.x_train.numpy(), arrays["x"].astype(np.float32))
    np.testing.assert_array_equal(ds.x_test.numpy(), arrays["x_test"].astype(np.float32))


def test_npz_without_test_holds_out_a_fixed_fifth(tmp_path):
    x = np.arange(100 * 4 * 4, dtype=np.uint8).reshape(100, 4, 4)
    np.savez(tmp_path / "img.npz", x=x, y=np.arange(100) % 10)
    a = load(f"npz:{tmp_path / 'img.npz'}", seed=0)
    b = load(f"npz:{tmp_path / 'img.npz'}", seed=1)
    assert a.input_shape == (1, 4, 4)
    assert (len(a.y_train), len(a.y_val), len(a.y_test)) == (72, 8, 20)
    torch.testing.assert_close(a.y_test, b.y_test)  # test does not move with the seed


@pytest.mark.parametrize(("arrays", "match"), [
    ({"x": np.zeros((4, 2))}, "required: 'x', 'y'"),
    ({"x": np.zeros((4, 2)), "y": np.zeros(3, int)}, "'x' has 4 rows"),
    ({"x": np.zeros((4, 2)), "y": np.array([0, 1, -1, 2])}, "class indices"),
    ({"x": np.zeros((4, 2)), "y": np.array([0, 1.5, 1, 2])}, "class indices"),
    ({"x": np.zeros(4), "y": np.zeros(4, int)}, r"shape \(4,\)"),
    ({"x": np.zeros((4, 2)), "y": np.zeros(4, int), "x_test": np.zeros((2, 3)),
      "y_test": np.zeros(2, int)}, "example shape"),
    ({"x": np.zeros((4, 2)), "y": np.zeros(4, int), "x_train": np.zeros((4, 2)),
      "y_train": np.zeros(4, int)}, "one layout"),
    ({"x_train": np.zeros((4, 2)), "x_test": np.zeros((2, 2)), "y_test": np.zeros(2, int)},
     "required"),
])
def test_npz_bad_content(tmp_path, arrays, match):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match=match):
        load(f"npz:{tmp_path / 'bad.npz'}")


def test_npz_in_keras_layout_reads_as_the_same_arrays(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 256, (50, 6, 6), dtype=np.uint8), np.arange(50) % 10
    xt, yt = rng.integers(0, 256, (20, 6, 6), dtype=np.uint8), np.arange(20) % 10
    np.savez(tmp_path / "keras.npz", x_train=x, y_train=y, x_test=xt, y_test=yt)
    np.savez(tmp_path / "ours.npz", x=x, y=y, x_test=xt, y_test=yt)
    keras, ours = (load(f"npz:{tmp_path / n}", val_fraction=0.0) for n in ("keras.npz",
                                                                            "ours.npz"))
    assert keras.input_shape == (1, 6, 6) and len(keras.y_test) == 20
    for name in ("x_train", "y_train", "x_test", "y_test"):
        torch.testing.assert_close(getattr(keras, name), getattr(ours, name))


@pytest.mark.parametrize("content", [b"x,y\n1,2\n", b"\x93NUMPY" + bytes(100), b""])
def test_a_file_that_is_not_an_npz_says_so(tmp_path, content):
    (tmp_path / "data.npz").write_bytes(content)
    with pytest.raises(ValueError, match="is not a valid .npz file"):
        load(f"npz:{tmp_path / 'data.npz'}")


def test_npz_never_unpickles(tmp_path):
    np.savez(tmp_path / "obj.npz", x=np.array([{"a": 1}], dtype=object), y=np.zeros(1, int))
    with pytest.raises(ValueError, match="without pickles"):
        load(f"npz:{tmp_path / 'obj.npz'}")


# ---------------------------------------------------------------- downloads from 127.0.0.1

class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass


@pytest.fixture
def server(tmp_path):
    """A static file server on 127.0.0.1 in a thread: (folder it serves, base URL)."""
    root = tmp_path / "www"
    root.mkdir()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0),
                                functools.partial(QuietHandler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def sums_of(folder) -> dict[str, str]:
    return {f: hashlib.sha256((folder / f).read_bytes()).hexdigest() for f in IDX}


def test_download_good_files(server, tmp_path, monkeypatch):
    root, url = server
    write_idx_set(root, gz=True)
    monkeypatch.setitem(MIRRORS, "mnist", Mirror(url, sums_of(root)))
    cache = tmp_path / "cache"
    ds = load("mnist", download=True, cache_dir=cache, val_fraction=0.0)
    assert len(ds.y_train) == 50 and len(ds.y_test) == 20
    assert sorted(p.name for p in (cache / "mnist").iterdir()) == sorted(IDX)
    for f in IDX:
        assert (cache / "mnist" / f).read_bytes() == (root / f).read_bytes()


def test_download_checksum_mismatch_leaves_nothing(server, tmp_path, monkeypatch):
    root, url = server
    write_idx_set(root, gz=True)
    bad = dict(sums_of(root), **{IDX[0]: "0" * 64})
    monkeypatch.setitem(MIRRORS, "mnist", Mirror(url, bad))
    with pytest.raises(ChecksumError, match=f"checksum mismatch for {url}{IDX[0]}"):
        load("mnist", download=True, cache_dir=tmp_path / "cache")
    assert list((tmp_path / "cache" / "mnist").iterdir()) == []


def test_download_offline_and_missing_file(server, tmp_path, monkeypatch):
    root, url = server
    with socket.socket() as s:  # a port nobody listens on: "offline"
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for base in (f"http://127.0.0.1:{port}/", url):  # refused, then 404
        monkeypatch.setitem(MIRRORS, "mnist", Mirror(base, {f: "0" * 64 for f in IDX}))
        with pytest.raises(DownloadError, match=f"could not download {base}"):
            load("mnist", download=True, cache_dir=tmp_path / "cache")
        assert list((tmp_path / "cache" / "mnist").iterdir()) == []


def test_no_download_without_asking(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"download=True \(--download\)"):
        load("mnist", cache_dir=tmp_path)
    assert not (tmp_path / "mnist").exists() or not list((tmp_path / "mnist").iterdir())


# ---------------------------------------------------------------- the real MNIST test set

@needs_t10k
def test_t10k_checksums_match():
    for line in (MNIST_T10K / "SHA256SUMS").read_text().split("\n"):
        if line.strip():
            digest, name = line.split()
            assert hashlib.sha256((MNIST_T10K / name).read_bytes()).hexdigest() == digest


@needs_t10k
def test_t10k_real_digits(tmp_path):
    ds = load("mnist-t10k", data_dir=MNIST_T10K.parent, val_fraction=0.0, cache_dir=tmp_path)
    assert (len(ds.y_train), len(ds.y_test)) == (8000, 2000) and ds.input_shape == (1, 28, 28)
    counts = torch.bincount(torch.cat([ds.y_train, ds.y_test]), minlength=10)
    assert counts.tolist() == T10K_COUNTS
    assert abs(ds.x_train.mean().item()) < 1e-4 and abs(ds.x_train.std().item() - 1) < 1e-3
    via_dir = load("mnist-t10k", data_dir=MNIST_T10K, val_fraction=0.0, cache_dir=tmp_path)
    torch.testing.assert_close(via_dir.x_test, ds.x_test)


@needs_t10k
def test_t10k_found_through_the_environment_as_an_installed_wheel_would(tmp_path, monkeypatch):
    monkeypatch.setenv("OPTIMLAB_DATA_DIR", str(MNIST_T10K.parent))
    ds = load("mnist-t10k", val_fraction=0.0, cache_dir=tmp_path)
    assert (len(ds.y_train), len(ds.y_test)) == (8000, 2000)
    code = ("import optimlab.data as d; ds = d.load('mnist-t10k', val_fraction=0.0, "
            f"cache_dir={str(tmp_path)!r}); print(len(ds.y_test))")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, env=os.environ | {"OPTIMLAB_DATA_DIR": str(MNIST_T10K.parent)})
    assert out.stdout.strip() == "2000", out.stderr


def test_without_data_dir_or_environment_mnist_t10k_is_not_guessed(tmp_path, monkeypatch):
    monkeypatch.delenv("OPTIMLAB_DATA_DIR", raising=False)
    with pytest.raises(FileNotFoundError, match=r"--data-dir, or \$OPTIMLAB_DATA_DIR"):
        load("mnist-t10k", cache_dir=tmp_path)


@needs_t10k
def test_t10k_sha256sums_are_enforced(tmp_path):
    copy = tmp_path / "mnist-t10k"
    shutil.copytree(MNIST_T10K, copy)
    (copy / "SHA256SUMS").chmod(0o644)
    (copy / "SHA256SUMS").write_text(f"{'0' * 64}  t10k-labels-idx1-ubyte.gz\n")
    with pytest.raises(ChecksumError, match="t10k-labels-idx1-ubyte.gz does not match"):
        load("mnist-t10k", data_dir=tmp_path)


# ---------------------------------------------------------------- MNIST-1D

@pytest.fixture(scope="module")
def mnist1d_cache(tmp_path_factory):
    """Generate MNIST-1D once for this module, into a private cache; report the RNG state."""
    cache = tmp_path_factory.mktemp("cache")
    before = np.random.get_state()[1].copy()
    ds = load("mnist1d", cache_dir=cache)
    return cache, ds, before


def test_mnist1d_generation(mnist1d_cache):
    cache, ds, rng_before = mnist1d_cache
    assert (len(ds.y_train) + len(ds.y_val), len(ds.y_test)) == (4000, 1000)
    assert (len(ds.y_train), len(ds.y_val)) == (3600, 400)
    assert ds.input_shape == (40,) and ds.x_train.shape == (3600, 40) and ds.num_classes == 10
    assert set(torch.cat([ds.y_train, ds.y_test]).tolist()) == set(range(10))
    np.testing.assert_array_equal(np.random.get_state()[1], rng_before)  # global RNG untouched
    assert list(cache.iterdir()) == [cache / mnist1d_source.CACHE_NAME]


def test_mnist1d_second_load_reads_cache(mnist1d_cache, monkeypatch):
    cache, first, _ = mnist1d_cache

    def no_generation():
        raise AssertionError("regenerated instead of reading the cache")

    monkeypatch.setattr(mnist1d_source, "generate", no_generation)
    again = load("mnist1d", cache_dir=cache)
    for field in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        torch.testing.assert_close(getattr(again, field), getattr(first, field))


def _damaged_caches(good: bytes) -> dict[str, bytes]:
    """Cache files that must not be trusted, by what is wrong with them."""
    with np.load(io.BytesIO(good), allow_pickle=False) as f:
        arrays = {k: f[k] for k in mnist1d_source.KEYS}
    other = io.BytesIO()
    np.savez(other, **arrays | {"y": arrays["y"][:-1]})  # one label short
    floats = io.BytesIO()
    np.savez(floats, **arrays | {"y": arrays["y"].astype(np.float32)})  # labels not integers
    return {"truncated": good[: len(good) // 2], "not npz": b"not an npz file at all",
            "empty": b"", "labels short": other.getvalue(), "float labels": floats.getvalue()}


@pytest.mark.parametrize("damage", ["truncated", "not npz", "empty", "labels short",
                                    "float labels"])
def test_mnist1d_damaged_cache_is_regenerated(mnist1d_cache, tmp_path, monkeypatch, damage):
    cache, first, _ = mnist1d_cache
    good = (cache / mnist1d_source.CACHE_NAME).read_bytes()
    (tmp_path / mnist1d_source.CACHE_NAME).write_bytes(_damaged_caches(good)[damage])
    generated = []
    fresh = mnist1d_source.read_cache(cache / mnist1d_source.CACHE_NAME)
    monkeypatch.setattr(mnist1d_source, "generate", lambda: generated.append(1) or fresh)
    again = load("mnist1d", cache_dir=tmp_path)
    assert generated == [1]
    for field in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        torch.testing.assert_close(getattr(again, field), getattr(first, field))
    # the damaged file was replaced by a good one: the next load reads it
    assert (tmp_path / mnist1d_source.CACHE_NAME).read_bytes() != _damaged_caches(good)[damage]
    load("mnist1d", cache_dir=tmp_path)
    assert generated == [1]


def test_mnist1d_unwritable_cache_still_loads(mnist1d_cache, tmp_path, monkeypatch):
    cache, first, _ = mnist1d_cache
    fresh = mnist1d_source.read_cache(cache / mnist1d_source.CACHE_NAME)
    monkeypatch.setattr(mnist1d_source, "generate", lambda: fresh)
    (tmp_path / "file").write_text("a file where the cache folder would be")
    again = load("mnist1d", cache_dir=tmp_path / "file" / "cache")
    torch.testing.assert_close(again.x_test, first.x_test)


def test_mnist1d_is_the_default_and_needs_no_network():
    assert DATASETS[0] == "mnist1d"


# ---------------------------------------------------------------- bad specs and arguments

@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"spec": "imagenet"}, ValueError,
     r"Invalid dataset 'imagenet': no such dataset; allowed: mnist1d, mnist"),
    ({"spec": "npz:"}, ValueError, "needs a path"),
    ({"spec": 3}, TypeError, "must be a str"),
    ({"spec": "mnist1d", "val_fraction": 1.0}, ValueError, "val_fraction=1.0"),
    ({"spec": "mnist1d", "val_fraction": -0.1}, ValueError, "val_fraction=-0.1"),
    ({"spec": "mnist1d", "seed": "0"}, TypeError, "seed must be an int"),
    ({"spec": "npz:/nonexistent/mine.npz"}, FileNotFoundError, "/nonexistent/mine.npz"),
])
def test_bad_specs(kwargs, error, match):
    with pytest.raises(error, match=match):
        load(**kwargs)


def test_missing_data_dir_names_the_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nowhere" / "fashion-mnist")):
        load("fashion-mnist", data_dir=tmp_path / "nowhere")


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("OPTIMLAB_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path
    monkeypatch.delenv("OPTIMLAB_CACHE")
    assert default_cache_dir().parts[-2:] == (".cache", "optimlab")

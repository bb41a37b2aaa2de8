"""Bad data and models that do not fit it: refused when the data loads, before anything
trains, with one line that names the split, the row and the value (exit 2 from the CLI)."""

from __future__ import annotations

import gzip
import textwrap

import numpy as np
import pytest
import torch

import optimlab
from optimlab import data
from optimlab.cli import main
from optimlab.data import npz
from optimlab.data.dataset import Arrays, finish, split_indices

# Three classes from the signs of two inputs; rows 0..59 train, 0..19 test.
MODULE = """
import torch

def _xy(n, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g, dtype=torch.float64)
    return x, (x[:, 0] > 0).long() + (x[:, 1] > 0).long()

def data():
    (x, y), (xt, yt) = _xy(60, 0), _xy(20, 1)
{body}
    return (x, y), (xt, yt)

def three():
    return torch.nn.Linear(4, 3)

def wide():
    return torch.nn.Linear(4, 5)

def narrow():
    return torch.nn.Linear(4, 2)

def one():
    return torch.nn.Linear(4, 1)

def flat():
    return torch.nn.Sequential(torch.nn.Linear(4, 1), torch.nn.Flatten(0))
"""

BAD_DATA = {
    "label 7 in test only": ("yt[5] = 7",
                             "Invalid test labels of {m}:data: row 5 is 7; allowed: "
                             "0 <= label < 3, the classes of train's labels (0..2)"),
    "label -1 late in train": ("y[50] = -1",
                               "Invalid train labels of {m}:data: row 50 is -1; allowed: "
                               "class indices >= 0"),
    "one class": ("y[:] = 0", "Invalid train labels of {m}:data: every label is 0; allowed: "
                              "at least two classes"),
    "labels of two per row": ("y = torch.stack([y, y], 1)",
                              "Invalid train labels of {m}:data: shape (60, 2); allowed: one "
                              "class index per example, shape [N]"),
    "NaN in train": ("x[33, 2] = float('nan')",
                     "Invalid train inputs of {m}:data: row 33 holds nan; allowed: finite "
                     "values"),
    "Inf in test": ("xt[4, 0] = -float('inf')",
                    "Invalid test inputs of {m}:data: row 4 holds -inf; allowed: finite "
                    "values"),
    "float32 overflow": ("x[7, 1] = 1e300",
                         "Invalid train inputs of {m}:data as float32: row 7 holds inf; "
                         "allowed: finite values"),
    "NaN regression target": ("y = x[:, 0].clone(); yt = xt[:, 0].clone(); "
                              "yt[3] = float('nan')",
                              "Invalid test targets of {m}:data: row 3 holds nan; allowed: "
                              "finite values"),
    "int train, float test": ("yt = yt.double()",
                              "Invalid data {m}:data: train targets are torch.int64 but test "
                              "targets torch.float32; allowed: integer class indices in both, "
                              "or float targets in both"),
}


def _module(tmp_path, monkeypatch, name: str, body: str) -> str:
    (tmp_path / f"{name}.py").write_text(MODULE.format(body=textwrap.indent(body, " " * 4)))
    monkeypatch.chdir(tmp_path)
    return name


def _cli_error(capsys, *argv: str) -> str:
    """The one line the CLI printed for `argv`, which must fail with exit 2 and no traceback."""
    assert main(list(argv)) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err.strip()


@pytest.mark.parametrize("case", list(BAD_DATA))
def test_bad_data_stops_the_cli_before_training_naming_split_row_and_value(
        case, tmp_path, monkeypatch, capsys):
    body, message = BAD_DATA[case]
    m = _module(tmp_path, monkeypatch, f"bad_data_{list(BAD_DATA).index(case)}", body)
    task = "regression" if "regression" in case else "classification"
    err = _cli_error(capsys, "compare", "--dataset", f"{m}:data", "--model", "mlp",
                     "--task", task, "--steps", "4", "--batch-size", "8",
                     "--out", str(tmp_path / "out"))
    assert err == "optimlab compare: error: " + message.format(m=m)
    assert not (tmp_path / "out" / "summary.json").exists()


def test_python_data_gets_the_same_checks():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(40, 3, generator=g), torch.arange(40) % 3
    xt, yt = torch.randn(10, 3, generator=g), torch.arange(10) % 4
    with pytest.raises(ValueError, match=r"^Invalid test labels of python:data: row 3 is 3; "
                                         r"allowed: 0 <= label < 3"):
        optimlab.compare(model="mlp", data=(x, y, xt, yt), steps=2, batch_size=4,
                         report=False)
    x[11, 1] = float("nan")
    with pytest.raises(ValueError, match=r"^Invalid train inputs of python:data: row 11 "
                                         r"holds nan"):
        optimlab.sweep(model="mlp", data=(x, y, xt, yt % 3), steps=2, batch_size=4,
                       report=False)


# ------------------------------------------------------------ built-in sources


def test_npz_rows_are_the_files_rows(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((30, 4)), np.arange(30) % 3
    x[12, 1] = np.nan
    np.savez(tmp_path / "nan.npz", x=x, y=y)  # test held out by the loader: rows move
    with pytest.raises(ValueError, match=r"^Invalid 'x' of .*nan\.npz: row 12 holds nan"):
        data.load(f"npz:{tmp_path / 'nan.npz'}")
    x[12, 1] = 0.0
    np.savez(tmp_path / "lab.npz", x=x, y=y, x_test=x[:5], y_test=np.array([0, 1, 2, 9, 0]))
    with pytest.raises(ValueError, match=r"^Invalid 'y_test' of .*lab\.npz: row 3 is 9; "
                                         r"allowed: 0 <= label < 3"):
        data.load(f"npz:{tmp_path / 'lab.npz'}")


def test_npz_without_test_counts_classes_over_the_whole_file(tmp_path):
    """A class with one example may land in the held-out test: it is still a class."""
    x, y = np.arange(50.0)[:, None] * np.ones((1, 2)), np.zeros(50, dtype=np.int64)
    y[1::2] = 1
    y[split_indices(50, npz.TEST_FRACTION, npz.TEST_SEED)[1][0]] = 2
    np.savez(tmp_path / "rare.npz", x=x, y=y)
    ds = data.load(f"npz:{tmp_path / 'rare.npz'}", val_fraction=0.0)
    assert ds.num_classes == 3
    assert 2 in ds.y_test.tolist() and 2 not in ds.y_train.tolist()


def test_idx_labels_name_the_file_and_row(tmp_path):
    folder = tmp_path / "mnist"
    folder.mkdir()
    images = np.zeros((6, 2, 2), dtype=np.uint8)
    labels = np.array([0, 1, 2, 12, 4, 5], dtype=np.uint8)

    def idx(a: np.ndarray) -> bytes:
        return bytes([0, 0, 0x08, a.ndim]) + np.array(a.shape, ">u4").tobytes() + a.tobytes()
    for prefix in ("train", "t10k"):
        (folder / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx(images)))
        (folder / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx(labels)))
    with pytest.raises(ValueError, match=r"^Invalid labels in .*train-labels-idx1-ubyte\.gz: "
                                         r"row 3 is 12; allowed: 0 <= label < 10"):
        data.load("mnist", data_dir=tmp_path)


def test_every_built_in_source_is_checked_where_it_is_finished():
    x, y = np.zeros((8, 3), np.float32), np.arange(8) % 10
    bad_x = x.copy()
    bad_x[6, 2] = np.inf
    with pytest.raises(ValueError, match=r"^Invalid test inputs of src: row 6 holds inf"):
        finish("src", Arrays(x, y, bad_x, y, pixels=False, num_classes=10), 0.0, 0)
    with pytest.raises(ValueError, match=r"^Invalid train labels of src: row 2 is 10; "
                                         r"allowed: 0 <= label < 10"):
        finish("src", Arrays(x, y + 8, x, y, pixels=False, num_classes=10), 0.0, 0)


# ------------------------------------------------------------ the model against the data


@pytest.mark.parametrize(("model", "outputs"), [
    ("wide", "5 outputs per example"), ("narrow", "2 outputs per example"),
    ("one", "1 output per example"), ("flat", "an output of shape (2,) for 2 examples")])
def test_a_model_whose_width_is_not_the_class_count_is_one_line(
        model, outputs, tmp_path, monkeypatch, capsys):
    m = _module(tmp_path, monkeypatch, f"width_{model}", "")
    err = _cli_error(capsys, "compare", "--dataset", f"{m}:data", "--model", f"{m}:{model}",
                     "--steps", "4", "--batch-size", "8", "--out", str(tmp_path / "out"))
    assert err == (f"optimlab compare: error: Invalid model '{m}:{model}': it gives "
                   f"{outputs} but {m}:data has 3 classes (labels 0..2); "
                   "allowed: a model with 3 outputs")
    assert main(["compare", "--dataset", f"{m}:data", "--model", f"{m}:three",
                 "--optimizers", "sgd", "--steps", "2", "--batch-size", "8", "--seeds", "1",
                 "--out", str(tmp_path / "ok")]) == 0


# ------------------------------------------------------------ the task against the targets


def test_the_task_must_fit_the_targets_from_the_cli_and_from_python(
        tmp_path, monkeypatch, capsys):
    m = _module(tmp_path, monkeypatch, "task_fit", "")
    monkeypatch.syspath_prepend(tmp_path)
    (tmp_path / "task_fit_float.py").write_text(
        "from task_fit import _xy\n"
        "def data():\n"
        "    (x, y), (xt, yt) = _xy(60, 0), _xy(20, 1)\n"
        "    return (x, y.float()), (xt, yt.float())\n")
    regression = ("Invalid task 'regression' for {d}: its targets are torch.int64 class "
                  "labels; allowed: --task classification, or float targets to regress on")
    classification = ("Invalid task 'classification' for {d}: its targets are torch.float32 "
                      "(whole numbers: return them as integers to classify); allowed: "
                      "integer class indices, or --task regression")
    for d, task, message in ((f"{m}:data", "regression", regression),
                             ("task_fit_float:data", "classification", classification)):
        for command in ("compare", "sweep"):
            err = _cli_error(capsys, command, "--dataset", d, "--model", "mlp", "--task", task,
                             "--steps", "4", "--batch-size", "8", "--out", str(tmp_path / "o"))
            assert err == f"optimlab {command}: error: " + message.format(d=d)
    import task_fit
    python_data = task_fit.data()
    for run in (optimlab.compare, optimlab.sweep):
        with pytest.raises(ValueError, match="^" + regression.format(d="python:data")):
            run(model="mlp", data=python_data, task="regression", steps=2, batch_size=4,
                report=False, out=tmp_path / "p")


def test_a_file_of_class_labels_refuses_regression(tmp_path):
    np.savez(tmp_path / "c.npz", x=np.zeros((10, 2)), y=np.arange(10) % 2)
    ds = data.load(f"npz:{tmp_path / 'c.npz'}")
    with pytest.raises(ValueError, match=r"^Invalid task 'regression' for npz:.*c\.npz: its "
                                         r"targets are torch\.int64 class labels"):
        data.for_task(ds, "regression")


def test_a_dataset_made_by_hand_is_checked_when_python_hands_it_over():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(30, 3, generator=g), torch.arange(30) % 3
    ds = data.Dataset("hand", x[:20], y[:20], x[20:25], y[20:25], x[25:], y[25:], (3,), 3)
    bad = data.Dataset("hand", x[:20], y[:20], x[20:25], y[20:25] + 1, x[25:], y[25:], (3,), 3)
    with pytest.raises(ValueError, match=r"^Invalid val labels of hand: row 0 is 3; allowed: "
                                         r"0 <= label < 3"):
        optimlab.compare(model="mlp", data=bad, steps=2, batch_size=4, report=False)
    x[27, 0] = float("inf")
    with pytest.raises(ValueError, match=r"^Invalid test inputs of hand: row 2 holds inf"):
        optimlab.sweep(model="mlp", data=ds, steps=2, batch_size=4, report=False)

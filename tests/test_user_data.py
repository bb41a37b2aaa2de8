"""A user's own data and model (module:callable or Python objects), and the regression task."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from optimlab import data, models
from optimlab.data.dataset import split_indices
from optimlab.train import TrainConfig, check_model, evaluate, train_run

N, D = 60, 3


def _arrays(seed: int = 0, n: int = N) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, D, generator=g)
    return x, (x[:, 0] > 0).long()


class PairList(torch.utils.data.Dataset):
    """A map-style Dataset of (x, y) pairs: numpy inputs, int labels."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x.numpy(), y.tolist()

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        return self.x[i], self.y[i]


@pytest.mark.parametrize("wrap", [
    lambda x, y: (x, y),
    lambda x, y: (x.numpy(), y.numpy()),
    lambda x, y: TensorDataset(x, y),
    lambda x, y: PairList(x, y),
    lambda x, y: DataLoader(TensorDataset(x, y), batch_size=7),
], ids=["tensors", "arrays", "TensorDataset", "pairs", "DataLoader"])
def test_every_form_of_data_gives_the_same_split_as_the_built_ins(wrap):
    x, y = _arrays()
    xt, yt = _arrays(1, 20)
    ds = data.from_objects("mine", wrap(x, y), wrap(xt, yt), val_fraction=0.25, seed=3)
    keep, val = split_indices(N, 0.25, 3)  # the built-in datasets' split
    assert torch.equal(ds.x_train, x[keep]) and torch.equal(ds.y_train, y[keep])
    assert torch.equal(ds.x_val, x[val]) and torch.equal(ds.y_val, y[val])
    assert torch.equal(ds.x_test, xt) and torch.equal(ds.y_test, yt)
    assert ds.y_train.dtype == torch.int64 and ds.x_train.dtype == torch.float32
    assert (ds.input_shape, ds.num_classes) == ((D,), 2)


@pytest.mark.parametrize("train, match", [
    ((torch.zeros(5, 2), torch.zeros(4)), r"Invalid train data: 5 inputs but 4 targets"),
    (42, r"Invalid train data: int; allowed: a torch Dataset"),
    ([1, 2, 3], r"Invalid train data: a Dataset must hold \(x, y\) pairs"),
    ((torch.zeros(5, 2), torch.zeros(5, dtype=torch.bool)), r"targets of dtype torch\.bool"),
])
def test_bad_data_is_a_one_line_error(train, match):
    with pytest.raises(ValueError, match=match):
        data.from_objects("mine", train, (torch.zeros(4, 2), torch.zeros(4)))


def test_module_callable_data_and_model_are_found_in_the_current_directory(tmp_path,
                                                                           monkeypatch):
    (tmp_path / "my_problem_here.py").write_text(
        "import torch\n"
        "def data():\n"
        "    g = torch.Generator().manual_seed(0)\n"
        "    x = torch.randn(50, 4, generator=g)\n"
        "    return (x[:40], x[:40, 1] * 2.0), (x[40:], x[40:, 1] * 2.0)\n"
        "def model():\n"
        "    return torch.nn.Linear(4, 1)\n"
        "not_callable = 3\n")
    monkeypatch.chdir(tmp_path)
    ds = data.load("my_problem_here:data", val_fraction=0.25)
    assert ds.name == "my_problem_here:data" and ds.y_train.dtype == torch.float32
    assert (len(ds.y_train), len(ds.y_val), len(ds.y_test)) == (30, 10, 10)
    assert isinstance(models.build("my_problem_here:model", (4,), 1), torch.nn.Linear)
    with pytest.raises(ValueError, match=r"Invalid dataset 'my_problem_here:nope': module "
                                         r"'my_problem_here' has no attribute 'nope'"):
        data.load("my_problem_here:nope")
    with pytest.raises(ValueError, match=r"an object of type int, not a callable"):
        models.build("my_problem_here:not_callable", (4,), 1)
    with pytest.raises(ValueError, match=r"it returned an object of type tuple; "
                                         r"allowed: an nn.Module"):
        models.build("my_problem_here:data", (4,), 1)


def test_regression_trains_on_squared_error_with_loss_as_the_metric():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 2, generator=g)
    w = torch.tensor([1.5, -2.0])
    ds = data.from_objects("line", (x[:160], x[:160] @ w), (x[160:], x[160:] @ w))
    name = models.register(lambda: torch.nn.Linear(2, 1))
    config = TrainConfig(dataset="line", model=name, optimizer="sgd",
                         hyperparameters={"lr": 0.1}, steps=60, batch_size=16, eval_every=20,
                         task="regression", target_loss=0.05)
    result = train_run(config, ds)
    rec = result.record
    assert rec["final_test_acc"] is None and rec["final_val_loss"] < 1e-3
    evals = [p for p in result.curves if p.split == "test"]
    assert {p.metric for p in evals} == {"loss"}
    assert evals[0].value > 1.0 > rec["final_test_loss"]
    val = [p for p in result.curves if p.split == "val"]
    i = next(i for i, p in enumerate(val) if p.value <= 0.05)
    share = (0.05 - val[i - 1].value) / (val[i].value - val[i - 1].value)
    assert rec["time_to_target_step"] == pytest.approx(val[i - 1].step + 20 * share)
    # the loss is the mean squared error, computed here independently in float64
    torch.manual_seed(0)
    model = torch.nn.Linear(2, 1).double()
    pred = model(ds.x_test.double()).squeeze(1).detach()
    expected = float(((pred - ds.y_test.double()) ** 2).mean())
    got = evaluate(lambda z: model(z.double()), ds, "regression")["test"]["loss"]
    assert math.isclose(got, expected, rel_tol=1e-12)


def test_a_model_that_does_not_fit_the_data_fails_before_training():
    ds = data.from_objects("mine", _arrays(), _arrays(1, 10))
    name = models.register(torch.nn.Linear(5, 2))
    with pytest.raises(ValueError, match=r"Invalid model 'python:Linear_\d+' for mine "
                                         r"\(inputs \(3,\), classification\): RuntimeError"):
        check_model(TrainConfig(model=name, optimizer="sgd"), ds)
    x = _arrays()[0]
    ds = data.from_objects("mine", (x, x[:, 0]), (x[:5], x[:5, 0]))
    with pytest.raises(ValueError, match=r"output of shape \(2, 2\) for regression targets "
                                         r"of shape \(2,\)"):
        check_model(TrainConfig(model=models.register(torch.nn.Linear(3, 2)), optimizer="sgd",
                                task="regression"), ds)


def test_classification_refuses_float_targets():
    ds = data.from_objects("line", (torch.zeros(8, 2), torch.full((8,), 0.5)),
                           (torch.zeros(2, 2), torch.zeros(2)))
    with pytest.raises(ValueError, match=r"its targets are torch\.float32; allowed: integer "
                                         r"class indices, or --task regression"):
        data.for_task(ds, "classification")


def test_a_module_instance_is_deep_copied_so_every_run_starts_from_its_weights():
    net = torch.nn.Linear(3, 2)
    name = models.register(net)
    a, b = models.build(name, (3,), 2), models.build(name, (3,), 2)
    assert a is not net and b is not a
    assert torch.equal(a.weight, net.weight) and torch.equal(b.weight, net.weight)


def test_digits_is_offline_and_held_out_the_same_way_for_every_seed():
    pytest.importorskip("sklearn")
    ds = data.load("digits", val_fraction=0.1, seed=5)
    assert ds.input_shape == (1, 8, 8) and ds.num_classes == 10
    assert len(ds.y_train) + len(ds.y_val) + len(ds.y_test) == 1797
    assert float(ds.x_train.min()) >= 0.0 and float(ds.x_train.max()) <= 1.0
    other = data.load("digits", val_fraction=0.1, seed=6)
    assert torch.equal(ds.x_test, other.x_test)
    assert np.isclose(len(ds.y_test), 1797 / 6, atol=1)

"""TensorBoard export and live logging, read back with TensorBoard's own EventAccumulator
and compared with curves.csv value for value."""

from __future__ import annotations

import csv
from collections import defaultdict

import numpy as np
import pytest
from summaries import runs as summary_runs
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from optimlab.cli import main

TAGS = {("batch", "loss"): "loss/train_minibatch", ("train", "loss"): "loss/train",
        ("train", "acc"): "acc/train", ("val", "loss"): "loss/val", ("val", "acc"): "acc/val",
        ("test", "loss"): "loss/test", ("test", "acc"): "acc/test"}


@pytest.fixture(scope="module")
def npz(tmp_path_factory):
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 200)
    x = (rng.normal(0, 1, (200, 4)) + (2 * y[:, None] - 1)).astype(np.float32)
    path = tmp_path_factory.mktemp("tb") / "two.npz"
    np.savez(path, x=x, y=y)
    return path


def common(npz, out, model="logreg"):
    return ["--dataset", f"npz:{npz}", "--model", model, "--steps", "12",
            "--eval-every", "5", "--batch-size", "10", "--out", str(out)]


@pytest.fixture(scope="module")
def compared(npz, tmp_path_factory):
    """A comparison written live to TensorBoard: sgd diverges (an MLP at η=1e9), adam not."""
    base = tmp_path_factory.mktemp("tb")
    argv = ["compare", *common(npz, base / "cmp", "mlp"), "--optimizers", "sgd,adam",
            "--seeds", "2", "--lr", "sgd=1e9", "adam=0.05", "--tensorboard", str(base / "live")]
    assert main(argv) == 0
    return base / "cmp", base / "live"


def csv_curves(out):
    """run -> tag -> [(step, train_seconds, value)] from curves.csv."""
    rows = defaultdict(lambda: defaultdict(list))
    with (out / "curves.csv").open(newline="") as f:
        for r in csv.DictReader(f):
            rows[r["run"]][TAGS[r["split"], r["metric"]]].append(
                (int(r["step"]), float(r["train_seconds"]), float(r["value"])))
    return rows


def read_back(folder):
    ea = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    ea.Reload()
    return ea


def assert_same_as_csv(logdir, out, clock_rtol=1e-12):
    """`clock_rtol`: a sweep's store keeps the clocks as float32 (2^-24 relative), and
    its exported curves.csv writes each with the fewest digits that give it back."""
    expected = csv_curves(out)
    records = {r["run"]: r for r in summary_runs(out)}
    assert sorted(p.name for p in logdir.iterdir()) == sorted(expected)
    for run, tags in expected.items():
        ea = read_back(logdir / run)
        for tag, points in tags.items():
            events = ea.Scalars(tag)
            assert [e.step for e in events] == [s for s, _, _ in points]
            # event files hold float32: the values are curves.csv's, rounded to float32
            got = np.array([e.value for e in events], dtype=np.float32)
            np.testing.assert_array_equal(got, np.array([v for _, _, v in points], np.float32))
            np.testing.assert_allclose([e.wall_time for e in events],
                                       [t for _, t, _ in points], rtol=clock_rtol)
        info = plugin_data_pb2.HParamsPluginData.FromString(
            ea.PluginTagToContent("hparams")["_hparams_/session_start_info"])
        hp = info.session_start_info.hparams
        r = records[run]
        assert hp["optimizer"].string_value == r["optimizer"]
        assert hp["lr"].number_value == r["hyperparameters"]["lr"]
        assert hp["seed"].number_value == r["seed"]
        final = ea.Scalars("hparam/final_train_loss") if r["final_train_loss"] is not None \
            else []
        assert [e.value for e in final] == ([pytest.approx(r["final_train_loss"], rel=1e-6)]
                                           if final else [])
        if r.get("time_to_target_step") is not None:  # the measure to rank by, in steps
            (reached,) = ea.Scalars("hparam/time_to_target_step")
            assert reached.value == pytest.approx(r["time_to_target_step"], rel=1e-6)


def test_live_compare_writes_what_curves_csv_holds(compared):
    out, live = compared
    assert_same_as_csv(live, out, clock_rtol=2**-23)  # curves.csv: the store's float32 clocks
    records = summary_runs(out)
    assert [r["diverged"] for r in records] == [True, False, True, False]
    assert all(r["time_to_target_step"] is not None for r in records[1::2])  # adam's
    diverged = read_back(live / "sgd-seed0").Scalars("loss/train_minibatch")
    assert not np.isfinite(diverged[-1].value)  # the step where it diverged, as recorded
    assert diverged[-1].step == records[0]["diverged_step"]


def test_export_of_a_compare_folder_round_trips(compared, tmp_path, capsys):
    out, _ = compared
    assert main(["export", "tensorboard", str(out), "--logdir", str(tmp_path / "tb")]) == 0
    assert f"4 runs written to {tmp_path / 'tb'}" in capsys.readouterr().out
    assert_same_as_csv(tmp_path / "tb", out, clock_rtol=2**-23)  # the store's float32 clocks


def test_export_and_live_of_a_sweep_round_trip(npz, tmp_path):
    out, live = tmp_path / "sweep", tmp_path / "live"
    argv = ["sweep", *common(npz, out), "--optimizers", "sgd,adam", "--lr", "0.01,0.1",
            "--beta1", "0.5,0.9", "--tensorboard", str(live)]
    assert main(argv) == 0
    assert main(["export", "csv", str(out)]) == 0  # the store's curves, on demand
    assert_same_as_csv(live, out, clock_rtol=2**-23)
    assert main(["export", "tensorboard", str(out)]) == 0  # default: RUN_DIR/tensorboard
    assert_same_as_csv(out / "tensorboard", out, clock_rtol=2**-23)
    hp = plugin_data_pb2.HParamsPluginData.FromString(read_back(
        out / "tensorboard" / "adam-betas0.5,0.999-lr0.1-seed0").PluginTagToContent(
        "hparams")["_hparams_/session_start_info"]).session_start_info.hparams
    assert (hp["betas[0]"].number_value, hp["betas[1]"].number_value) == (0.5, 0.999)


def test_export_errors_are_one_line(tmp_path, capsys, monkeypatch):
    assert main(["export", "tensorboard", str(tmp_path)]) == 2
    assert "neither summary.json" in capsys.readouterr().err
    with pytest.raises(SystemExit) as bad_format:
        main(["export", "parquet", str(tmp_path)])
    assert bad_format.value.code == 2 and "'parquet'" in capsys.readouterr().err
    from optimlab.report import tensorboard

    def missing():
        raise ImportError(tensorboard.MISSING)

    monkeypatch.setattr(tensorboard, "require", missing)
    assert main(["export", "tensorboard", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "optimlab[tensorboard]" in err

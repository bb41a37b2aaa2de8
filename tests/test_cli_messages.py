"""Every error message of the CLI, read as a user reads it: exit 2, one line naming the
argument and its value, no traceback, the prefix once; and `--threads`, one rule for
every command that takes it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import exit_code
from summaries import runs as summary_runs

from optimlab.cli import main
from optimlab.commands import _args
from optimlab.lab import policy
from optimlab.lab.grid import settings


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    """A folder with a module of bad factories, and config files with wrong types."""
    root = tmp_path_factory.mktemp("files")
    (root / "factories.py").write_text("def three():\n    return 3\n")
    for name, text in {"dataset": "dataset = 3", "optimizers": "optimizers = 3",
                       "val_fraction": 'val_fraction = "x"', "download": "download = 3",
                       "data_dir": "data_dir = 3"}.items():
        (root / f"{name}.toml").write_text(text + "\n")
    return root


# (command line, words the message must hold: the argument's name first). {npz}: a small
# dataset, {files}: the folder above, {missing}: a path that does not exist.
BAD = [
    # item 6: a repeated key, and a grid that no chosen optimizer sweeps
    ("compare --lr adam=0.1 adam=0.2", ["--lr", "adam=0.2", "adam=0.1"]),
    ("compare --lr adam=0.1 --lr adam=0.2", ["--lr", "adam=0.2"]),
    ("sweep --optimizers sgd --beta2 0.99", ["beta2", "0.99", "sgd", "adam"]),
    ("sweep --optimizers sgd,rmsprop --momentum 0.9", ["momentum", "0.9"]),
    ("sweep --optimizers adam(lr=0.1) --lr 0.1,0.2", ["lr", "adam(lr=0.1)"]),
    # item 7: the messages of the issue
    ("compare --dataset nosuch", ["dataset", "'nosuch'", "mnist1d"]),
    ("sweep --dataset nosuch", ["dataset", "'nosuch'"]),
    ("compare --model factories:three", ["model", "factories:three", "type int"]),
    ("report {missing}", ["DIR", "no such folder"]),
    ("export tensorboard {missing}", ["RUN_DIR", "no such folder"]),
    ("compare --optimizers 3x=adam,=sgd", ["label", "''"]),
    ("compare --optimizers sgd,adafactor",
     ["--optimizers", "Invalid optimizer 'adafactor': no such"]),
    ("sweep --optimizers torch:pi", ["optimizer", "'torch:pi'", "type float"]),
    # argparse's types: the flag, the value and what is allowed
    ("sweep --steps 1.5", ["--steps", "'1.5'", "integer"]),
    ("sweep --seeds x", ["--seeds", "'x'"]),
    ("sweep --max-batch 0", ["--max-batch", "'0'"]),
    ("sweep --val-fraction x", ["--val-fraction", "'x'"]),
    ("sweep --lr a,b", ["lr", "'a'", "number"]),
    ("sweep --threads 0", ["--threads", "'0'"]),
    ("compare --threads x", ["--threads", "'x'"]),
    ("reproduce wilson-separable --threads -2", ["--threads", "'-2'"]),
    ("bench --threads 0", ["--threads", "'0'"]),
    ("bench --repeats x", ["--repeats", "'x'"]),
    ("sweep-bench --threads -1", ["--threads", "'-1'"]),
    ("sweep-bench --repeats 0", ["--repeats", "'0'"]),
    ("sweep-bench --step-times -1", ["--step-times", "'-1'"]),
    ("landscape --lr x", ["--lr", "'x'"]),
    ("landscape --steps 1.5", ["--steps", "'1.5'"]),
    ("landscape --seed -1", ["--seed", "'-1'"]),
    # files and settings of the wrong type
    ("compare --config {missing}", ["--config", "No such file"]),
    ("sweep --config {missing}", ["--config"]),
    ("compare --config {files}/dataset.toml", ["dataset", "3", "int"]),
    ("sweep --config {files}/dataset.toml", ["dataset", "3", "int"]),
    ("compare --config {files}/optimizers.toml", ["optimizers", "3"]),
    ("sweep --config {files}/val_fraction.toml", ["val_fraction", "'x'"]),
    ("compare --config {files}/download.toml", ["download", "3", "true or false"]),
    ("compare --config {files}/data_dir.toml", ["data_dir", "3"]),
]
# What no message may say: the prefix twice, "a int" for "an int", a parameter's name from
# the code (`spec=`), a word of Python's own errors.
NEVER = re.compile(r"error: .*error:|\ba (int|NoneType)\b|spec="
                   r"|Traceback|not supported between|object is not|expected string")


@pytest.mark.parametrize("line,words", BAD)
def test_bad_input_exits_2_with_one_line_naming_the_argument(line, words, npz, files, tmp_path,
                                                            capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(files))
    argv = line.format(files=files, missing=tmp_path / "missing").split()
    command = argv[0]
    if command in ("compare", "sweep") and "--dataset" not in argv and "--config" not in argv:
        argv += ["--dataset", f"npz:{npz}", "--batch-size", "20"]
    if command in ("compare", "sweep", "landscape", "reproduce"):
        argv += ["--out", str(tmp_path / "out")]
    assert exit_code(argv) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"optimlab {command}: error: "), err
    assert not NEVER.search(err), err
    assert all(w in err for w in words), (words, err)
    assert not (tmp_path / "out" / "summary.json").exists()


@pytest.mark.parametrize("label", ["Ädäm", "σ-adam", "adam_2.slow+", "3x"])
def test_labels_take_letters_of_any_script(label):
    cfg = settings({}, {"optimizers": f"{label}=adam, sgd"})
    assert cfg.labels == (label, "sgd")


def test_a_grid_that_some_chosen_optimizer_sweeps_is_kept():
    cfg = settings({}, {"optimizers": "sgd,adam", "beta2": "0.99,0.999"})
    assert cfg.grid_for("adam")["beta2"] == (0.99, 0.999) and "beta2" not in cfg.grid_for("sgd")
    # the default η grid is no user's request: entries that fix η sweep only what is given
    cfg = settings({}, {"optimizers": "adam(lr=0.01)", "beta1": "0.8,0.9"})
    assert cfg.grid_for("adam(lr=0.01)") == {"beta1": (0.8, 0.9)}


# --- --threads: capped at the cores with a note; by default, what helps the executor ----

@pytest.fixture
def two_cores(monkeypatch):
    monkeypatch.setattr(_args, "usable_cores", lambda: 2)
    monkeypatch.setattr(policy, "usable_cores", lambda: 2)
    previous = torch.get_num_threads()
    yield
    torch.set_num_threads(previous)


def threads_seen(monkeypatch, module: str, function: str) -> list[int]:
    """torch's thread count each time `module.function` is called (which then does nothing
    and succeeds)."""
    import importlib

    seen: list[int] = []
    target = importlib.import_module(module)
    original = getattr(target, function)

    def record(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return 0 if function == "_sweep_with" else original(*args, **kwargs)

    monkeypatch.setattr(target, function, record)
    return seen


@pytest.mark.parametrize("extra,threads,note", [
    ([], 2, False),  # vectorized: its groups side by side, one core each
    (["--executor", "sequential"], 1, False),  # one run at a time: one thread
    (["--threads", "999"], 2, True),
    (["--threads", "1"], 1, False),
])
def test_sweep_threads(extra, threads, note, two_cores, npz, tmp_path, monkeypatch, capsys):
    seen = threads_seen(monkeypatch, "optimlab.commands.sweep", "_sweep_with")
    assert main(["sweep", "--dataset", f"npz:{npz}", "--batch-size", "20", *extra,
                 "--out", str(tmp_path)]) == 0
    assert seen == [threads]
    err = capsys.readouterr().err
    assert ("note: --threads 999 is more than the 2 CPU cores" in err) == note


def test_compare_trains_runs_on_one_thread_and_tunes_on_every_core(two_cores, npz, tmp_path,
                                                                   monkeypatch, capsys):
    """One by one, a run trains on one thread; the vectorized executor (compare's default)
    and --tune's sweep take every core."""
    tuning = threads_seen(monkeypatch, "optimlab.commands.compare", "tune")
    argv = ["compare", "--dataset", f"npz:{npz}", "--model", "logreg", "--optimizers", "sgd",
            "--steps", "3", "--eval-every", "3", "--batch-size", "20", "--seeds", "1", "--tune"]
    one_by_one = [*argv, "--executor", "sequential"]
    assert main([*one_by_one, "--out", str(tmp_path / "a")]) == 0
    config = json.loads((tmp_path / "a" / "config.json").read_text())
    assert tuning == [2] and config["environment"]["torch_threads"] == 1
    assert "--threads" not in config["command"]  # picked again where the command reruns
    assert main([*one_by_one, "--threads", "999", "--out", str(tmp_path / "b")]) == 0
    config = json.loads((tmp_path / "b" / "config.json").read_text())
    assert tuning == [2, 2] and config["environment"]["torch_threads"] == 2
    assert "--threads 2" in config["command"]
    assert capsys.readouterr().err.count("note: --threads 999") == 1
    assert main([*argv, "--out", str(tmp_path / "c")]) == 0
    config = json.loads((tmp_path / "c" / "config.json").read_text())
    assert tuning == [2, 2, 2] and config["environment"]["torch_threads"] == 2


@pytest.mark.parametrize("dtype,rel", [("float64", 0.0), ("float32", 1e-5)])
def test_a_sweep_gives_the_same_records_on_one_thread_and_on_two(dtype, rel, npz, tmp_path):
    """The default changed from one thread to every core, where the vectorized executor's
    groups train side by side: a member's results must not depend on it. The two-thread
    sweep runs first in a process of its own, where its groups load the fused kernels side
    by side. float64 is equal bit for bit; in float32 the evaluated losses of a group of
    other partners (two groups of two instead of one of four) move in the last digits."""
    argv = ["sweep", "--dataset", f"npz:{npz}", "--optimizers", "sgd,adam", "--lr", "0.01,0.1",
            "--steps", "30", "--eval-every", "10", "--batch-size", "20", "--dtype", dtype]
    two = tmp_path / "2"
    subprocess.run([sys.executable, "-m", "optimlab", *argv, "--threads", "2", "--out",
                    str(two)], check=True, capture_output=True, timeout=300)
    assert main([*argv, "--threads", "1", "--out", str(tmp_path / "1")]) == 0
    records = [{r["run"]: {k: v for k, v in r.items() if k not in CLOCKS}
                for r in summary_runs(out)}
               for out in (tmp_path / "1", two)]
    assert len(records[0]) == 4 and records[0].keys() == records[1].keys()
    for run, one in records[0].items():
        other = records[1][run]
        assert one.keys() == other.keys()
        for k, v in one.items():
            if isinstance(v, float) and "loss" in k:
                assert v == pytest.approx(other[k], rel=rel, abs=0), (run, k)
            else:  # accuracies, steps, flags, the configuration: equal
                assert v == other[k], (run, k)


CLOCKS = ("train_seconds", "steps_per_s", "optimizer_ms_per_step", "time_to_target_s")

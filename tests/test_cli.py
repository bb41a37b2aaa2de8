"""The `optimlab` command as a whole: lazy imports, one error format, one list syntax,
one output-folder rule, for every command."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import exit_code

from optimlab.cli import COMMANDS, main


def test_top_level_help_imports_no_command_nor_torch_nor_matplotlib():
    code = ("import sys\nfrom optimlab.cli import main\ntry:\n    main(['--help'])\n"
            "except SystemExit:\n    pass\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('torch', 'matplotlib', 'numpy') or m.startswith('optimlab.commands.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert "usage: optimlab" in out and "sweep-bench" in out
    assert out.strip().splitlines()[-1] == "[]"


# Every command, each kind of bad value: exit 2, one line `optimlab CMD: error: ...` naming
# the value, and nothing trained (the output folder not even created).
BAD = [
    ("sweep", ["--optimizers", "adam", "--beta1", "0.9,1.5"], "1.5"),
    ("sweep", ["--optimizers", "momentum", "--momentum", "0.5,1"], "momentum"),
    ("sweep", ["--optimizers", "rmsprop", "--alpha", "1.5"], "alpha"),
    ("sweep", ["--optimizers", "adam", "--beta2", "2"], "2.0"),
    ("sweep", ["--lr", "-1"], "lr"),
    ("sweep", ["--eps", "nan"], "eps"),
    ("sweep", ["--seeds", "0"], "seeds"),
    ("sweep", ["--steps", "x"], "'x'"),
    ("sweep", ["--max-batch", "0"], "max-batch"),
    ("sweep", ["--optimizers", "sgd,adafactor"], "adafactor"),
    ("sweep", ["--threads", "0"], "threads"),
    ("sweep", ["--val-fraction", "1"], "val_fraction"),
    ("compare", ["--lr", "adam=-1"], "adam=-1"),
    ("compare", ["--seeds", "0"], "seeds"),
    ("compare", ["--optimizers", "sgd,,adafactor"], "adafactor"),
    ("compare", ["--target-acc", "2"], "'2'"),
    ("compare", ["--model", "resnet"], "resnet"),
    ("landscape", ["--optimizers", "sgd,lbfgs"], "lbfgs"),
    ("landscape", ["--steps", "0"], "steps"),
    ("landscape", ["--noise", "-1"], "noise"),
    ("landscape", ["--function", "sphere"], "sphere"),
    ("bench", ["--optimizers", "sgd,adafactor"], "adafactor"),
    ("bench", ["--models", "1M,3y"], "3y"),
    ("bench", ["--dtype", "float16"], "float16"),
    ("bench", ["--repeats", "0"], "repeats"),
    ("sweep-bench", ["--model", "resnet"], "resnet"),
    ("sweep-bench", ["--rows", "vectorized,gpu"], "gpu"),
    ("sweep-bench", ["--json", "/nonexistent-dir/x.json"], "nonexistent-dir"),
    ("sweep-bench", ["--lr", "1:0.1:3"], "lr"),
]


@pytest.mark.parametrize("command,argv,needle", BAD)
def test_bad_values_of_every_command_exit_2_with_one_line(command, argv, needle, npz, tmp_path,
                                                         capsys):
    out = tmp_path / "out"
    data = ["--dataset", f"npz:{npz}"] if command in ("sweep", "compare", "sweep-bench") else []
    place = [] if command in ("bench", "sweep-bench") else ["--out", str(out)]
    assert exit_code([command, *data, *argv, *place]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"optimlab {command}: error: ") and needle in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()


def test_report_of_a_folder_without_records_exits_2(tmp_path, capsys):
    assert exit_code(["report", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("optimlab report: error: ")


def test_every_command_is_listed_and_has_help(capsys):
    for name in COMMANDS:
        assert exit_code([name, "--help"]) == 0
        assert f"usage: optimlab {name}" in capsys.readouterr().out


def test_landscape_takes_a_comma_list_and_writes_under_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["landscape", "--function", "ravine", "--optimizers", "sgd,adam",
                 "--steps", "5", "--lr", "0.01"]) == 0
    (folder,) = (tmp_path / "runs").iterdir()
    assert folder.name.startswith("landscape-")
    record = json.loads((folder / "paths.json").read_text())
    assert list(record["functions"]["ravine"]["runs"]) == ["sgd", "adam"]

"""The examples run: the script (through the Python API and through the CLI) and the
notebook, cell by cell in a real Jupyter kernel, on a small step budget."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO
from summaries import runs as summary_runs

EXAMPLES = REPO / "examples"
STEPS = "12"

pytest.importorskip("sklearn")  # the digits come with the 'examples' extra


def _env(**extra: str) -> dict[str, str]:
    """This interpreter's environment with the repository's src first (as the tests run)."""
    path = os.pathsep.join([str(REPO / "src"), str(EXAMPLES), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, **extra}


@pytest.mark.slow
def test_the_example_script_compares_its_own_model_data_and_optimizer(tmp_path):
    out = tmp_path / "script"
    proc = subprocess.run([sys.executable, str(EXAMPLES / "compare_my_model.py"), "--steps",
                           STEPS, "--seeds", "1", "--out", str(out)], env=_env(),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    records = summary_runs(out)
    assert [r["label"] for r in records] == ["sgd(lr=0.1)", "adam", "slow",
                                             "NAdam(lr=0.002)", "sign"]
    assert records[-1]["optimizer"] == "compare_my_model:SignSGD"
    assert all(r["steps"] == int(STEPS) for r in records)
    assert "report: " in proc.stdout and (out / "report.html").is_file()


@pytest.mark.slow
def test_the_example_runs_from_the_command_line_by_import_paths(tmp_path):
    out = tmp_path / "cli"
    proc = subprocess.run(
        [sys.executable, "-m", "optimlab", "compare", "--dataset", "compare_my_model:digits",
         "--model", "compare_my_model:SmallCNN", "--optimizers",
         "adam, sign=compare_my_model:SignSGD(lr=1e-3)", "--steps", STEPS, "--eval-every", "6",
         "--seeds", "1", "--batch-size", "64", "--out", str(out)],
        env=_env(), cwd=EXAMPLES, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    records = summary_runs(out)
    assert [(r["label"], r["model"]) for r in records] == [
        ("adam", "compare_my_model:SmallCNN"), ("sign", "compare_my_model:SmallCNN")]


def _kernel(tmp_path: Path) -> tuple[str, dict[str, str]]:
    """A kernelspec of this interpreter installed under `tmp_path` (no user-level one is
    needed): its name and the environment that finds it."""
    prefix = tmp_path / "jupyter"
    subprocess.run([sys.executable, "-m", "ipykernel", "install", "--prefix", str(prefix),
                    "--name", "optimlab-test"], check=True, capture_output=True, timeout=120)
    return "optimlab-test", {"JUPYTER_PATH": str(prefix / "share" / "jupyter")}


@pytest.mark.slow
def test_the_notebook_runs_to_the_end_in_a_jupyter_kernel(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    name, env = _kernel(tmp_path)
    for key, value in _env(OPTIMLAB_EXAMPLE_STEPS=STEPS, **env).items():
        monkeypatch.setenv(key, value)
    nb = nbformat.read(EXAMPLES / "notebook.ipynb", as_version=4)
    client = nbclient.NotebookClient(nb, kernel_name=name, timeout=600,
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    plot = next(c for c in nb.cells if c.cell_type == "code" and c.source == "result.plot()")
    assert any("image/png" in o.get("data", {}) for o in plot.outputs)  # drawn inline
    folders = nb.cells[-1].outputs[0]["text"].split()
    compare_out, sweep_out = (tmp_path / f for f in folders)
    records = summary_runs(compare_out)
    assert {r["label"] for r in records} == {"sgd(lr=0.1)", "adam", "slow",
                                             "NAdam(lr=0.002)", "SignSGD"}
    assert all(r["steps"] == int(STEPS) for r in records)
    assert len(summary_runs(sweep_out)) == 3 * 4

"""What a command pays besides training: torch._dynamo is not imported to validate
optimizers, the progress display starts no thread of its own, and a command's imports are
kept out of the garbage collector's view."""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap
import threading

import pytest
from rich.console import Console

from optimlab._dynamo import SLOT, dynamo_not_imported
from optimlab.cli import main
from optimlab.commands._progress import steps_display
from optimlab.lab.entries import parse_list
from optimlab.lab.executors import Progress


def _python(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_vectorized_sweep_never_imports_dynamo():
    """Checking entries and members builds optimizers that never step: torch._dynamo (≈1 s)
    stays unimported, bad values are still refused with the class's message, and torch's
    wrapper is left as it was."""
    out = _python("""
        import sys, torch
        from optimlab.data import Dataset
        from optimlab.lab.entries import parse_list
        from optimlab.lab.executors import run_vectorized
        from optimlab.train import TrainConfig

        parse_list("sgd, momentum(nesterov=True), rmsprop, adam, adamw(weight_decay=0.1)")
        for bad in ("adam(lr=-1)", "momentum(momentum=0, nesterov=True)"):
            try:
                parse_list(bad)
            except ValueError as e:
                print(e)
        g = torch.Generator().manual_seed(0)
        x, y = torch.randn(40, 4, generator=g), torch.randint(0, 3, (40,), generator=g)
        ds = Dataset("tiny", x, y, x[:8], y[:8], x[:8], y[:8], (4,), 3)
        runs = [TrainConfig(dataset="tiny", model="mlp", optimizer=name, steps=3,
                            batch_size=8, eval_every=2, hyperparameters={"lr": 0.01})
                for name in ("sgd", "momentum", "rmsprop", "adam")]
        results = []
        run_vectorized(runs, ds, results.append)
        assert len(results) == 4 and all(r.record["steps"] == 3 for r in results)
        method = torch.optim.Optimizer.add_param_group.__wrapped__
        print("dynamo imported:", "torch._dynamo" in sys.modules,
              "slot left:", hasattr(method, "__dynamo_disable"))
        """)
    lines = out.splitlines()
    assert lines[-1] == "dynamo imported: False slot left: False"
    assert "Invalid 'adam(lr=-1)': Invalid lr: -1.0" in lines[0]
    assert "nesterov=True with momentum=0" in lines[1]


def test_with_dynamo_imported_the_wrapper_is_left_alone():
    import torch._dynamo  # noqa: F401  (what a user's torch.compile does)

    torch.optim.SGD([torch.zeros(1, requires_grad=True)])  # torch fills its slot
    method = torch.optim.Optimizer.add_param_group.__wrapped__
    before = method.__dict__.get(SLOT)
    assert before is not None and before is not method  # torch's dynamo-disabled twin
    with dynamo_not_imported():
        assert method.__dict__.get(SLOT) is before
        with pytest.raises(ValueError, match="Invalid lr: -1"):
            parse_list("adam(lr=-1)")
    assert method.__dict__.get(SLOT) is before


def test_progress_display_starts_no_thread():
    """A refresh thread would preempt a torch worker on a machine with as many cores as
    torch has threads; the bar is drawn when the executor reports instead."""
    before = threading.active_count()
    console = Console(force_terminal=True, width=80, record=True)
    with steps_display(console, "steps") as (show, _):
        assert threading.active_count() == before
        show(Progress(0, 0, 30, 60))
    assert "30/60" in console.export_text()


def test_command_process_keeps_its_imports_out_of_the_collector(tmp_path):
    """As the process's command (argv from sys.argv): the imports are frozen out of the
    garbage collector's view and collection is on again for the run, also when the
    command fails."""
    out = _python(f"""
        import gc, sys
        from optimlab import cli
        sys.argv = ["optimlab", "report", {str(tmp_path / "missing")!r}]
        code = cli.main()
        print(code, gc.isenabled(), gc.get_freeze_count() > 10000)
        """)
    assert out.split() == ["2", "True", "True"]


def test_a_command_ends_without_extension_modules_reporting_leaks():
    """The imports frozen out of the collector go back in view at exit: triton's bindings
    (which `bench` imports) check for leaked objects when they unload, and printed a page
    of "leaked function" lines at the end of every command while the imports stayed
    frozen."""
    pytest.importorskip("triton")
    proc = subprocess.run(
        [sys.executable, "-m", "optimlab", "bench", "--models", "2x10", "--optimizers", "sgd",
         "--repeats", "1", "--no-memory"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "leaked" not in proc.stdout + proc.stderr, (proc.stdout + proc.stderr)[-2000:]


def test_main_called_from_python_leaves_the_collector_alone(tmp_path, capsys):
    frozen = gc.get_freeze_count()
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "optimlab report: error" in capsys.readouterr().err
    assert gc.isenabled() and gc.get_freeze_count() == frozen


def test_report_from_the_runs_just_written_equals_one_read_from_the_store(tmp_path):
    """The sweep hands the report the runs its outputs were written from; the page is the
    one `optimlab report` draws from the store alone."""
    import torch

    from optimlab.data import Dataset
    from optimlab.lab.grid import SweepConfig, parse_values
    from optimlab.lab.sweep import Sweep
    from optimlab.report.sweep import render

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(60, 4, generator=g), torch.randint(0, 3, (60,), generator=g)
    ds = Dataset("tiny", x, y, x[:12], y[:12], x[:12], y[:12], (4,), 3)
    cfg = SweepConfig(dataset="tiny", model="mlp", optimizers=("sgd", "adam"), steps=6,
                      batch_size=10, eval_every=3, grid={"lr": parse_values("lr", "1e-2,1e-1")})
    sweep = Sweep(cfg, tmp_path, dataset=ds)
    sweep.run()
    assert [r["run"] for r in sweep.finished] == [r["run"] for r in sweep.store.runs()]
    handed = render(tmp_path, sweep.finished).read_text()
    assert render(tmp_path).read_text() == handed


def test_command_process_hands_torch_optim_to_dynamo_only_once_imported(tmp_path):
    """In a command's process torch.optim's wrapped methods run without importing
    torch._dynamo; once something imports it, torch's own wrapper takes over."""
    out = _python(f"""
        import sys, torch
        from optimlab import cli
        sys.argv = ["optimlab", "report", {str(tmp_path / "missing")!r}]
        assert cli.main() == 2
        from optimlab.optim import Adam
        p = torch.zeros(2, requires_grad=True)
        p.grad = torch.ones(2)
        opt = Adam([p], lr=0.1)  # torch's own optimizers import torch._dynamo in step()
        opt.step()
        opt.zero_grad()
        opt.load_state_dict(opt.state_dict())
        print("before:", "torch._dynamo" in sys.modules, p.grad, [round(v, 6) for v in p.tolist()])
        import torch._dynamo
        opt.zero_grad()
        twin = torch.optim.Optimizer.zero_grad.__wrapped__.__dict__["__dynamo_disable"]
        print("after:", "_until_dynamo" in twin.__qualname__)
        """)
    before, after = out.splitlines()
    assert before == "before: False None [-0.1, -0.1]"  # Adam's first step: η·sign(g)
    assert after == "after: False"


def test_stacked_evaluation_equals_each_member_alone_ties_and_nan_included():
    """`evaluate_stacked` (K members at once, argmax along made-contiguous rows) gives each
    member's `evaluate`: the same accuracy (ties go to the first class in both), the
    same loss, NaN members too."""
    import math

    import torch

    from optimlab.data import Dataset
    from optimlab.train.evaluation import evaluate, evaluate_stacked

    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(700, 5, generator=g), torch.randint(0, 4, (700,), generator=g)
    ds = Dataset("tiny", x, y, x[:90], y[:90], x[600:], y[600:], (5,), 4)
    w = torch.randn(3, 4, 5, generator=g, dtype=torch.float32)
    w[1] = w[1, :1].expand(4, 5)  # every class the same score: argmax ties on every row
    w[2, 0, 0] = math.nan         # NaN logits for class 0
    stacked = evaluate_stacked(lambda xb: torch.einsum("kcd,nd->kcn", w, xb), 3, ds)
    for k in range(3):
        alone = evaluate(lambda xb, k=k: xb @ w[k].T, ds)
        for split, metrics in alone.items():
            assert stacked[k][split]["acc"] == metrics["acc"]
            a, b = stacked[k][split]["loss"], metrics["loss"]
            assert (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=1e-6)
    assert stacked[1]["test"]["acc"] == int((y[600:] == 0).sum()) / 100  # ties: class 0


def test_a_sweep_draws_no_png_and_imports_no_matplotlib_unless_asked(npz, tmp_path):
    """matplotlib's import and text layout cost a short sweep more than its training: the
    page's charts are interactive, and the PNGs are drawn with --png only."""
    from optimlab.report.sweep import STATIC

    out = tmp_path / "sweep"
    argv = ["sweep", "--dataset", f"npz:{npz}", "--optimizers", "sgd,adam", "--lr",
            "1e-2,1e-1", "--steps", "4", "--eval-every", "2", "--batch-size", "20",
            "--halving", "--min-steps", "2", "--threads", "1", "--out", str(out)]
    printed = _python(f"""
        import sys
        from optimlab.cli import main
        assert main({argv!r}) == 0
        print("matplotlib imported:", "matplotlib" in sys.modules)
        """)
    assert "matplotlib imported: False" in printed
    assert not [p.name for p in out.glob("*.png")]
    page = (out / "report.html").read_text()
    assert "optimlab report DIR --png" in page and "<img" not in page
    assert main(["report", str(out), "--png"]) == 0
    drawn = sorted(p.name for p in out.glob("*.png"))
    # one Adam β pair: no heatmap
    assert drawn == sorted(set(STATIC) - {"adam_betas.png"})
    assert (out / "report.html").read_text().count('<img alt="') == len(drawn)
    # a report without --png leaves no figure of an earlier state beside the page
    assert main(["report", str(out)]) == 0
    assert not list(out.glob("*.png"))

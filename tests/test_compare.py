"""`optimlab compare` and `optimlab report`, called through main(argv) on a tiny npz dataset."""

from __future__ import annotations

import base64
import csv
import gzip
import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
from summaries import runs as summary_runs
from summaries import summary

from optimlab import lab, report
from optimlab.cli import main
from optimlab.lab.policy import default_threads
from optimlab.lab.store import Store
from optimlab.report.table import mean_std, table_rows

STEPS, EVAL_EVERY, SEEDS = 30, 10, 2
OPTIMIZERS = ("sgd", "momentum", "rmsprop", "adam")
RECORD_KEYS = {"run", "optimizer", "hyperparameters", "seed", "final_test_acc", "best_test_acc",
               "final_train_loss", "steps", "train_seconds", "optimizer_ms_per_step",
               "time_to_target_s", "diverged"}


@pytest.fixture(scope="module")
def npz(tmp_path_factory) -> Path:
    """Two overlapping classes in 5-D (Bayes accuracy 87%): 400 examples, 80 held out as test."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    x = (rng.normal(0, 1, (400, 5)) + 0.5 * (2 * y[:, None] - 1)).astype(np.float32)
    path = tmp_path_factory.mktemp("data") / "blobs.npz"
    np.savez(path, x=x, y=y)
    return path


def compare_argv(npz: Path, out: Path, *extra: str) -> list[str]:
    return ["compare", "--dataset", f"npz:{npz}", "--model", "mlp", "--steps", str(STEPS),
            "--eval-every", str(EVAL_EVERY), "--seeds", str(SEEDS), "--batch-size", "8",
            "--target-acc", "0.75", "--out", str(out), *extra]


@pytest.fixture(scope="module")
def compared(npz, tmp_path_factory) -> Path:
    """One comparison through the CLI; sgd's η makes it diverge."""
    out = tmp_path_factory.mktemp("runs") / "cmp"
    assert main(compare_argv(npz, out, "--lr", "sgd=1e9", "adam=0.05")) == 0
    return out


def read_curves(out: Path) -> list[dict[str, str]]:
    with (out / "curves.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def test_summary_has_one_complete_record_per_run(compared):
    records = summary_runs(compared)
    assert [(r["optimizer"], r["seed"]) for r in records] == [
        (o, s) for s in range(SEEDS) for o in OPTIMIZERS]
    assert all(RECORD_KEYS <= set(r) for r in records)
    by = {(r["optimizer"], r["seed"]): r for r in records}
    assert by["adam", 0]["hyperparameters"] == {"lr": 0.05}
    assert by["rmsprop", 1]["hyperparameters"] == {"lr": lab.DEFAULT_LR["rmsprop"]}
    for o in ("momentum", "rmsprop", "adam"):
        r = by[o, 0]
        assert not r["diverged"] and r["steps"] == STEPS
        assert r["final_test_acc"] > 0.6 and r["best_test_acc"] >= r["final_test_acc"]
        assert r["time_to_target_s"] is not None and 0 < r["time_to_target_s"] <= r["train_seconds"]


def test_time_to_target_is_the_val_curves_crossing_in_steps(compared):
    """Each run's steps to target: the linear crossing of target_acc between the two
    evaluations of curves.csv around it; examples seen are those steps x batch size."""
    rows = read_curves(compared)
    records = summary_runs(compared)
    # some crossings fall between evaluations, so the interpolation is exercised
    assert any(r["time_to_target_step"] is not None and r["time_to_target_step"] % EVAL_EVERY
               for r in records)
    for r in records:
        val = [(int(x["step"]), float(x["value"])) for x in rows if x["run"] == r["run"]
               and (x["split"], x["metric"]) == ("val", "acc")]
        i = next((i for i, (_, v) in enumerate(val) if v >= r["target_acc"]), None)
        if i is None:
            assert r["time_to_target_step"] is None is r["time_to_target_examples"]
            continue
        (s0, v0), (s1, v1) = val[max(i - 1, 0)], val[i]
        share = 1.0 if i == 0 else (r["target_acc"] - v0) / (v1 - v0)
        assert r["time_to_target_step"] == pytest.approx(s0 + share * (s1 - s0))
        assert r["time_to_target_examples"] == pytest.approx(
            r["time_to_target_step"] * r["batch_size"])
        assert r["time_to_target_optimizer_s"] == pytest.approx(
            r["optimizer_ms_per_step"] / 1e3 * r["time_to_target_step"])


def test_a_diverging_learning_rate_is_recorded_and_the_comparison_goes_on(compared):
    records = summary_runs(compared)
    sgd = [r for r in records if r["optimizer"] == "sgd"]
    assert all(r["diverged"] and 1 <= r["diverged_step"] < STEPS for r in sgd)
    assert all(r["steps"] == r["diverged_step"] - 1 for r in sgd)
    assert len(records) == len(OPTIMIZERS) * SEEDS


def test_curves_csv_is_long_format_and_agrees_with_the_summary(compared):
    rows = read_curves(compared)
    assert list(rows[0]) == ["run", "step", "train_seconds", "split", "metric", "value"]
    for r in summary_runs(compared):
        mine = [row for row in rows if row["run"] == r["run"]]
        batch = [row for row in mine if row["split"] == "batch"]
        assert len(batch) == (r["diverged_step"] or r["steps"])
        test_acc = [(int(row["step"]), float(row["value"])) for row in mine
                    if (row["split"], row["metric"]) == ("test", "acc")]
        expected_steps = sorted({0, *range(EVAL_EVERY, r["steps"] + 1, EVAL_EVERY), r["steps"]})
        assert [s for s, _ in test_acc] == expected_steps
        assert test_acc[-1][1] == pytest.approx(r["final_test_acc"])
        assert max(v for _, v in test_acc) == pytest.approx(r["best_test_acc"])
        secs = [float(row["train_seconds"]) for row in batch]
        assert secs == sorted(secs) and secs[-1] == pytest.approx(r["train_seconds"])


def test_summary_json_holds_every_pair_on_each_measure(compared):
    rows = summary(compared)["comparisons"]
    measures = ["final_test_acc", "final_test_loss", "time_to_target_step"]
    pairs = [(a, b) for i, a in enumerate(OPTIMIZERS) for b in OPTIMIZERS[i + 1:]]
    assert [(r["a"], r["b"], r["measure"]) for r in rows] == [
        (a, b, m) for a, b in pairs for m in measures]
    # 2 seeds: no outcome reaches 0.05; 3 measures need 3 x 2/2^n <= 0.05, n = 7
    assert all(r["verdict"] == "too few seeds" and r["seeds_needed"] == 7 for r in rows)
    assert all(r["alpha"] == 0.05 and "sign-flip" in r["test"] for r in rows)
    records = {(r["optimizer"], r["seed"]): r for r in summary_runs(compared)}
    row = next(r for r in rows if (r["a"], r["b"], r["measure"]) == (
        "rmsprop", "adam", "final_test_acc"))
    assert row["n"] == SEEDS and row["difference"] == pytest.approx(np.mean(
        [records["rmsprop", s]["final_test_acc"] - records["adam", s]["final_test_acc"]
         for s in range(SEEDS)]))


def test_config_json_holds_the_command_and_environment(compared):
    meta = json.loads((compared / "config.json").read_text())
    assert meta["command"].startswith("optimlab compare --dataset npz:")
    assert ("--optimizers 'sgd=sgd(lr=1000000000.0), momentum=momentum(lr=0.5), "
            "rmsprop=rmsprop(lr=0.01), adam=adam(lr=0.05)'") in meta["command"]
    assert meta["settings"]["steps"] == STEPS and meta["settings"]["seeds"] == SEEDS
    assert {"torch", "python", "cpu", "torch_threads"} <= set(meta["environment"])
    assert "--executor vectorized" in meta["command"]
    assert meta["environment"]["torch_threads"] == default_threads("vectorized")


# sha256 of plotly-cartesian.min.js in the npm package plotly.js-cartesian-dist-min 4.1.1,
# whose tarball matches the registry's integrity hash (src/optimlab/report/vendor/README.md)
PLOTLY_CARTESIAN_SHA256 = "79542150855a52c567260e3137095dbe2b744e6d702a5cabe67da246942fba7a"
PACKED = r'<script type="application/gzip;base64" id="optimlab-(\w+)">([A-Za-z0-9+/=]+)</script>'


def test_report_html_is_self_contained(compared):
    page = (compared / "report.html").read_text()
    assert "optimlab compare --dataset" in page and "Environment" in page
    assert (compared / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # plotly's cartesian bundle embedded once, compressed, byte for byte the npm release's;
    # the data beside it; every script inline; then nothing refers elsewhere
    packed = {name: gzip.decompress(base64.b64decode(blob))
              for name, blob in re.findall(PACKED, page)}
    assert sorted(packed) == ["data", "plotly"]
    assert hashlib.sha256(packed["plotly"]).hexdigest() == PLOTLY_CARTESIAN_SHA256
    assert {c["div"] for c in json.loads(packed["data"])["curves"]} == {
        "train-loss", "test-loss", "test-acc"}
    assert all("src" not in tag for tag in re.findall(r"<script[^>]*>", page))
    ours = re.sub(PACKED, "", page)
    assert all(s.startswith("data:") for s in re.findall(r'src="([^"]*)"', ours))
    text = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", ours)
    assert text.count("<img ") == 1  # curves.png, in the static figures
    assert not re.search(r"https?:|//[a-z]|<link|@import|url\(", text, re.I)
    assert not re.search(rb"https?:", packed["data"])


def test_report_rerenders_from_the_saved_records_without_training(compared, tmp_path, monkeypatch,
                                                                 capsys):
    out = tmp_path / "copy"
    out.mkdir()
    for name in ("config.json", "summary.json", "curves.csv"):
        (out / name).write_bytes((compared / name).read_bytes())
    records = summary_runs(out)
    records[0]["final_test_acc"] = 0.123456  # an edit only the saved records carry

    (out / "summary.json").write_text(json.dumps({"runs": records}))

    def no_training(*args, **kwargs):
        raise AssertionError("report must not train")

    monkeypatch.setattr("optimlab.lab.executors.train_run", no_training)
    monkeypatch.setattr("optimlab.train.loop.train_run", no_training)
    assert main(["report", str(out)]) == 0
    assert str(out / "report.html") in capsys.readouterr().out
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert "12.35%" in (out / "report.html").read_text()


def test_report_of_a_folder_without_records_is_a_clean_error(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path) in err and "summary.json" in err and "Traceback" not in err


def exit_code(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as e:  # argparse exits by itself
        return int(e.code)


@pytest.mark.parametrize("extra, flag, value", [
    (["--steps", "0"], "--steps", "0"),
    (["--steps", "many"], "--steps", "many"),
    (["--seeds", "-2"], "--seeds", "-2"),
    (["--optimizers", "sgd,lbfgs"], "--optimizers", "'lbfgs'"),
    (["--lr", "lbfgs=0.1"], "--lr", "lbfgs=0.1"),
    (["--lr", "adam=-1"], "--lr", "adam=-1"),
    (["--target-acc", "1.5"], "--target-acc", "1.5"),
    (["--val-fraction", "1"], "--val-fraction", "1"),
    (["--model", "resnet"], "--model", "resnet"),
    (["--device", "tpu"], "--device", "tpu"),
    (["--epochs", "2"], "--epochs", "--steps"),
    (["--batch-size", "500"], "batch_size", "500"),
    (["--alpha", "0.5"], "--alpha", "0.5"),
    (["--alpha", "0"], "--alpha", "0"),
])
def test_bad_flags_exit_2_naming_the_flag_and_value(npz, tmp_path, capsys, extra, flag, value):
    out = tmp_path / "out"
    assert exit_code(compare_argv(npz, out, *extra)) == 2
    err = capsys.readouterr().err
    assert flag in err and value in err and "Traceback" not in err
    assert not (out / "summary.json").exists()


def test_an_unknown_dataset_is_a_clean_error(tmp_path, capsys):
    argv = ["compare", "--dataset", "imagenet", "--out", str(tmp_path / "o")]
    assert exit_code(argv) == 2
    err = capsys.readouterr().err
    assert "imagenet" in err and "mnist1d" in err and "Traceback" not in err


def test_out_folder_with_a_comparison_is_not_overwritten(compared, npz, capsys):
    before = (compared / "summary.json").read_bytes()
    assert exit_code(compare_argv(npz, compared)) == 2
    assert "--out" in capsys.readouterr().err
    assert (compared / "summary.json").read_bytes() == before


# ---- the lab and report layers directly -------------------------------------------------------

def small_config(**kw) -> lab.CompareConfig:
    base = dict(model="logreg", optimizers=("sgd", "adam"), steps=6, eval_every=3, seeds=2,
                batch_size=8)
    return lab.CompareConfig(**(base | kw))



def test_summary_json_is_written_once_after_the_last_run_and_an_interrupt_there_keeps_it(
        npz, tmp_path, monkeypatch):
    """One write per finished run, then one with everything; a Ctrl-C while the comparisons
    are computed leaves the summary of every finished run."""
    import optimlab.lab.compare as compare
    import optimlab.lab.experiment as experiment
    from optimlab import data
    real, writes = experiment.os.replace, []

    def replace(src, dst):
        if Path(dst).name == "summary.json":
            writes.append(json.loads(Path(src).read_text()))
        return real(src, dst)

    monkeypatch.setattr(experiment.os, "replace", replace)
    dataset = data.load(f"npz:{npz}")
    lab.run_compare(small_config(), tmp_path / "whole", dataset=dataset)
    assert [len(w["runs"]) for w in writes] == [1, 2, 3, 4, 4]
    assert [sorted(w) for w in writes] == [["runs"]] * 4 + [["audit", "comparisons", "runs"]]
    assert writes[-1] == summary(tmp_path / "whole")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(compare, "comparisons", interrupted)
    with pytest.raises(KeyboardInterrupt):
        lab.run_compare(small_config(), tmp_path / "cut", dataset=dataset)
    assert sorted(r["run"] for r in summary_runs(tmp_path / "cut")) == sorted(
        r["run"] for r in writes[-1]["runs"])

class NormRecorder:
    """A diagnostics-style callback: records |w| after every step."""

    name = "norms"

    def __init__(self):
        self.norms = []

    def on_step_end(self, step, model, optimizer):
        self.norms.append(float(sum(p.detach().norm() ** 2 for p in model.parameters()) ** 0.5))

    def result(self):
        return {"norms": self.norms}


def test_callback_results_go_to_diagnostics_json_and_their_figures_into_the_report(
        npz, tmp_path, monkeypatch):
    from optimlab import data
    out = tmp_path / "diag"
    lab.run_compare(small_config(), out, dataset=data.load(f"npz:{npz}"),
                    callbacks=lambda config, run: [NormRecorder()])
    diagnostics = json.loads((out / "diagnostics.json").read_text())
    assert [(d["run"], d["optimizer"], d["seed"]) for d in diagnostics] == [
        ("sgd-seed0", "sgd", 0), ("adam-seed0", "adam", 0),
        ("sgd-seed1", "sgd", 1), ("adam-seed1", "adam", 1)]
    assert all(len(d["diagnostics"]["norms"]["norms"]) == 6 for d in diagnostics)

    seen = []

    def fake_render(records, out_dir):  # stands in for the diagnostics figures
        seen.append(records)
        extra = Path(out_dir) / "extra.png"
        extra.write_bytes((Path(out_dir) / "curves.png").read_bytes())
        return [extra]

    monkeypatch.setattr("optimlab.report.diagnostics.render", fake_render)
    page = report.render(out).read_text()
    assert seen == [diagnostics]
    assert page.count('<img alt=') == 2


def test_a_crash_keeps_the_runs_already_finished(npz, tmp_path):
    from optimlab import data
    out = tmp_path / "crash"

    def callbacks(config, run):
        if run == "sgd-seed1":
            raise RuntimeError("power cut")
        return []

    comparison = lab.Comparison(small_config(), out, dataset=data.load(f"npz:{npz}"))
    with pytest.raises(RuntimeError, match="power cut"):
        comparison.run(callbacks)
    records = summary_runs(out)
    assert [r["run"] for r in records] == ["sgd-seed0", "adam-seed0"]
    assert {row["run"] for row in read_curves(out)} == {"sgd-seed0", "adam-seed0"}
    assert report.render(out).is_file()  # the partial comparison still renders


def test_alpha_reaches_the_comparisons_and_the_terminal_table(npz, tmp_path, capsys):
    out = tmp_path / "alpha"
    assert main(compare_argv(npz, out, "--optimizers", "adam,sgd", "--alpha", "0.1")) == 0
    rows = summary(out)["comparisons"]
    assert {r["alpha"] for r in rows} == {0.1} and len(rows) == 3
    assert {r["seeds_needed"] for r in rows} == {6}  # 3 x 2/2^6 <= 0.1 < 3 x 2/2^5
    terminal = capsys.readouterr().out
    assert "paired comparisons" in terminal and "α = 0.1" in terminal
    assert "difference [interval]" in terminal  # brackets printed, not taken for markup
    assert "adam vs sgd" in terminal and "too few seeds (needs 6)" in terminal


def test_an_alpha_outside_zero_to_half_is_refused_before_training(npz, tmp_path):
    from optimlab import data
    with pytest.raises(ValueError, match=r"Invalid alpha: 0.7; allowed: a number in \(0, 0.5\)"):
        lab.Comparison(small_config(), tmp_path / "a", dataset=data.load(f"npz:{npz}"), alpha=0.7)
    assert not (tmp_path / "a").exists()


def record(label, seed, acc, loss, target_step, **extra):
    return {"run": f"{label}-seed{seed}", "optimizer": label, "label": label, "seed": seed,
            "final_test_acc": acc, "final_test_loss": loss, "time_to_target_step": target_step,
            "steps_planned": 100, "target_acc": 0.8, "target_loss": None,
            "final_val_loss": loss, **extra}


def test_comparisons_pair_runs_by_seed_and_skip_what_the_records_lack():
    from optimlab.lab.compare import comparisons
    records = [record("adam", s, 0.9, 0.3, 40) for s in range(6)] + [
        record("sgd", s, 0.8, 0.5, None) for s in (5, 4, 3, 2, 1, 0, 9)]  # seed 9: no pair
    rows = comparisons(records)
    assert [(r["a"], r["b"], r["measure"], r["n"]) for r in rows] == [
        ("adam", "sgd", m, 6) for m in ("final_test_acc", "final_test_loss",
                                        "time_to_target_step")]
    assert rows[2]["difference"] == pytest.approx(40 - 100)  # sgd never reached: the budget
    assert rows[2]["not_reached"] == [0, 6]
    # regression without a target: no accuracy, no time to target
    plain = [record(lbl, s, None, loss, None, target_acc=None) for lbl, loss in
             (("a", 1.0), ("b", 2.0)) for s in range(2)]
    assert [r["measure"] for r in comparisons(plain)] == ["final_test_loss"]
    # a target but no validation split to reach it on: no time to target, not "not reached"
    no_val = [record(lbl, s, 0.9, 1.0, None, final_val_loss=None) for lbl in "ab"
              for s in range(2)]
    assert "time_to_target_step" not in [r["measure"] for r in comparisons(no_val)]


def test_epochs_count_full_batches_of_the_training_set():
    # 288 training examples (400 - 80 test - 32 val) in batches of 8: 36 steps per epoch
    assert small_config(steps=None, epochs=3).steps_for(288) == 108
    assert small_config(steps=None).steps_for(288) == lab.DEFAULT_STEPS
    with pytest.raises(ValueError, match="steps and epochs"):
        small_config(steps=5, epochs=1)


def test_table_mean_and_std_over_seeds():
    base = {"hyperparameters": {"lr": 0.1}, "final_train_loss": 0.5, "steps_per_s": 100.0,
            "optimizer_ms_per_step": 0.25, "target_acc": 0.8, "diverged": False,
            "final_val_acc": 0.7,
            "diverged_step": None, "time_to_target_step": None, "time_to_target_s": None}
    records = [base | {"optimizer": "adam", "final_test_acc": a, "best_test_acc": a}
               for a in (0.90, 0.92, 0.97)]
    records.append(base | {"optimizer": "sgd", "final_test_acc": None, "best_test_acc": 0.5,
                           "diverged": True, "diverged_step": 7})
    assert mean_std([0.90, 0.92, 0.97, None]) == pytest.approx((0.93, 0.036055512754639), 1e-12)
    adam, sgd = table_rows(records)
    assert adam[:4] == ["adam", "lr=0.1", "93.0 ± 3.6 %", "93.0 ± 3.6 %"]
    assert adam[5] == "not reached (0/3)" and adam[8] == "0/3"
    assert sgd[2] == "–" and sgd[8] == "1/1 (step 7)"
    no_val = [r | {"final_val_acc": None} for r in records[:3]]  # --val-fraction 0
    assert table_rows(no_val)[0][5] == "–"
    # steps (the ranking's measure) over the seeds that reached, the optimizer's cost beside
    reached = [r | {"time_to_target_step": t, "time_to_target_examples": 32 * t,
                    "time_to_target_optimizer_s": t / 1e3} for r, t in zip(records[:2], (10, 20))]
    assert table_rows([*reached, records[2]])[0][5] == (
        "15 steps, 480 examples; optimizer 0.015 s (2/3)")


def test_ctrl_c_keeps_finished_runs_and_says_how_to_render_them(npz, tmp_path, monkeypatch,
                                                                capsys):
    import optimlab.lab.executors as executors
    real, calls = executors.train_run, []

    def interrupted_second_run(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(executors, "train_run", interrupted_second_run)
    out = tmp_path / "ctrl-c"
    assert main(compare_argv(npz, out, "--optimizers", "adam,sgd", "--executor",
                             "sequential")) == 130
    assert f"optimlab report {out}" in capsys.readouterr().out.replace("\n", "")
    assert [r["run"] for r in summary_runs(out)] == ["adam-seed0"]
    assert main(["report", str(out)]) == 0


CLOCKS = ("train_seconds", "steps_per_s", "optimizer_ms_per_step", "time_to_target_s",
          "time_to_target_optimizer_s")


def without_clocks(out: Path) -> tuple[list[dict], list[tuple]]:
    """summary.json and curves.csv of a folder, less what wall clocks decide."""
    records = [{k: v for k, v in r.items() if k not in CLOCKS}
               for r in summary_runs(out)]
    return records, [(r["run"], r["step"], r["split"], r["metric"], r["value"])
                     for r in read_curves(out)]


# Runs the CLI in a child process that sends itself SIGTERM once `after` runs are written:
# the kill lands at the same place every time.
TERM_AFTER = """
import os, signal, sys
import optimlab.lab.compare as c
real, done = c._Store.add, []
def add(self, result):
    record = real(self, result)
    done.append(record)
    if len(done) == int(sys.argv[1]):
        os.kill(os.getpid(), signal.SIGTERM)
    return record
c._Store.add = add
from optimlab.cli import main
from optimlab.lab.policy import default_threads
from optimlab.lab.store import Store
raise SystemExit(main(sys.argv[2:]))
"""


def test_sigterm_mid_compare_then_the_same_command_resumes_to_the_uninterrupted_result(
        npz, tmp_path):
    import subprocess
    import sys
    argv = compare_argv(npz, tmp_path / "term", "--optimizers", "adam,sgd", "--threads", "1",
                        "--executor", "sequential")
    proc = subprocess.run([sys.executable, "-c", TERM_AFTER, "3", *argv],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 143, proc.stderr
    assert "the same command resumes" in proc.stdout.replace("\n", " ")
    kept = summary_runs(tmp_path / "term")
    assert [r["run"] for r in kept] == ["adam-seed0", "sgd-seed0", "adam-seed1"]
    with (tmp_path / "term" / "curves.csv").open("a") as f:
        f.write("sgd-seed1,10,0.01,val,acc")  # a run cut short mid-line: dropped on resume
    assert main(argv) == 0
    whole = compare_argv(npz, tmp_path / "whole", "--optimizers", "adam,sgd", "--threads", "1",
                        "--executor", "sequential")
    assert main(whole) == 0
    assert without_clocks(tmp_path / "term") == without_clocks(tmp_path / "whole")
    # kept, not re-run
    assert [r["run"] for r in kept] == [r["run"] for r in summary_runs(tmp_path / "term")][:3]


@pytest.mark.parametrize("change,named", [
    (["--steps", "40"], "steps 30 there, 40 now"),
    (["--seeds", "3"], "seeds 2 there, 3 now"),
    (["--lr", "adam=0.5"], "lr {} there, {'adam': 0.5} now"),
])
def test_compare_into_a_folder_with_other_settings_is_refused(npz, tmp_path, capsys, change,
                                                             named):
    out = tmp_path / "o"
    assert main(compare_argv(npz, out, "--optimizers", "adam")) == 0
    before = (out / "summary.json").read_text()
    capsys.readouterr()
    assert main([*compare_argv(npz, out, "--optimizers", "adam"), *change]) == 2
    err = capsys.readouterr().err
    assert err.startswith("optimlab compare: error: Invalid --out") and named in err, err
    assert (out / "summary.json").read_text() == before


def test_a_full_disk_while_writing_records_says_what_is_safe_and_resumes(npz, tmp_path,
                                                                        monkeypatch, capsys):
    import errno

    import optimlab.lab.experiment as experiment
    real, writes = experiment.os.replace, []

    def replace(src, dst):  # the 3rd summary.json fails as on a full disk
        if Path(dst).name == "summary.json":
            writes.append(dst)
            if len(writes) == 3:
                raise OSError(errno.ENOSPC, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(experiment.os, "replace", replace)
    out = tmp_path / "full"
    argv = compare_argv(npz, out, "--optimizers", "adam,sgd")
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    # the third run is in the store before its summary.json could be written
    assert err == (f"optimlab compare: error: the disk is full while writing {out}: 3 "
                   "finished runs are safe there; free space and run the same compare command "
                   "again to resume")
    assert len(summary_runs(out)) == 2
    assert Store(out).finished_count() == 3
    assert not list(out.glob("*.tmp"))
    monkeypatch.setattr(experiment.os, "replace", real)
    assert main(argv) == 0
    assert [r["run"] for r in summary_runs(out)] == [
        "adam-seed0", "sgd-seed0", "adam-seed1", "sgd-seed1"]
    runs = {r["run"] for r in read_curves(out)}
    assert runs == {"adam-seed0", "sgd-seed0", "adam-seed1", "sgd-seed1"}
    assert len(read_curves(out)) == len(set(map(tuple, (r.values() for r in read_curves(out)))))


def test_vectorized_members_equal_their_single_runs_in_float64(npz, tmp_path, monkeypatch):
    """Every seed and entry as members of one group; each record (steps_per_s and
    optimizer_ms_per_step aside: the member's share of the group's) is its train_run's."""
    from dataclasses import replace

    from test_sweep import assert_same_record

    from optimlab import data
    from optimlab.lab.executors import Group
    from optimlab.train import train_run

    groups = []
    monkeypatch.setattr(Group, "run", lambda self, *a, real=Group.run, **kw: (
        groups.append(len(self.configs)), real(self, *a, **kw))[1])
    ds = data.load(f"npz:{npz}")
    comparison = lab.Comparison(small_config(model="mlp", optimizers=OPTIMIZERS, seeds=3,
                                             steps=40, eval_every=10), tmp_path, dataset=ds)
    comparison.configs = [replace(c, dtype="float64") for c in comparison.configs]
    said = []
    records = {r["run"]: r for r in comparison.run(say=said.append)}
    assert sum(groups) == 12 and said == []  # one group, or its halves side by side
    for config in comparison.configs:
        single = train_run(config, ds).record
        member = records[lab.compare.run_name(config)]
        assert member.keys() == {"run", *single}
        assert_same_record({k: v for k, v in member.items() if k != "run"}, single, rel=1e-9)


def test_what_the_vectorized_executor_cannot_take_trains_one_by_one_saying_why(
        npz, tmp_path):
    from test_sweep import assert_same_record

    from optimlab import data

    ds = data.load(f"npz:{npz}")
    cfg = small_config(schedule="cosine")
    said = []
    vectorized = lab.Comparison(cfg, tmp_path / "v", dataset=ds).run(say=said.append)
    sequential = lab.Comparison(cfg, tmp_path / "s", dataset=ds).run(executor="sequential")
    assert len(said) == 1 and "schedule 'cosine'" in said[0] and "one by one" in said[0]
    assert [r["run"] for r in vectorized] == [r["run"] for r in sequential]
    for v, s in zip(vectorized, sequential, strict=True):
        assert_same_record(v, s)


def test_an_unknown_executor_is_refused(npz, tmp_path, capsys):
    from optimlab import data
    comparison = lab.Comparison(small_config(), tmp_path / "x", dataset=data.load(f"npz:{npz}"))
    with pytest.raises(ValueError, match="Invalid executor: 'ray'; allowed: vectorized, "
                                         "sequential"):
        comparison.run(executor="ray")
    assert exit_code(compare_argv(npz, tmp_path / "y", "--executor", "ray")) == 2
    assert "--executor: invalid choice: 'ray'" in capsys.readouterr().err


def test_compare_keeps_its_runs_in_the_run_store_and_writes_the_files_from_it(compared):
    """One store for compare and sweep: every finished run is a row of sweep.sqlite (named
    as compare names it), and summary.json and curves.csv hold exactly what it holds."""
    from optimlab.analysis.store import read_meta, read_runs

    runs = read_runs(compared)
    assert [r["run"] for r in runs] == [f"{o}-seed{s}" for s in range(SEEDS) for o in OPTIMIZERS]
    assert all(r["roles"] == ["compare"] for r in runs)
    assert summary_runs(compared) == [r["summary"] for r in runs]
    stored = [(r["run"], p.step, np.float32(p.train_seconds), p.split, p.metric,
               np.float32(p.value)) for r in runs for p in r["curves"]]
    written = [(c["run"], int(c["step"]), np.float32(c["train_seconds"]), c["split"],
                c["metric"], np.float32(c["value"])) for c in read_curves(compared)]
    assert [s[:5] for s in written] == [s[:5] for s in stored]
    assert np.array_equal([s[5] for s in written], [s[5] for s in stored], equal_nan=True)
    assert read_meta(compared)["settings"]["seeds"] == SEEDS  # what a resume must match


def test_a_compare_folder_of_an_earlier_version_is_refused_not_overwritten(npz, tmp_path,
                                                                           capsys):
    out = tmp_path / "old"
    out.mkdir()
    (out / "summary.json").write_text("[]\n")  # records without a store beside them
    assert main(compare_argv(npz, out)) == 2
    err = capsys.readouterr().err
    assert f"Invalid --out {str(out)!r}: its runs are in no run store (sweep.sqlite)" in err
    assert not (out / "sweep.sqlite").exists()


def test_compare_and_sweep_train_through_one_registry_of_executors(npz, tmp_path, monkeypatch):
    from optimlab import data
    from optimlab.lab import executors
    from optimlab.lab.grid import SweepConfig

    assert set(lab.compare.EXECUTORS) <= set(executors.EXECUTORS)
    with pytest.raises(ValueError, match="allowed: vectorized, sequential, processes, ray"):
        SweepConfig(executor="threads")
    jobs = []
    real = executors.EXECUTORS["sequential"]
    monkeypatch.setitem(executors.EXECUTORS, "sequential",
                        lambda job: jobs.append(len(job.configs)) or real(job))
    records = lab.run_compare(small_config(), tmp_path, dataset=data.load(f"npz:{npz}"),
                              executor="sequential")
    assert jobs == [4] and len(records) == 4

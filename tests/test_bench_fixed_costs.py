"""`python -m optimlab.bench.fixed_costs`: fresh processes, medians, costs over a base."""

from __future__ import annotations

import json
import sys

import pytest

from optimlab.bench import fixed_costs
from optimlab.bench.fixed_costs import Case, format_table, run

SPIN = "import time; t = time.process_time()\nwhile time.process_time() - t < {}: pass"


def test_a_case_adds_its_cpu_over_its_base():
    cases = (Case("idle", lambda tmp: [sys.executable, "-c", "pass"]),
             Case("spin", lambda tmp: [sys.executable, "-c", SPIN.format(0.3)], "idle"))
    rows = run(cases, repeats=3)
    idle, spin = rows
    assert idle["adds_cpu_s"] == idle["cpu_s"] and idle["base"] is None
    assert 0.28 <= spin["adds_cpu_s"] <= spin["cpu_s"]  # CPU, not wall: load cannot add
    assert abs(spin["adds_cpu_s"] - (spin["cpu_s"] - idle["cpu_s"])) < 1e-12
    table = format_table(rows).splitlines()
    assert table[0] == "| case | CPU s | wall s | adds CPU s (over) |"
    assert table[3].startswith("| spin |") and table[3].endswith(" (idle) |")


def test_every_base_is_an_earlier_case():
    names = [c.name for c in fixed_costs.CASES]
    for i, case in enumerate(fixed_costs.CASES):
        assert case.base is None or case.base in names[:i], case.name


def test_the_goal_line_is_the_one_step_sweep_against_two_seconds():
    rows = [{"case": "import torch", "cpu_s": 1.5}, {"case": fixed_costs.FIXED, "cpu_s": 2.25}]
    assert fixed_costs.goal_line(rows) == ("fixed costs of sweep: 2.25 s CPU (import torch "
                                           "1.50, the rest 0.75); goal <= 2 s: not met")
    rows[1]["cpu_s"] = 1.9
    assert fixed_costs.goal_line(rows).endswith("the rest 0.40); goal <= 2 s: met")
    assert fixed_costs.goal_line(rows[:1]) is None


def test_sweep_bench_prints_the_fixed_costs_row_and_its_goal(monkeypatch, tmp_path, capsys):
    """`optimlab sweep-bench --fixed-costs`: the one-step sweep and the cases it is measured
    against, each as fresh processes (faked here: a case's CPU seconds by its name)."""
    from conftest import exit_code

    cpu = {"python": 0.02, "import torch": 1.5, fixed_costs.FIXED: 2.7}
    monkeypatch.setattr(fixed_costs, "measure", lambda case: (cpu[case.name], 9.0))
    path = tmp_path / "fixed.json"
    assert exit_code(["sweep-bench", "--fixed-costs", "--json", str(path)]) == 0
    printed = capsys.readouterr().out
    assert ("fixed costs of sweep: 2.70 s CPU (import torch 1.50, the rest 1.20); goal <= 2 s: "
            "not met") in printed
    rows = json.loads(path.read_text())["fixed_costs"]
    assert [(r["case"], r["adds_cpu_s"]) for r in rows] == [
        ("python", 0.02), ("import torch", pytest.approx(1.48)),
        (fixed_costs.FIXED, pytest.approx(1.2))]

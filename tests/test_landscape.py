"""The landscape's functions, protocol and CLI, and the lecture's claims as recorded numbers.

Expectations come from closed forms (gradient descent on a quadratic, the
heavy-ball characteristic roots, Adam's first step) or from published function
values, never from earlier runs of this code.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from conftest import exit_code

from optimlab.cli import main
from optimlab.lab.entries import parse
from optimlab.landscape import FUNCTIONS, LandscapeConfig, TestFunction, run_landscape, run_paths
from optimlab.landscape.run import best_run, diverged
from optimlab.optim import Adam, RMSprop
from optimlab.optim.diagnostics import effective_step_size
from optimlab.report.landscape_claims import Overshoot, momentum_overshoots, overshoot

# Published values: Rosenbrock at its classic start, Beale at the origin, all minima 0.
KNOWN_VALUES = [("rosenbrock", (-1.2, 1.0), 24.2), ("rosenbrock", (1.0, 1.0), 0.0),
                ("beale", (0.0, 0.0), 1.5**2 + 2.25**2 + 2.625**2), ("beale", (3.0, 0.5), 0.0),
                ("rastrigin", (0.0, 0.0), 0.0), ("rastrigin", (1.0, 1.0), 2.0),
                ("saddle", (2.0, 3.0), -5.0), ("ravine", (1.0, 1.0), 5.1)]


@pytest.mark.parametrize("name,point,expected", KNOWN_VALUES)
def test_known_values(name, point, expected):
    assert FUNCTIONS[name].value(*point) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("name", [n for n, f in FUNCTIONS.items() if f.minimum is not None])
def test_minimum_is_a_minimum(name):
    fn = FUNCTIONS[name]
    w = torch.tensor(fn.minimum, dtype=torch.float64, requires_grad=True)
    fn.f(w).backward()
    assert w.grad.abs().max() < 1e-9
    around = torch.tensor(fn.minimum, dtype=torch.float64) + 0.05 * torch.randn(
        200, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert bool((fn.f(around) > fn.f_min).all())
    assert fn.on_target(*fn.minimum) and not fn.on_target(*fn.start)


@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_batched_evaluation_matches_pointwise(name):
    fn = FUNCTIONS[name]
    pts = torch.tensor([[0.3, -0.7], [1.1, 2.0], list(fn.start)], dtype=torch.float64)
    assert fn.f(pts).tolist() == pytest.approx([fn.value(x, y) for x, y in pts.tolist()])
    assert fn.in_domain(*fn.start)


def test_sgd_path_is_gradient_descent_in_closed_form():
    # ravine ½(0.2x² + 10y²): x_t = x₀(1 − 0.2η)ᵗ, y_t = y₀(1 − 10η)ᵗ
    lr, steps = 0.05, 40
    path = np.array(run_paths(FUNCTIONS["ravine"], "sgd", [lr], steps)[0]["path"])
    t = np.arange(steps + 1)
    x0, y0 = FUNCTIONS["ravine"].start
    np.testing.assert_allclose(path[:, 0], x0 * (1 - 0.2 * lr) ** t, rtol=1e-12)
    np.testing.assert_allclose(path[:, 1], y0 * (1 - 10 * lr) ** t, rtol=1e-12, atol=1e-300)


def test_saddle_escape_in_closed_form():
    # x² − y² from (1, 1e-3): x_t = (1 − 2η)ᵗ, y_t = 1e-3 (1 + 2η)ᵗ until f ≤ −1 leaves the box
    fn, lr = FUNCTIONS["saddle"], 0.1
    run = run_paths(fn, "sgd", [lr], 200)[0]
    path = np.array(run["path"])
    t = np.arange(len(path))
    np.testing.assert_allclose(path[:, 1], 1e-3 * (1 + 2 * lr) ** t, rtol=1e-12)
    first = next(i for i, (x, y) in enumerate(path) if x * x - y * y <= -1)
    assert run["steps_to_tol"] == first and run["stop"] == "left_domain"
    assert not diverged(fn, run)


def _heavy_ball_slow_root(lr: float, curvature: float, beta: float = 0.9) -> float:
    """EMA momentum on λx²/2: x_{t+1} = (1 + β − η(1−β)λ) x_t − β x_{t−1}; the larger root."""
    return max(abs(np.roots([1.0, -(1 + beta - lr * (1 - beta) * curvature), beta])))


def test_ravine_momentum_best_lr_beats_sgd_best_lr():
    fn, cfg = FUNCTIONS["ravine"], LandscapeConfig(steps=500)
    sgd, mom = best_run(fn, "sgd", cfg), best_run(fn, "momentum", cfg)
    assert sgd["steps_to_tol"] is not None and mom["steps_to_tol"] is not None
    assert mom["steps_to_tol"] < sgd["steps_to_tol"] / 2
    # the gain comes with a larger stable η: SGD's grid stops where η·10 > 2
    assert mom["lr"] > sgd["lr"]
    assert sgd["lr"] == max(r["lr"] for r in sgd["grid"] if r["lr"] * 10 < 2)
    assert all(diverged(fn, {**r, "path": None}) for r in sgd["grid"] if r["lr"] * 10 > 2)


def test_ravine_same_small_lr_same_pace_along_the_floor():
    # ηλ = 0.002 ≪ 1 − β: the slow heavy-ball root equals SGD's rate 1 − ηλ to 0.02 %
    fn, lr, steps = FUNCTIONS["ravine"], 0.01, 1000
    sgd, mom = (np.array(run_paths(fn, o, [lr], steps)[0]["path"]) for o in ("sgd", "momentum"))
    x0 = fn.start[0]
    pace_sgd = math.log(sgd[-1, 0] / x0) / steps
    pace_mom = math.log(mom[-1, 0] / x0) / steps
    assert pace_sgd == pytest.approx(math.log(1 - lr * 0.2), rel=1e-9)
    assert pace_mom == pytest.approx(math.log(_heavy_ball_slow_root(lr, 0.2)), rel=0.02)
    assert pace_mom == pytest.approx(pace_sgd, rel=0.05)


def test_ravine_at_sgds_best_lr_momentum_is_already_faster():
    # at η = 0.1, ηλ = 0.02 is not ≪ 1 − β = 0.1: the slow root 0.9735 beats SGD's 0.98
    fn, lr = FUNCTIONS["ravine"], 0.1
    sgd, mom = (run_paths(fn, o, [lr], 500)[0]["steps_to_tol"] for o in ("sgd", "momentum"))
    assert _heavy_ball_slow_root(lr, 0.2) < 1 - lr * 0.2
    assert mom < sgd
    predicted = sgd * math.log(1 - lr * 0.2) / math.log(_heavy_ball_slow_root(lr, 0.2))
    assert mom == pytest.approx(predicted, rel=0.15)


def _scaled_ravine(a: float, b: float) -> TestFunction:
    return TestFunction("scaled", "½(ax² + by²)", lambda w: 0.5 * (a * w[..., 0] ** 2
                                                                   + b * w[..., 1] ** 2),
                        (0.0, 0.0), (1.0, 1.0), (-2.0, 2.0, -2.0, 2.0), tol=1e-2)


@pytest.mark.parametrize("a,b", [(0.2, 10.0), (1e-3, 1e3), (1e3, 1e-3)])
def test_adam_first_steps_equal_in_both_coordinates(a, b):
    lr = 0.01
    fn = _scaled_ravine(a, b)
    adam = np.diff(np.array(run_paths(fn, "adam", [lr], 10)[0]["path"]), axis=0)
    sgd = np.diff(np.array(run_paths(fn, "sgd", [lr * 1e-3], 1)[0]["path"]), axis=0)
    g = np.array([a, b])  # the gradient at (1, 1)
    np.testing.assert_allclose(adam[0], -lr * g / (g + 1e-8), rtol=1e-12)
    np.testing.assert_allclose(np.abs(adam[:, 0] / adam[:, 1]), 1.0, rtol=0.02)
    assert abs(sgd[0, 0] / sgd[0, 1]) == pytest.approx(a / b)


def test_rmsprop_larger_gradients_smaller_steps():
    # the ravine's y gradient is 10y against 0.2x: after a few steps s_y > s_x
    w = torch.nn.Parameter(torch.tensor([-10.0, 1.0], dtype=torch.float64))
    opt = RMSprop([w], lr=1e-3)
    for _ in range(5):
        opt.zero_grad()
        FUNCTIONS["ravine"].f(w).backward()
        grad = w.grad.abs().clone()
        opt.step()
    eff = effective_step_size(opt, w)
    assert grad[1] > grad[0] and eff[1] < eff[0]
    adam = Adam([w], lr=1e-3)
    assert effective_step_size(adam, w) is None  # no step taken yet


def test_bumpy_momentum_passes_the_bumps_sgd_stalls():
    fn, lr = FUNCTIONS["bumpy"], 0.1
    sgd, mom = (run_paths(fn, o, [lr], 300)[0] for o in ("sgd", "momentum"))
    assert mom["final_distance"] < fn.tol and mom["steps_to_tol"] is not None
    assert sgd["final_distance"] > 1.0 and sgd["steps_to_tol"] is None
    # SGD stalled: it sits at a local minimum, not on a slow slope
    w = torch.tensor(sgd["path"][-1], dtype=torch.float64, requires_grad=True)
    fn.f(w).backward()
    assert w.grad.norm() < 1e-8 and sgd["final_value"] > fn.f_min + 1.0


def test_grid_choice_follows_the_documented_criterion():
    # fewest steps to the target wins ...
    best = best_run(FUNCTIONS["beale"], "adam",
                    LandscapeConfig(steps=250, lr_grid=(0.03, 0.1, 0.3, 1.0)))
    finite = [r for r in best["grid"] if r["steps_to_tol"] is not None]
    assert best["lr_source"] == "grid" and len(finite) >= 2
    assert best["steps_to_tol"] == min(r["steps_to_tol"] for r in finite)
    # ... and when no η reaches it, the lowest final value among runs that did not diverge
    fn = FUNCTIONS["rastrigin"]
    best = best_run(fn, "sgd", LandscapeConfig(steps=60, lr_grid=(1e-3, 1e-2, 0.1)))
    kept = [r for r in best["grid"] if not diverged(fn, r)]
    assert all(r["steps_to_tol"] is None for r in best["grid"])
    assert best["final_value"] == min(r["final_value"] for r in kept)


def test_diverging_runs_are_frozen_and_excluded():
    runs = run_paths(FUNCTIONS["ravine"], "sgd", [0.1, 3.0], 300)
    assert not diverged(FUNCTIONS["ravine"], runs[0])
    assert diverged(FUNCTIONS["ravine"], runs[1]) and len(runs[1]["path"]) < 301
    assert all(math.isfinite(v) for xy in runs[1]["path"] for v in xy)


def test_noise_is_seeded_and_shared():
    fn = FUNCTIONS["ravine"]
    a, b = (run_paths(fn, "adam", [0.1, 0.1], 20, noise=0.5, seed=1) for _ in range(2))
    c = run_paths(fn, "adam", [0.1], 20, noise=0.5, seed=2)[0]
    clean = run_paths(fn, "adam", [0.1], 20)[0]
    assert a[0]["path"] == b[0]["path"] == a[1]["path"]
    assert c["path"] != a[0]["path"] != clean["path"]
    # SGD's first step is −η(g + σn), n the seed's first standard normal pair
    n = torch.randn(2, generator=torch.Generator().manual_seed(1), dtype=torch.float64).numpy()
    step = np.diff(np.array(run_paths(fn, "sgd", [0.1], 1, noise=0.5, seed=1)[0]["path"]), axis=0)
    g = np.array([0.2 * fn.start[0], 10 * fn.start[1]])
    np.testing.assert_allclose(step[0], -0.1 * (g + 0.5 * n), rtol=1e-12)


def test_fixed_lr_for_all():
    rec = run_landscape(LandscapeConfig(functions=("saddle",), optimizers=("sgd", "adam"),
                                        steps=30, lr=0.05))
    runs = rec["functions"]["saddle"]["runs"]
    assert {r["lr"] for r in runs.values()} == {0.05}
    assert {r["lr_source"] for r in runs.values()} == {"fixed"}
    json.dumps(rec, allow_nan=False)


def test_cli_writes_record_png_and_self_contained_html(tmp_path, capsys):
    out = tmp_path / "land"
    rc = main(["landscape", "--function", "ravine", "--optimizers", "sgd,momentum",
               "--steps", "40", "--lr", "0.05", "--out", str(out)])
    assert rc == 0
    rec = json.loads((out / "paths.json").read_text())
    assert set(rec["functions"]["ravine"]["runs"]) == {"sgd", "momentum"}
    assert len(rec["functions"]["ravine"]["runs"]["sgd"]["path"]) == 41
    assert (out / "landscape.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = (out / "landscape.html").read_text()
    assert "data:image/png;base64," in html and "://" not in html  # nothing fetched
    assert "ravine" in capsys.readouterr().out


@pytest.mark.parametrize("argv,needle", [
    (["--function", "sphere"], "'sphere'"), (["--optimizers", "lbfgs"], "'lbfgs'"),
    (["--steps", "0"], "--steps: '0'"), (["--lr", "-1"], "lr: -1"),
    (["--noise", "nan"], "--noise: 'nan'"), (["--noise", "-1"], "noise: -1"),
])
def test_cli_bad_input_is_a_clean_error(tmp_path, capsys, argv, needle):
    assert exit_code(["landscape", *argv, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err
    assert not (tmp_path / "paths.json").exists()


@pytest.mark.parametrize("lr", [1.2, 1.5, 1.9])
def test_gradient_descent_overshoot_past_a_steep_minimum_in_closed_form(lr):
    # ½(x² + 0.1y²), a = 1: x_{t+1} = (1 − ηa) x_t passes 0 at every step for 1 < ηa < 2,
    # furthest after step 1, by (ηa − 1)·|x₀|
    steps = 12
    path = run_paths(_scaled_ravine(1.0, 0.1), "sgd", [lr], steps)[0]["path"]
    got = overshoot(path, (0.0, 0.0), (1.0, 0.0))
    assert got.share == pytest.approx(lr - 1, rel=1e-12)
    assert got.crossings == steps and got.start == 1.0


def test_overshoot_is_signed_from_the_start_and_scaled_by_its_distance():
    # minimum (2, 5), axis given backwards and unnormalised: d = 1, 0, 0.5, −0.25, −1, 0.5;
    # touching the minimum (d = 0) and turning back is no crossing
    path = [[3.0, 5.0], [2.0, 7.0], [2.5, 5.0], [1.75, 4.0], [1.0, 5.0], [2.5, 5.0]]
    assert overshoot(path, (2.0, 5.0), (-4.0, 0.0)) == Overshoot(1.0, 2, 1.0)
    assert overshoot([[2.0, 9.0], [1.0, 9.0]], (2.0, 5.0), (1.0, 0.0)) is None


def _ema_momentum_floor(lr: float, steps: int, beta: float = 0.9, a: float = 0.2,
                        x0: float = -10.0) -> list[float]:
    """x along the ravine's floor under v ← βv + (1−β)g, x ← x − ηv, g = a·x: its own loop."""
    xs, v = [x0], 0.0
    for _ in range(steps):
        v = beta * v + (1 - beta) * a * xs[-1]
        xs.append(xs[-1] - lr * v)
    return xs


@pytest.mark.parametrize("lr,beta", [(1.0, 0.9), (3.0, 0.9), (1.0, 0.8)])
def test_momentum_overshoot_on_the_ravine_floor_follows_its_recurrence(lr, beta):
    steps = 300
    entry = parse(f"momentum(momentum={beta})")
    path = run_paths(FUNCTIONS["ravine"], entry, [lr], steps)[0]["path"]
    xs = _ema_momentum_floor(lr, steps, beta)
    first_pass = next(t for t, x in enumerate(xs) if x > 0)
    back = next(t for t in range(first_pass, steps) if xs[t] <= 0)
    first_peak = max(xs[first_pass:back]) / 10.0
    crossings = sum((x > 0) != (y > 0) for x, y in zip(xs, xs[1:]))
    got = overshoot(path, FUNCTIONS["ravine"].minimum, FUNCTIONS["ravine"].valley)
    # the oscillation decays (|roots| = √β < 1): the first overshoot is the largest
    assert got.share == pytest.approx(first_peak, rel=1e-9) and got.share > 0.1
    assert got.crossings == crossings >= 2


@pytest.mark.parametrize("optimizer,lr", [("sgd", 0.1), ("momentum", 0.01)])
def test_a_path_that_never_passes_the_minimum_has_no_overshoot(optimizer, lr):
    # SGD: x_t = −10(1 − 0.2η)ᵗ; Momentum at η(1−β)a = 2e-4 < (1 − √β)²: real roots, no swing
    fn = FUNCTIONS["ravine"]
    path = run_paths(fn, optimizer, [lr], 500)[0]["path"]
    assert all(x < 0 for x, _ in path)
    assert overshoot(path, fn.minimum, fn.valley) == Overshoot(0.0, 0, 10.0)
    if optimizer == "momentum":
        assert max(_ema_momentum_floor(lr, 500)) < 0


def _ravine_record(runs: dict, valley=(1.0, 0.0)) -> dict:
    """A made-up paths.json with the ravine only: per optimizer (η, its path, its grid)."""
    return {"functions": {"ravine": {"minimum": [0.0, 0.0], "valley": valley, "runs": {
        opt: {"lr": lr, "path": path, "grid": grid} for opt, (lr, path, grid) in runs.items()}}}}


STAYS = [[-10.0, 0.0], [-5.0, 0.0], [-1.0, 0.0]]
PASSES_BY = {share: [[-10.0, 0.0], [-2.0, 0.0], [10 * share, 0.0], [-0.1, 0.0]]
             for share in (0.005, 0.1, 0.2)}


@pytest.mark.parametrize("momentum,sgd,expected", [
    (PASSES_BY[0.1], STAYS, "holds"),  # 10 % past, SGD never past
    (PASSES_BY[0.1], PASSES_BY[0.2], "undecided"),  # past, but SGD at that η further
    (PASSES_BY[0.005], STAYS, "does not hold"),  # a 0.5 % pass is hovering, not overshoot
    (STAYS, STAYS, "does not hold")])
def test_momentum_overshoot_claim_verdicts(momentum, sgd, expected):
    claim = momentum_overshoots(_ravine_record({"momentum": (1.0, momentum, None),
                                                "sgd": (1.0, sgd, None)}))
    assert claim.verdict == expected
    assert "momentum η=1: " in claim.evidence[1] and "sgd η=1: " in claim.evidence[1]


def test_momentum_overshoot_claim_compares_sgd_at_momentums_lr_from_its_grid():
    grid = [{"lr": 0.1, "path": STAYS}, {"lr": 1.0, "path": PASSES_BY[0.2],
                                         "stop": "left_domain"}]
    record = _ravine_record({"momentum": (1.0, PASSES_BY[0.1], None),
                             "sgd": (0.1, STAYS, grid)})
    claim = momentum_overshoots(record)
    assert claim.verdict == "undecided"
    assert "sgd η=1: 20% (2 crossings, left the domain after 3 steps)" in claim.evidence[1]
    assert "sgd η=0.1: 0% (0 crossings)" in claim.evidence[2]


@pytest.mark.parametrize("record", [
    _ravine_record({"sgd": (1.0, STAYS, None)}),
    _ravine_record({"momentum": (1.0, PASSES_BY[0.1], None)}),
    _ravine_record({"momentum": (1.0, PASSES_BY[0.1], None), "sgd": (1.0, STAYS, None)},
                   valley=None),
    _ravine_record({"momentum": (1.0, PASSES_BY[0.1], None), "sgd": (0.1, STAYS, None)}),
    _ravine_record({"momentum": (1.0, [[0.0, 1.0], [1.0, 0.0]], None),
                    "sgd": (1.0, [[0.0, 1.0], [0.0, 0.5]], None)}),  # nothing to cover
    {"functions": {"bumpy": _ravine_record({"momentum": (1.0, STAYS, None), "sgd": (
        1.0, STAYS, None)})["functions"]["ravine"]}}])
def test_momentum_overshoot_claim_not_measured_without_its_runs(record):
    claim = momentum_overshoots(record)
    assert claim.verdict is None and claim.evidence[0].startswith("needs ")


def test_cli_decides_momentum_overshoot_on_the_ravine(tmp_path, capsys):
    out, steps = tmp_path / "land", 60
    assert main(["landscape", "--function", "ravine", "--optimizers", "sgd,momentum",
                 "--steps", str(steps), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    runs = json.loads((out / "paths.json").read_text())["functions"]["ravine"]["runs"]
    lr = runs["momentum"]["lr"]
    share = max(0.0, max(_ema_momentum_floor(lr, steps))) / 10.0
    # SGD's floor factor 1 − 0.2η > 0 on the whole grid: it never passes along the floor
    assert share > 0.01 and 1 - 0.2 * max(LandscapeConfig().lr_grid) > 0
    assert 'claim "Momentum may overshoot.": holds' in printed
    shown = f"momentum η={lr:g}: {100 * share:.3g}%"
    assert f"{shown} (" in printed and f"sgd η={lr:g}: 0% (0 crossings" in printed
    page = (out / "report.html").read_text()
    assert "Momentum may overshoot." in page and shown in page

"""The pages: each command's folder re-renders as the page that command wrote, without a
library warning; what the pages say (spread, labels, settings used, tuning at a grid edge)."""

from __future__ import annotations

import html
import json
import re
import sys
import types
import warnings

import pytest
from pages import unpacked
from summaries import runs as summary_runs
from test_sweep import DS as BLOBS

from optimlab.cli import main
from optimlab.lab import reproduce
from optimlab.lab.policy import DEFAULT_LR
from optimlab.report.table import series_label, table_rows
from optimlab.train import TrainConfig

TINY = ["--model", "logreg", "--steps", "12", "--eval-every", "6", "--batch-size", "20"]


def tiny_reproduction(ctx: reproduce.Context) -> reproduce.Outcome:
    """An experiment of the shape the real ones have: stored runs (sweep.sqlite,
    summary.json), two checks of which one holds, a figure with a panel left empty (every
    run of it diverged, as at adam-bias-correction's largest α)."""
    configs = [TrainConfig(dataset="blobs", model="logreg", optimizer=o,
                           hyperparameters={"lr": 0.1}, steps=10, batch_size=20, eval_every=5)
               for o in ("sgd", "adam")]
    runs = reproduce.train(ctx, configs, BLOBS)
    losses = {r["summary"]["optimizer"]: r["summary"]["final_train_loss"] for r in runs}
    checks = [reproduce.Check("trains", "loss < 10", f"{losses}", True),
              reproduce.Check("adam beats sgd tenfold", "×10", "less", False)]
    figure = {"title": "tiny", "xlabel": "step", "panels": [
        {"title": "finite", "series": {o: [[0, 1.0], [1, v]] for o, v in losses.items()}},
        {"title": "every run diverged", "series": {"sgd": [], "adam": []}}]}
    return reproduce.Outcome("blobs", [reproduce.Setting("steps", 10, "choice: tiny")],
                             checks, {"losses": losses}, figure)


@pytest.fixture
def tiny_experiment(monkeypatch):
    monkeypatch.setitem(reproduce.EXPERIMENTS, "tiny", reproduce.Experiment(
        "tiny", "a test", "that the page stays the reproduction's", "tiny"))
    monkeypatch.setitem(sys.modules, "optimlab.lab.reproductions.tiny",
                        types.SimpleNamespace(run=tiny_reproduction))


COMMANDS = {
    "compare": ["compare", *TINY, "--optimizers", "sgd(lr=0.1),adam", "--seeds", "2"],
    "sweep": ["sweep", *TINY, "--optimizers", "sgd,adam", "--lr", "0.01,0.1,1"],
    "landscape": ["landscape", "--function", "ravine", "--steps", "40"],
    "reproduce": ["reproduce", "tiny"],
}


def page_kind(page: str) -> tuple[str, list[str]]:
    """The page's title and every verdict it shows (the claims' and a reproduction's)."""
    title = re.search(r"<title>(.*?)</title>", page).group(1)
    verdicts = re.findall(r'class="verdict [^"]*">([^<]*)<', page)
    verdicts += re.findall(r"<b>(reproduced|partly|not reproduced)</b>", page)
    return title, verdicts


@pytest.mark.parametrize("command", COMMANDS)
def test_each_commands_folder_rerenders_as_the_page_it_wrote(command, tmp_path, capsys,
                                                             tiny_experiment):
    out = tmp_path / command
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a library warning fails the test
        assert main([*COMMANDS[command], "--out", str(out)]) == 0
        written = (out / "report.html").read_text()
        capsys.readouterr()
        assert main(["report", str(out)]) == 0
    again = (out / "report.html").read_text()
    assert page_kind(again) == page_kind(written)
    assert page_kind(written)[0] == f"optimlab {command}" + (" tiny" * (command == "reproduce"))
    assert capsys.readouterr().err == ""
    if command == "reproduce":
        assert page_kind(again)[1] == ["partly"]


@pytest.fixture(scope="module")
def compare_out(tmp_path_factory):
    """compare through the CLI: an entry that gives its η, one on the default η, epochs
    instead of steps, two seeds."""
    out = tmp_path_factory.mktemp("pages") / "cmp"
    assert main(["compare", "--model", "logreg", "--epochs", "1", "--eval-every", "12",
                 "--optimizers", "sgd(lr=0.1),adam", "--seeds", "2", "--out", str(out)]) == 0
    return out


def configuration(page: str) -> dict:
    body = re.search(r"<h2>Configuration</h2>\s*<pre>(.*?)</pre>", page, re.S).group(1)
    return json.loads(html.unescape(body))


def test_the_configuration_shows_the_values_used_not_the_unresolved_defaults(compare_out):
    page = (compare_out / "report.html").read_text()
    settings = configuration(page)["settings"]
    records = summary_runs(compare_out)
    assert settings["epochs"] == 1 and settings["steps"] == records[0]["steps_planned"] > 1
    assert settings["lr"] == {"sgd(lr=0.1)": 0.1, "adam": DEFAULT_LR["adam"]}
    command = json.loads((compare_out / "config.json").read_text())["command"]
    assert f'<pre class="command">{html.escape(command)}</pre>' in page
    assert re.search(r"pre\.command \{[^}]*white-space: pre-wrap", page)


def test_a_label_that_gives_a_hyperparameter_is_not_followed_by_it_again(compare_out):
    page = unpacked((compare_out / "report.html").read_text())
    assert "sgd(lr=0.1) (lr=0.1)" not in page and '"label":"sgd(lr=0.1)"' in page
    assert '"label":"adam (lr=0.01)"' in page  # the default η is not in the entry: said
    assert series_label("adam(betas=(0.5, 0.999))", {"betas": [0.5, 0.999], "lr": 0.01}) \
        == "adam(betas=(0.5, 0.999)) (lr=0.01)"
    assert series_label("sgd(lr=1e-1, momentum=0.9)", {"lr": 0.1, "momentum": 0.9}) \
        == "sgd(lr=1e-1, momentum=0.9)"
    assert series_label("sgd(lr=0.2)", {"lr": 0.1}) == "sgd(lr=0.2) (lr=0.1)"
    assert series_label("fast", {"lr": 0.1}) == "fast (lr=0.1)"


def test_one_seed_shows_no_spread_two_show_it():
    one = [{"optimizer": "sgd", "hyperparameters": {"lr": 0.1}, "final_test_acc": 0.5,
            "best_test_acc": 0.6, "final_train_loss": 1.0, "steps_per_s": 100.0,
            "optimizer_ms_per_step": 0.01, "target_acc": None, "final_val_acc": None,
            "diverged": False, "diverged_step": None}]
    two = one + [one[0] | {"final_test_acc": 0.7}]
    assert table_rows(one)[0][2:5] == ["50.0 %", "60.0 %", "1"]
    assert table_rows(two)[0][2] == "60.0 ± 14.1 %"  # std of 0.5, 0.7: 0.1414


def test_a_tuned_eta_on_the_grid_edge_is_undecided_in_the_compare_report(compare_out,
                                                                          tmp_path):
    """A folder written before audits were stored: the claims read the tuning's edges."""
    out = tmp_path / "tuned"
    out.mkdir()
    for f in compare_out.iterdir():
        (out / f.name).write_bytes(f.read_bytes())
    meta = json.loads((out / "config.json").read_text())
    meta["tuning"] = {"sgd(lr=0.1)": {"lr": 0.1, "source": "tuned", "grid": [1e-3, 1e-2, 0.1],
                                      "all_diverged": False, "edge": {"lr": "high"}},
                      "adam": {"lr": 0.01, "source": "tuned", "grid": [1e-3, 1e-2, 0.1],
                               "all_diverged": False, "edge": {}}}
    (out / "config.json").write_text(json.dumps(meta))
    summary = json.loads((out / "summary.json").read_text())
    summary.pop("audit")
    (out / "summary.json").write_text(json.dumps(summary))
    assert main(["report", str(out)]) == 0
    page = (out / "report.html").read_text()
    row = re.search(r"<tr><td>Plain SGD or Momentum can match.*?</tr>", page).group(0)
    assert 'class="verdict undecided">undecided<' in row
    assert "sgd(lr=0.1)&#x27;s tuned η=0.1 lies on the high edge of its grid" in row


@pytest.fixture(scope="module")
def sweep_out(tmp_path_factory):
    """A sweep through the CLI over three η under one seed, without --select val."""
    out = tmp_path_factory.mktemp("pages") / "sweep"
    assert main(["sweep", *TINY, "--optimizers", "sgd,adam", "--lr", "0.001,0.01,0.1",
                 "--out", str(out)]) == 0
    return out


def test_a_sweep_over_several_eta_tunes_and_its_page_explains_its_columns(sweep_out):
    page = (sweep_out / "report.html").read_text()
    assert "did not tune" not in page
    row = re.search(r"<tr><td>Plain SGD or Momentum can match.*?</tr>", page).group(0)
    assert "final test accuracy: sgd" in row and "undecided" in row
    assert "too few seeds: 1 paired seed cannot reach α = 0.05" in row
    best = re.search(r"<h2>Best configuration.*?</h2>(.*?</table>)", page, re.S).group(1)
    assert "±" not in best and "%" in best  # one seed: no spread shown
    assert "<b>one-shot</b>: the optimizer&#x27;s class defaults" not in best  # unescaped
    assert "<b>one-shot</b>: the optimizer's class defaults" in best
    runs = re.search(r"<h2>Runs</h2>.*?</table>", page, re.S).group(0)
    assert "<b>roles</b>: why a run exists" in runs and "<b>grid</b>" in runs


def test_the_best_etas_star_has_its_lines_colour_on_the_edge_and_off_it(sweep_out):
    from optimlab.lab.sweep import best_per_optimizer
    from optimlab.report.sweep import _points, best_points, load_sweep
    from optimlab.report.sweep_interactive import sensitivity_figure

    runs = load_sweep(sweep_out)[0]
    points = _points(runs)
    best = best_points(points, best_per_optimizer(runs))
    data = sensitivity_figure(points, best, "acc")["data"]
    for name, b in best.items():
        line = next(t for t in data if t["name"] == name)
        star = next(t for t in data if t["legendgroup"] == name + "-best")
        edge = b["lr"] in (0.001, 0.1)
        assert star["marker"]["color"] == line["line"]["color"]
        assert star["marker"]["symbol"] == ("star-open" if edge else "star")
        assert star["name"].endswith("(on the grid edge)") == edge


def landscape_record(runs: dict[str, dict[str, tuple]]) -> dict:
    """A made-up paths.json: per function, per optimizer (steps to the target, path)."""
    return {"functions": {fn: {"target": "distance to the minimum <= 0.01", "runs": {
        opt: {"lr": 0.1, "steps_to_tol": steps, "final_distance": 1.0, "path": path}
        for opt, (steps, path) in by_opt.items()}} for fn, by_opt in runs.items()}}


STILL = [[0.0, 0.0], [0.0, 0.0]]


@pytest.mark.parametrize("momentum, sgd, expected", [
    (125, 342, "holds"), (None, 342, "does not hold"), (125, None, "holds"),
    (300, 300, "undecided"), (None, None, "undecided")])
def test_landscape_speed_claims_compare_steps_to_the_target(momentum, sgd, expected):
    from optimlab.report.landscape_claims import landscape_claims

    record = landscape_record({"ravine": {"momentum": (momentum, STILL), "sgd": (sgd, STILL)}})
    ravine, bumps, adam, first, overshoot = landscape_claims(record)
    assert ravine.verdict == expected and ravine.evidence[0].startswith("ravine (distance")
    assert bumps.verdict is adam.verdict is first.verdict is None  # no bumpy bowl, no Adam
    assert overshoot.verdict is None  # this record gives no direction of the floor


def test_adams_first_step_is_eta_in_each_coordinate_on_the_real_ravine():
    """Adam's step 1 is η·g/|g| = ±η per coordinate (closed form), SGD's is η·g, whose
    ratio on ½(0.2x² + 10y²) from (−10, 1) is 0.2·10 / (10·1) = 0.2."""
    from optimlab.landscape import LandscapeConfig, run_landscape
    from optimlab.report.landscape_claims import adam_first_steps_equal, first_step_ratio

    record = run_landscape(LandscapeConfig(functions=("ravine",), optimizers=("sgd", "adam"),
                                           steps=5, lr=0.05))
    claim = adam_first_steps_equal(record)
    assert claim.verdict == "holds"
    assert "|Δx| / |Δy| = 1 " in claim.evidence[0] and "0.2)" in claim.evidence[0]
    assert first_step_ratio([[0, 0], [0.3, -0.1]]) == pytest.approx(3.0)
    uneven = landscape_record({"ravine": {"adam": (None, [[0, 0], [0.3, -0.1]])}})
    assert adam_first_steps_equal(uneven).verdict == "does not hold"


def test_the_landscape_page_has_its_claims_and_no_raw_markup(tmp_path):
    assert main(["landscape", "--function", "ravine", "--optimizers", "sgd,momentum,adam",
                 "--steps", "150", "--out", str(tmp_path)]) == 0
    page = (tmp_path / "report.html").read_text()
    text = page[:page.index("<script")]
    assert "``" not in text and "<code>criterion</code>" in text
    verdicts = dict(re.findall(r"<tr><td>([^<]*)</td><td class=\"verdict [^\"]*\">([^<]*)<",
                               text))
    # momentum at η = 1 reaches 0.01 in 125 steps; SGD's largest stable η, 0.1, needs 342
    assert verdicts["Momentum is faster in ravines."] == "holds"
    assert verdicts["Adam&#x27;s first steps are about equal in every coordinate, whatever "
                    "the gradients&#x27; scales."] == "holds"


def test_coinciding_series_of_a_reproduction_figure_stay_distinguishable(tmp_path,
                                                                         monkeypatch):
    """Wilson's test error: GD and SGD both at 0, three adaptive methods at 1 − p. Each line
    gets its own dash and marker, its markers at other steps, the earlier ones wider."""
    from matplotlib.figure import Figure

    from optimlab.report import reproduce as page

    drawn = []
    monkeypatch.setattr(Figure, "savefig", lambda fig, *a, **k: drawn.append(fig))
    zero, half = [[s, 0.0] for s in range(0, 2001, 100)], [[s, 0.45] for s in range(0, 2001,
                                                                                    100)]
    series = {"gd": zero, "sgd": zero, "adagrad": half, "rmsprop": half, "adam": half}
    page.plot({"panels": [{"title": "test error", "series": series}]}, tmp_path / "f.png")
    lines = drawn[0].axes[0].get_lines()
    assert [ln.get_label() for ln in lines] == list(series)
    assert len({(ln.get_linestyle(), ln.get_marker()) for ln in lines}) == 5
    widths = [ln.get_linewidth() for ln in lines]
    assert widths == sorted(widths, reverse=True) and widths[0] > widths[1]
    marked = [tuple(ln.get_xdata()[ln.get_markevery()[0]::ln.get_markevery()[1]])
              for ln in lines]
    for a, b in (("gd", "sgd"), ("adagrad", "rmsprop"), ("rmsprop", "adam")):
        assert not set(marked[list(series).index(a)]) & set(marked[list(series).index(b)])

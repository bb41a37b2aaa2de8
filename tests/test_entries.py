"""Optimizer entries `[LABEL=]NAME[(key=value, ...)]`: parsing, labels and one-line errors."""

from __future__ import annotations

import pytest
import torch

from optimlab.lab.entries import Entry, learning_rate, parse, parse_list, split_list


def test_a_list_splits_at_top_level_commas_only():
    text = "adam, slow=adam(betas=(0.5, 0.999)), torch.optim:NAdam(lr=2e-3)"
    assert split_list(text) == ["adam", "slow=adam(betas=(0.5, 0.999))",
                                "torch.optim:NAdam(lr=2e-3)"]
    assert split_list("a(x='1,2'), b") == ["a(x='1,2')", "b"]


def test_entries_give_names_hyperparameters_and_labels():
    adam, slow, nadam = parse_list(
        "adam, slow=adam(betas=(0.5, 0.999)), torch.optim:NAdam(lr=2e-3)")
    assert (adam.label, adam.name, adam.hyperparameters) == ("adam", "adam", {})
    assert (slow.label, slow.name, slow.hyperparameters) == (
        "slow", "adam", {"betas": (0.5, 0.999)})
    assert (nadam.label, nadam.name, nadam.hyperparameters) == (
        "NAdam(lr=0.002)", "torch.optim:NAdam", {"lr": 0.002})
    assert nadam.optimizer_class() is torch.optim.NAdam
    (plain,) = parse_list("sgd(nesterov=True, momentum=0.9, lr=0.1)")
    assert plain.hyperparameters == {"nesterov": True, "momentum": 0.9, "lr": 0.1}


@pytest.mark.parametrize("text", ["adam", "slow=adam(betas=(0.5, 0.999))",
                                  "torch.optim:NAdam(lr=0.002, momentum_decay=0.01)",
                                  "x.y=sgd(lr=0.1, nesterov=True, momentum=0.5)"])
def test_text_parses_back_to_the_same_entry(text):
    entry = parse(text)
    assert parse(entry.text) == entry
    assert entry.text == text


@pytest.mark.parametrize("text, match", [
    ("adam(beta=0.5)", r"Invalid hyperparameter 'beta' of adam in 'adam\(beta=0\.5\)'; "
                       r"allowed: lr, betas, eps, weight_decay"),
    ("torch.optim:NAdam(foo=1)", r"'foo' of torch\.optim:NAdam .*allowed: lr, betas, eps, "
                                 r"weight_decay, momentum_decay"),
    ("adam(betas=(1.5, 0.999))", r"Invalid 'adam\(betas=\(1\.5, 0\.999\)\)': .*1\.5"),
    ("torch.optim:SGD(lr=-1.0)", r"Invalid 'torch\.optim:SGD\(lr=-1\.0\)': .*-1\.0"),
    ("torch.optim:Sophia", r"Invalid optimizer 'torch\.optim:Sophia': module 'torch\.optim' has "
                         r"no attribute 'Sophia'"),
    ("no_such_pkg.opt:Sophia(lr=1.0)", r"no module named 'no_such_pkg'"),
    ("torch.nn:Linear", r"the class Linear, not a torch\.optim\.Optimizer subclass"),
    ("torch:pi", r"an object of type float, not a torch\.optim\.Optimizer subclass"),
    ("adagrad2", r"^Invalid optimizer 'adagrad2': no such built-in optimizer; allowed: sgd, .* "
                 r"or module:Class"),
    ("adam, adam", r"label 'adam' appears twice"),
    ("a=sgd, a=adam", r"label 'a' appears twice"),
    ("adam(lr=fast)", r"Invalid value for lr in 'adam\(lr=fast\)': 'fast' is not a Python "
                      r"literal"),
    ("adam(0.1)", r"arguments must be key=value"),
    ("adam(lr=0.1", r"unbalanced brackets"),
    ("bad label=adam", r"Invalid label 'bad label'"),
    ("", r"no entry"),
])
def test_bad_entries_are_one_line_errors_naming_what_is_wrong(text, match):
    with pytest.raises(ValueError, match=match) as info:
        parse_list(text)
    assert "\n" not in str(info.value)


def test_a_module_that_fails_to_import_is_named_with_its_error(tmp_path, monkeypatch):
    (tmp_path / "broken_opt.py").write_text("import not_installed_dependency\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=r"importing 'broken_opt' failed: .*"
                                         r"not_installed_dependency"):
        parse_list("broken_opt:Sophia")


def test_the_current_directory_is_searched_for_the_users_module(tmp_path, monkeypatch):
    (tmp_path / "my_opt_here.py").write_text(
        "import torch\n"
        "class Sign(torch.optim.Optimizer):\n"
        "    def __init__(self, params, lr=0.01):\n"
        "        if lr <= 0:\n"
        "            raise ValueError(f'Invalid lr: {lr}; allowed: > 0')\n"
        "        super().__init__(params, dict(lr=lr))\n")
    monkeypatch.chdir(tmp_path)
    (entry,) = parse_list("my_opt_here:Sign(lr=0.5)")
    assert entry.optimizer_class().__name__ == "Sign"
    with pytest.raises(ValueError, match=r"Invalid lr: -1; allowed: > 0"):
        parse_list("my_opt_here:Sign(lr=-1)")


def test_learning_rate_comes_from_the_entry_then_the_flag_then_the_lab_then_the_class(
        tmp_path, monkeypatch):
    lab = {"adam": 1e-2}
    assert learning_rate(Entry("adam", {"lr": 0.3}), {"adam": 0.2}, lab) == 0.3
    assert learning_rate(Entry("adam"), {"adam": 0.2}, lab) == 0.2
    assert learning_rate(Entry("adam"), {}, lab) == 1e-2
    assert learning_rate(Entry("torch.optim:NAdam"), {}, lab) == 2e-3  # torch's default
    (tmp_path / "needs_lr.py").write_text(
        "import torch\n"
        "class Opt(torch.optim.Optimizer):\n"
        "    def __init__(self, params, lr):\n"
        "        super().__init__(params, dict(lr=lr))\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=r"its class has no default lr; allowed: give one, "
                                         r"e\.g\. needs_lr:Opt\(lr=1e-3\)"):
        learning_rate(Entry("needs_lr:Opt"), {}, {})

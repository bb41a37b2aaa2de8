"""Drop-in behaviour: parity with torch.optim, state_dict both ways, schedulers, resume."""

from __future__ import annotations

import contextlib
import functools
import io

import numpy as np
import pytest
import torch
from conftest import GradientField, max_rel_err
from optim_db import DB, PATHS, cases, peer_cases, rich

from optimlab.optim import OPTIMIZERS

PARITY, IDS = peer_cases()
ALL, ALL_IDS = cases()
# every path of the class (its default is one of them: the fused path where it applies)
PARITY_PATHS = [(name, kw, path) for name, kw in PARITY for path in DB[name].paths]
PARITY_PATH_IDS = [f"{i}-{path}" for (name, _), i in zip(PARITY, IDS) for path in DB[name].paths]


def peer(name: str, params: list[torch.Tensor], kw: dict) -> torch.optim.Optimizer:
    """The torch.optim peer of optimizer `name`, given our keyword arguments."""
    return DB[name].peer_cls(params, **DB[name].peer.translate(kw))


@contextlib.contextmanager
def peer_precision(name: str):
    """float64 as torch's default dtype while a peer with `float64_state` steps."""
    before = torch.get_default_dtype()
    if DB[name].peer.float64_state:
        torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(before)


def drive(opt, params, field, steps, start=1):
    for t in range(start, start + steps):
        field.set_torch_grads(params, t)
        opt.step()


def flat(params) -> np.ndarray:
    return np.concatenate([p.detach().numpy().reshape(-1) for p in params])


@pytest.mark.parametrize("name,kw,path", PARITY_PATHS, ids=PARITY_PATH_IDS)
def test_parity_with_torch_500_steps(name, kw, path):
    field = DB[name].field(kw)
    ours, theirs = field.torch_params(), field.torch_params()
    opt = OPTIMIZERS[name](ours, **kw, **PATHS[path])
    drive(opt, ours, field, 500)
    with peer_precision(name):
        drive(peer(name, theirs, kw), theirs, field, 500)
    assert opt.last_impl == [path]
    assert max_rel_err(flat(ours), flat(theirs)) <= 1e-9, DB[name].peer.differences
    assert np.abs(flat(ours) - np.concatenate(field.w0)).max() > 1e-3


def _as_double(state_dict):
    """An optimizer's state_dict with every floating state tensor in float64 (not `step`)."""
    state = {i: {k: v.double() if k != "step" and v.is_floating_point() else v.clone()
                 for k, v in st.items()} for i, st in state_dict["state"].items()}
    return {"state": state, "param_groups": state_dict["param_groups"]}


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("impl", [dict(foreach=False), dict(foreach=True), {}],
                         ids=["reference", "foreach", "default"])
@pytest.mark.parametrize("name,kw", ALL, ids=ALL_IDS)
def test_low_precision_steps_round_once(name, kw, impl, dtype):
    """In bfloat16 and float16 a step computes in float32 and rounds once where it stores,
    as torch's fused kernels do (torch's default CPU path rounds after every op): from any
    state, the new weights are within one unit in the last place of the float64 step from
    the same state."""
    field = DB[name].field(kw)
    ours = field.torch_params(dtype)
    opt = OPTIMIZERS[name](ours, **kw, **impl)
    drive(opt, ours, field, 20)
    exact = [p.detach().double().requires_grad_() for p in ours]
    twin = OPTIMIZERS[name](exact, **kw)
    twin.load_state_dict(_as_double(opt.state_dict()))
    field.set_torch_grads(ours, 21)
    for p, q in zip(exact, ours):  # the same gradient: ours, at the low-precision weights
        p.grad = q.grad.double()
    opt.step()
    twin.step()
    for a, b in zip(ours, exact):
        ulp = torch.finfo(dtype).eps * b.detach().abs().clamp_min(torch.finfo(dtype).tiny)
        err = (a.detach().double() - b.detach()).abs() / ulp
        assert (err <= 1).all(), float(err.max())


def roundtrip(state_dict):
    buf = io.BytesIO()
    torch.save(state_dict, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


def _loads() -> tuple[list[tuple[str, dict, str]], list[str]]:
    """(name, kw, direction) of each shared case and each direction its row loads, and ids."""
    found, ids = peer_cases(lambda row, kw: bool(row.peer.state_loads))
    pairs = [((name, kw, way), f"{case_id}-{way}") for (name, kw), case_id in zip(found, ids)
             for way in DB[name].peer.state_loads]
    return [p[0] for p in pairs], [p[1] for p in pairs]


LOADS, LOADS_IDS = _loads()


@pytest.mark.parametrize("name,kw,direction", LOADS, ids=LOADS_IDS)
def test_state_dict_loads_across_and_training_continues(name, kw, direction):
    field = DB[name].field(kw)
    ours, theirs = functools.partial(OPTIMIZERS[name], **kw), functools.partial(peer, name, kw=kw)
    first_cls, second_cls = (theirs, ours) if direction == "torch->ours" else (ours, theirs)
    params = field.torch_params()
    with peer_precision(name):
        first = first_cls(params)
        drive(first, params, field, 100)
        saved = roundtrip(first.state_dict())
        resumed = [p.detach().clone().requires_grad_() for p in params]
        second = second_cls(resumed)
        second.load_state_dict(saved)
        drive(first, params, field, 100, start=101)
        drive(second, resumed, field, 100, start=101)
    assert max_rel_err(flat(resumed), flat(params)) <= 1e-9


def _mlp_and_data(seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))
    x, y = torch.randn(64, 6), torch.randint(0, 3, (64,))
    return model, x, y


def _train(model, opt, x, y, steps):
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()


RESUME, RESUME_IDS = rich()


@pytest.mark.parametrize("name,kw", RESUME, ids=RESUME_IDS)
def test_resume_from_checkpoint_is_bit_identical(name, kw, tmp_path):
    model, x, y = _mlp_and_data()
    opt = OPTIMIZERS[name](model.parameters(), **kw)
    _train(model, opt, x, y, 20)
    path = tmp_path / "ckpt.pt"
    torch.save({"model": model.state_dict(), "optim": opt.state_dict()}, path)
    _train(model, opt, x, y, 20)

    fresh, _, _ = _mlp_and_data(seed=123)  # other weights: the checkpoint must overwrite them
    ckpt = torch.load(path, weights_only=True)
    fresh.load_state_dict(ckpt["model"])
    fresh_opt = OPTIMIZERS[name](fresh.parameters(), **kw)
    fresh_opt.load_state_dict(ckpt["optim"])
    _train(fresh, fresh_opt, x, y, 20)
    for a, b in zip(model.parameters(), fresh.parameters()):
        assert torch.equal(a, b)


# The shared cases of the optimizers whose param groups hold a momentum for OneCycleLR to
# cycle (`momentum` or `betas`), with the peer taking our arguments as they are.
CYCLED, CYCLED_IDS = peer_cases(lambda row, kw: row.peer.translate is dict and row.peer.cycles
                                and bool({"momentum", "betas"} & set(row.spec.hyperparameters)))


@pytest.mark.parametrize("name,kw", CYCLED, ids=CYCLED_IDS)
def test_one_cycle_lr_cycles_momentum_like_torch(name, kw):
    field = DB[name].field(kw)
    ours, theirs = field.torch_params(), field.torch_params()
    opts = [OPTIMIZERS[name](ours, **kw), peer(name, theirs, kw)]
    scheds = [torch.optim.lr_scheduler.OneCycleLR(o, max_lr=0.05, total_steps=300,
                                                  cycle_momentum=True) for o in opts]
    seen = set()
    for t in range(1, 301):
        for params, opt, sched in zip((ours, theirs), opts, scheds):
            field.set_torch_grads(params, t)
            opt.step()
            sched.step()
        g = opts[0].param_groups[0]
        seen.add(round(g["betas"][0] if "betas" in g else g["momentum"], 6))
    assert len(seen) > 50  # the momentum really was cycled
    assert max_rel_err(flat(ours), flat(theirs)) <= 1e-9


def test_one_cycle_lr_on_ema_momentum_uses_the_scheduled_beta():
    field = GradientField(shapes=[(6,)])
    params = field.torch_params()
    opt = OPTIMIZERS["momentum"](params, lr=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=200)
    ref, w = DB["momentum"].reference(lr=0.05), field.w0[0]
    for t in range(1, 201):
        ref.lr, ref.beta = opt.param_groups[0]["lr"], opt.param_groups[0]["momentum"]
        w = ref.step(w, field.grad(0, w, t))
        field.set_torch_grads(params, t)
        opt.step()
        sched.step()
    assert max_rel_err(params[0].detach().numpy(), w) <= 1e-9


def test_reduce_lr_on_plateau_works_like_torch():
    field = GradientField()
    ours, theirs = field.torch_params(), field.torch_params()
    opts = [OPTIMIZERS["adam"](ours, lr=1e-2), torch.optim.Adam(theirs, lr=1e-2)]
    scheds = [torch.optim.lr_scheduler.ReduceLROnPlateau(o, patience=2) for o in opts]
    for t in range(1, 101):
        for params, opt, sched in zip((ours, theirs), opts, scheds):
            field.set_torch_grads(params, t)
            opt.step()
            sched.step(1.0)  # a flat metric: the plateau rule must fire
    assert opts[0].param_groups[0]["lr"] < 1e-2 / 100
    assert max_rel_err(flat(ours), flat(theirs)) <= 1e-9


def test_param_groups_with_their_own_hyperparameters_match_torch():
    field = GradientField()
    ours, theirs = field.torch_params(), field.torch_params()
    a = OPTIMIZERS["adam"]([{"params": ours[:1]}, {"params": ours[1:2], "lr": 0.02}], lr=1e-2)
    b = torch.optim.Adam([{"params": theirs[:1]}, {"params": theirs[1:2], "lr": 0.02}], lr=1e-2)
    a.add_param_group({"params": ours[2:], "betas": (0.8, 0.99)})
    b.add_param_group({"params": theirs[2:], "betas": (0.8, 0.99)})
    drive(a, ours, field, 200)
    drive(b, theirs, field, 200)
    assert max_rel_err(flat(ours), flat(theirs)) <= 1e-9


def test_tensor_hyperparameters_equal_float_ones():
    field = GradientField()
    p, q = field.torch_params(), field.torch_params()
    drive(OPTIMIZERS["adam"](p, lr=1e-2, betas=(0.9, 0.99)), p, field, 50)
    f64 = dict(dtype=torch.float64)  # a float32 tensor would hold a different 0.9
    betas = (torch.tensor(0.9, **f64), torch.tensor(0.99, **f64))
    drive(OPTIMIZERS["adam"](q, lr=torch.tensor(1e-2, **f64), betas=betas), q, field, 50)
    for x, y in zip(p, q):
        assert torch.equal(x, y)


def test_step_returns_closure_loss_and_zero_grad_clears():
    model, x, y = _mlp_and_data()
    opt = OPTIMIZERS["adam"](model.parameters())

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert isinstance(loss, torch.Tensor) and loss.item() > 0
    opt.zero_grad()
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("kw", [dict(lr=0.1), dict(lr=0.1, momentum=0.9),
                                dict(lr=0.1, momentum=0.9, dampening=0.3),
                                dict(lr=0.05, momentum=0.8, nesterov=True, maximize=True)],
                         ids=["plain", "momentum", "dampening", "nesterov-maximize"])
def test_sgd_takes_sparse_gradients_like_torch(kw):
    """nn.Embedding(sparse=True): SGD steps the rows it sees, as torch.optim.SGD does."""
    models = []
    for _ in range(2):
        torch.manual_seed(0)
        models.append(torch.nn.Sequential(torch.nn.Embedding(20, 4, sparse=True),
                                          torch.nn.Linear(4, 3)).double())
    opts = [OPTIMIZERS["sgd"](models[0].parameters(), **kw),
            torch.optim.SGD(models[1].parameters(), **kw)]
    gen = torch.Generator().manual_seed(1)
    for _ in range(30):
        idx, y = torch.randint(0, 20, (8,), generator=gen), torch.randint(0, 3, (8,), generator=gen)
        for model, opt in zip(models, opts):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(idx), y).backward()
            assert model[0].weight.grad.is_sparse
            opt.step()
    assert opts[0].last_impl == ["reference"]
    for a, b in zip(models[0].parameters(), models[1].parameters()):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    assert not torch.equal(models[0][0].weight, models[0][0].weight.detach() * 0)


def test_sparse_gradients_refuse_an_explicit_fast_path():
    emb = torch.nn.Embedding(10, 3, sparse=True)
    emb(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(RuntimeError, match="fused=True\\) cannot take sparse gradients"):
        OPTIMIZERS["sgd"](emb.parameters(), lr=0.1, fused=True).step()

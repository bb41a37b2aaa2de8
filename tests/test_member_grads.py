"""The vectorized sweep's gradients against plain autograd, one member at a time, in float64."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from optimlab.lab.member_grads import member_grads, views
from optimlab.models import build
from optimlab.models.batched import HAND_WRITTEN_LOGITS, Workspace

# One table: model, input shape, classes. Every model has a written-out path (the CNN's
# signals with one channel and with two, and its images) and the vmap fallback.
MODELS = [("logreg", (8,), 4), ("mlp", (8,), 4), ("mlp", (2, 5), 3), ("mlp", (40,), 10),
          ("cnn", (12,), 4), ("cnn", (40,), 10), ("cnn", (2, 9), 3), ("cnn", (3, 7, 6), 4)]
K, B = 3, 7


def stacked(name: str, shape: tuple[int, ...], classes: int, members: int = K):
    """`members` float64 copies of the model from different seeds, as a [K, P] tensor."""
    copies = []
    for seed in range(members):
        torch.manual_seed(seed)
        copies.append(build(name, shape, classes).double())
    shapes = [(n, p.shape) for n, p in copies[0].named_parameters()]
    flat = torch.stack([torch.cat([p.detach().reshape(-1) for p in m.parameters()])
                        for m in copies])
    return copies, shapes, flat


def autograd_reference(model, x, y):
    """Loss and gradient [P] of one member by loss.backward() on the module itself."""
    model.zero_grad()
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    return float(loss.detach()), torch.cat([p.grad.reshape(-1) for p in model.parameters()])


@pytest.mark.parametrize("name,shape,classes", MODELS)
@pytest.mark.parametrize("hand_written", [True, False])
@pytest.mark.parametrize("shared", [False, True], ids=["own-minibatch", "shared-minibatch"])
def test_member_gradients_equal_autograd_in_float64(name, shape, classes, hand_written,
                                                     shared):
    copies, shapes, flat = stacked(name, shape, classes)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(K, B, *shape, generator=g, dtype=torch.float64)
    y = torch.randint(0, classes, (K, B), generator=g)
    if shared:  # one seed: one minibatch expanded over the members, as the executor does
        x, y = x[0].expand_as(x), y[0].expand_as(y)
    out = torch.full_like(flat, math.nan)
    losses = member_grads(copies[0], hand_written)(views(flat, shapes), x, y, out)
    for k, model in enumerate(copies):
        loss, grad = autograd_reference(model, x[k], y[k])
        assert float(losses[k]) == pytest.approx(loss, rel=1e-13)
        torch.testing.assert_close(out[k], grad, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("members,batch", [(1, 1), (1, 4), (2, 1), (5, 3)])
@pytest.mark.parametrize("shape", [(40,), (1, 5, 4)])
def test_cnn_gradients_equal_autograd_for_any_members_and_batch(shape, members, batch):
    """K = 1, a batch of one, odd sizes: the written-out CNN against autograd (float64)."""
    copies, shapes, flat = stacked("cnn", shape, 5, members)
    g = torch.Generator().manual_seed(members * 10 + batch)
    x = torch.randn(members, batch, *shape, generator=g, dtype=torch.float64)
    y = torch.randint(0, 5, (members, batch), generator=g)
    out = torch.full_like(flat, math.nan)
    losses = member_grads(copies[0])(views(flat, shapes), x, y, out)
    for k, model in enumerate(copies):
        loss, grad = autograd_reference(model, x[k], y[k])
        assert float(losses[k]) == pytest.approx(loss, rel=1e-13)
        torch.testing.assert_close(out[k], grad, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name", ["logreg", "mlp", "cnn"])
def test_a_nonfinite_member_leaves_the_others_untouched(name):
    copies, shapes, flat = stacked(name, (8,), 4)
    flat[1, 0] = math.inf
    x = torch.randn(K, B, 8, dtype=torch.float64)
    y = torch.randint(0, 4, (K, B))
    out = torch.empty_like(flat)
    losses = member_grads(copies[0])(views(flat, shapes), x, y, out)
    assert not math.isfinite(float(losses[1]))
    for k in (0, 2):
        loss, grad = autograd_reference(copies[k], x[k], y[k])
        assert float(losses[k]) == pytest.approx(loss, rel=1e-13)
        torch.testing.assert_close(out[k], grad, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name,shape,classes", [m for m in MODELS if m[0] != "cnn"])
def test_batched_logits_equal_each_members_forward(name, shape, classes):
    copies, shapes, flat = stacked(name, shape, classes)
    x = torch.randn(11, *shape, dtype=torch.float64)
    logits_t = HAND_WRITTEN_LOGITS[type(copies[0])](views(flat, shapes), x, Workspace())
    for k, model in enumerate(copies):
        torch.testing.assert_close(logits_t[k].T, model(x), rtol=1e-13, atol=1e-15)

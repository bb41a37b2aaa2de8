"""Models: parameter counts from closed forms, output shapes, float64, vmap, no seeding."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import MNIST_T10K, needs_t10k
from torch.func import functional_call, stack_module_state, vmap

from optimlab.data import load
from optimlab.models import MODELS, build

# One table of dataset input shapes: MNIST-1D, MNIST-like, CIFAR-like, 2-channel signals.
SHAPES = [(40,), (1, 28, 28), (3, 32, 32), (2, 40)]
# The models for any of those shapes; the transformer takes token ids (test_suite.py).
SHAPED = [m for m in MODELS if m != "transformer"]


def conv_size(n: int) -> int:
    """Spatial size after the reference ConvBase stack, written out layer by layer."""
    n = (n + 2 * 1 - 5) // 2 + 1  # kernel 5, stride 2, padding 1
    n = (n + 2 * 1 - 3) // 2 + 1  # kernel 3
    return (n + 2 * 1 - 3) // 2 + 1  # kernel 3


def expected_params(name: str, shape: tuple[int, ...], classes: int) -> int:
    """Closed-form parameter counts: weights + biases of each layer."""
    d = math.prod(shape)
    if name == "logreg":
        return d * classes + classes
    if name == "mlp":
        return (d * 100 + 100) + (100 * 100 + 100) + (100 * classes + classes)
    c_in = 1 if len(shape) == 1 else shape[0]
    spatial = shape if len(shape) == 1 else shape[1:]
    k1, k2 = 5 ** len(spatial), 3 ** len(spatial)
    convs = (c_in * 25 * k1 + 25) + 2 * (25 * 25 * k2 + 25)
    flat = 25 * math.prod(conv_size(n) for n in spatial)
    return convs + flat * classes + classes


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", SHAPED)
def test_parameter_count_and_output_shape(name, shape):
    torch.manual_seed(0)
    model = build(name, shape, 10)
    assert n_params(model) == expected_params(name, shape, 10)
    out = model(torch.randn(7, *shape))
    assert out.shape == (7, 10) and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    assert not list(model.buffers()), "buffers would break vmap over stacked copies"


def test_mnist1d_reference_sizes():
    """The MNIST-1D paper's models: linear 40→10, MLP 40-100-100-10, ConvBase of about 5k."""
    assert n_params(build("logreg", (40,), 10)) == 40 * 10 + 10
    assert n_params(build("mlp", (40,), 10)) == 40 * 100 + 100 + 100 * 100 + 100 + 100 * 10 + 10
    cnn = build("cnn", (40,), 10)
    assert 4_500 <= n_params(cnn) <= 5_500
    convs = [m for m in cnn.modules() if isinstance(m, torch.nn.Conv1d)]
    assert [(c.out_channels, c.kernel_size[0], c.stride[0], c.padding[0]) for c in convs] == [
        (25, 5, 2, 1), (25, 3, 2, 1), (25, 3, 2, 1)]


def test_mlp_matches_hand_written_forward():
    """The reference MLPBase: h1 = relu(W1 x + b1); h2 = h1 + relu(W2 h1 + b2); W3 h2 + b3."""
    model = build("mlp", (40,), 10).double()
    (w1, b1), (w2, b2), (w3, b3) = [(lin.weight, lin.bias) for lin in
                                    (model.linear1, model.linear2, model.linear3)]
    x = torch.randn(5, 40, dtype=torch.float64)
    h1 = (x @ w1.T + b1).clamp_min(0)
    h2 = h1 + (h1 @ w2.T + b2).clamp_min(0)
    torch.testing.assert_close(model(x), h2 @ w3.T + b3, rtol=0, atol=1e-12)


@pytest.mark.parametrize("shape", SHAPES[:3])
def test_cnn_matches_functional_convolutions(shape):
    """The CNN equals the three stride-2 convolutions + ReLU + linear head, done by hand."""
    model = build("cnn", shape, 10).double()
    conv = torch.nn.functional.conv1d if len(shape) == 1 else torch.nn.functional.conv2d
    x = torch.randn(3, *shape, dtype=torch.float64)
    h = x.unsqueeze(1) if len(shape) == 1 else x
    for layer in model.convs:
        h = conv(h, layer.weight, layer.bias, stride=2, padding=1).clamp_min(0)
    want = h.reshape(3, -1) @ model.linear.weight.T + model.linear.bias
    torch.testing.assert_close(model(x), want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("shape", SHAPES[:3])
@pytest.mark.parametrize("name", SHAPED)
def test_float64_and_vmap_over_stacked_copies(name, shape):
    """K copies stacked with torch.func give the same logits as running each copy."""
    copies = [build(name, shape, 10).double() for _ in range(3)]
    params, buffers = stack_module_state(copies)
    x = torch.randn(4, *shape, dtype=torch.float64)

    def one(p, b, xb):
        return functional_call(copies[0], (p, b), (xb,))

    out = vmap(one, in_dims=(0, 0, None))(params, buffers, x)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, torch.stack([m(x) for m in copies]), rtol=0, atol=1e-12)


def test_build_does_not_seed():
    torch.manual_seed(3)
    a = build("cnn", (40,), 10)
    b = build("cnn", (40,), 10)
    torch.manual_seed(3)
    c = build("cnn", (40,), 10)
    pairs = list(zip(a.parameters(), b.parameters(), c.parameters(), strict=True))
    assert all(torch.equal(pa, pc) for pa, _, pc in pairs), "same seed, same weights"
    assert not all(torch.equal(pa, pb) for pa, pb, _ in pairs), "build must not reseed"


@pytest.mark.parametrize(("args", "match"), [
    (("resnet", (40,), 10), "resnet"),
    (("mlp", (), 10), r"input_shape=\(\)"),
    (("mlp", (0, 3), 10), r"input_shape=\(0, 3\)"),
    (("mlp", (1, 2, 3, 4), 10), r"input_shape=\(1, 2, 3, 4\)"),
    (("mlp", (40,), 0), "num_classes=0"),
    (("cnn", (2,), 10), r"input_shape=\(2,\) is too small"),
])
def test_bad_arguments_name_the_value(args, match):
    with pytest.raises(ValueError, match=match):
        build(*args)


@needs_t10k
def test_logreg_learns_real_digits(tmp_path):
    """A few hundred Adam steps of logistic regression on real MNIST digits: far above the
    10% of chance (published linear classifiers reach about 92% on full MNIST)."""
    data = load("mnist-t10k", data_dir=MNIST_T10K.parent, cache_dir=tmp_path)
    torch.manual_seed(0)
    model = build("logreg", data.input_shape, data.num_classes)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(300):
        batch = torch.randint(len(data.y_train), (100,), generator=gen)
        loss = torch.nn.functional.cross_entropy(model(data.x_train[batch]), data.y_train[batch])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        accuracy = (model(data.x_val).argmax(1) == data.y_val).float().mean().item()
    assert accuracy > 0.8

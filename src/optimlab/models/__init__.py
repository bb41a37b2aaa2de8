"""Models for any dataset's input shape: logistic regression, MLP, small CNN; and a small
transformer for token sequences (`optimlab.models.transformer`).

On MNIST-1D (input shape ``(40,)``) they are the reference architectures of the
MNIST-1D paper and repository (Greydanus & Kobak, greydanus/mnist1d ``models.py``):

- ``logreg``: one linear layer, 40 → 10 (410 parameters);
- ``mlp``: 40 → 100 → 100 → 10 with ReLU, the second hidden layer added to the
  first as in the reference ``MLPBase`` (15,210 parameters);
- ``cnn``: the reference ``ConvBase``: three 1-D convolutions with 25 channels
  (kernel 5 then 3, 3; stride 2; padding 1), ReLU, then a linear head (5,210 parameters).

Images ``(C, H, W)`` get the same recipes with 2-D convolutions. Models hold no
buffers and never modify parameters in place, so ``torch.func.functional_call`` +
``torch.func.vmap`` over K stacked copies work; ``build`` does not seed (callers do).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from optimlab.models.cnn import ConvNet
from optimlab.models.mlp import MLP, LogReg
from optimlab.models.transformer import Transformer
from optimlab.models.user import build_user, is_user_model, register

_BUILDERS: dict[str, Callable[[tuple[int, ...], int], torch.nn.Module]] = {
    "logreg": LogReg,
    "mlp": MLP,
    "cnn": ConvNet,
    "transformer": Transformer,
}
# Names accepted by `build`, simplest first.
MODELS: tuple[str, ...] = tuple(_BUILDERS)


def build(name: str, input_shape: tuple[int, ...], num_classes: int) -> torch.nn.Module:
    """A fresh float32 model `name` mapping a batch of `input_shape` examples to logits
    (`num_classes` outputs: the classes, or a regression target's size).

    Weights come from torch's default initializers and the global RNG: call
    ``torch.manual_seed(seed)`` right before, so every optimizer starts identical.
    A user's model (``module:callable`` or one registered from Python, see
    `optimlab.models.user`) is built by its own factory; the shapes are not used.
    """
    if is_user_model(name):
        return build_user(name)
    if name not in _BUILDERS:
        raise ValueError(f"unknown model name={name!r}; allowed: {', '.join(MODELS)} or "
                         "module:callable returning an nn.Module")
    shape = tuple(input_shape)
    if not shape or any(not isinstance(d, int) or d < 1 for d in shape):
        raise ValueError(
            f"invalid input_shape={input_shape!r}; allowed: a non-empty tuple of positive ints")
    if len(shape) > 3:
        raise ValueError(f"invalid input_shape={input_shape!r}; allowed: (L,), (C, L) or (C, H, W)")
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"invalid num_classes={num_classes!r}; allowed: an int >= 1 (the "
                         "outputs: classes, or a regression target's size)")
    return _BUILDERS[name](shape, num_classes)


__all__ = ["MODELS", "build", "is_user_model", "register", "LogReg", "MLP", "ConvNet",
           "Transformer"]

"""The optimizers, in the lecture's order: SGD → Momentum → RMSprop → Adam (→ AdamW).

Each is a drop-in `torch.optim.Optimizer`. Every class has a per-tensor
reference update (`foreach=False`), a multi-tensor path (`foreach=True`) and,
where it applies, a fused single-pass kernel (`fused=True`); the default picks
the fastest that applies. `opt.last_impl` says which ran for each param group.
"""

from optimlab.optim.adam import Adam, AdamW, adam_foreach, adam_reference
from optimlab.optim.momentum import Momentum, momentum_foreach, momentum_reference
from optimlab.optim.rmsprop import RMSprop, rmsprop_foreach, rmsprop_reference
from optimlab.optim.sgd import SGD, sgd_foreach, sgd_reference

# Names used by the lab and the CLI.
OPTIMIZERS = {"sgd": SGD, "momentum": Momentum, "rmsprop": RMSprop, "adam": Adam, "adamw": AdamW}

__all__ = [
    "OPTIMIZERS", "SGD", "Momentum", "RMSprop", "Adam", "AdamW",
    "sgd_reference", "sgd_foreach", "momentum_reference", "momentum_foreach",
    "rmsprop_reference", "rmsprop_foreach", "adam_reference", "adam_foreach",
]

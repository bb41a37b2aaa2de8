"""`BaseOptimizer.step` as torch.compile runs it: outside the graph, as eager code.

Imported by a step that dynamo traces, where torch._dynamo is imported already:
`torch.compiler.disable` imports it, which building or stepping an optimizer eagerly
must not (`optimlab._dynamo`). Dynamo ends the graph before the call, runs it as eager
code (where `is_compiling()` is False) and starts a new graph after it.
"""

from __future__ import annotations

import torch

from optimlab.optim._base import BaseOptimizer

eager_step = torch.compiler.disable(BaseOptimizer.step)

"""A small transformer encoder for token sequences (the suite's attention workload).

Inputs are token ids in [0, VOCAB) given as a [B, L] tensor of any dtype (the lab hands
every dataset over as floats; ids are exact in float32); the logits are read at the last
position, where the sequence tasks put their query (`optimlab.data.lookup`). Pre-norm
blocks (Xiong et al. 2020), learned positions, attention written out so that the model
holds no buffers and `torch.func.functional_call` + `vmap` over stacked copies work.

References:
- Vaswani, A. et al. (2017). Attention Is All You Need. NeurIPS.
- Xiong, R. et al. (2020). On Layer Normalization in the Transformer Architecture. ICML.
"""

from __future__ import annotations

import math

import torch
from torch import nn

VOCAB = 32  # token ids the embedding holds: the lookup task uses 18 of them
WIDTH = 32  # model width: ≈ 27k parameters in all, the suite's largest model on CPU
HEADS = 2
LAYERS = 2
MAX_LEN = 64  # learned positions; longer sequences are refused


class Block(nn.Module):
    """x + attention(LN(x)), then + MLP(LN(x)) with a 4x hidden width."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv, self.proj = nn.Linear(width, 3 * width), nn.Linear(width, width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(),
                                 nn.Linear(4 * width, width))

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = (t.reshape(b, n, self.heads, d // self.heads).transpose(1, 2)
                   for t in self.qkv(x).chunk(3, dim=-1))
        weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(d // self.heads), dim=-1)
        return self.proj((weights @ v).transpose(1, 2).reshape(b, n, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class Transformer(nn.Module):
    """Token and position embeddings, LAYERS blocks, a final norm, a linear head."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int) -> None:
        super().__init__()
        if len(input_shape) != 1 or not 1 <= input_shape[0] <= MAX_LEN:
            raise ValueError(f"input_shape={tuple(input_shape)!r} does not fit the transformer; "
                             f"allowed: (L,), token sequences of length 1..{MAX_LEN}")
        self.embed = nn.Embedding(VOCAB, WIDTH)
        self.position = nn.Parameter(0.02 * torch.randn(input_shape[0], WIDTH))
        self.blocks = nn.ModuleList(Block(WIDTH, HEADS) for _ in range(LAYERS))
        self.norm = nn.LayerNorm(WIDTH)
        self.head = nn.Linear(WIDTH, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x.long()) + self.position
        for block in self.blocks:
            h = block(h)
        return self.head(self.norm(h[:, -1]))

"""Run by `torchrun --nproc_per_node=2` (tests/test_distributed.py): every optimizer under
FSDP2 (`fully_shard` on each Linear and on the model: parameters are DTensors) and under
DDP, against the torch.optim method with the same semantics, on gloo. Rank 0 writes
{mode: {optimizer: [[ours losses], [torch losses], [ours last_impl]]}} to argv[1]."""

from __future__ import annotations

import functools
import json
import os
import sys

import torch
import torch.distributed as dist
from optim_db import ROWS
from torch.distributed.fsdp import fully_shard
from torch.nn.parallel import DistributedDataParallel

STEPS = 30
# Each optimizer with a torch.optim peer (optim_db.py), in the case they share with the
# most options on that trains downhill: name -> (the class, our keyword arguments, the
# peer's class and keyword arguments).
PEERS = {}
for row in ROWS:
    if row.peer:
        kw = max((kw for kw in row.peer.cases if not kw.get("maximize")), key=len)
        PEERS[row.name] = (row.cls, kw, row.peer_cls, row.peer.translate(kw))


def model(mode: str) -> torch.nn.Module:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
    if mode == "ddp":
        return DistributedDataParallel(net)
    for layer in net:
        if isinstance(layer, torch.nn.Linear):
            fully_shard(layer)
    fully_shard(net)
    return net


def train(mode: str, make) -> tuple[list[float], list[str]]:
    net = model(mode)
    opt = make(net.parameters())
    gen = torch.Generator().manual_seed(1 + dist.get_rank())  # each rank its own batch
    x, y = torch.randn(16, 8, generator=gen), torch.randint(0, 4, (16,), generator=gen)
    losses = []
    for _ in range(STEPS):
        loss = torch.nn.functional.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        total = loss.detach().clone()
        dist.all_reduce(total)  # the mean over ranks: the loss of the global batch
        losses.append(total.item() / dist.get_world_size())
    return losses, list(getattr(opt, "last_impl", []))


def main(out: str) -> None:
    dist.init_process_group("gloo")
    results: dict[str, dict[str, list]] = {}
    for mode in ("fsdp2", "ddp"):
        for name, (cls, ours_kw, torch_cls, torch_kw) in PEERS.items():
            ours, impl = train(mode, functools.partial(cls, **ours_kw))
            theirs, _ = train(mode, functools.partial(torch_cls, **torch_kw))
            results.setdefault(mode, {})[name] = [ours, theirs, impl]
    if dist.get_rank() == 0:
        with open(out, "w") as f:
            json.dump(results, f)
    # Both ranks leave together, and without tearing gloo down: its threads' destructors
    # abort the process now and then at exit ("terminate called without an active
    # exception", SIGABRT, after the results were written; seen in CI and here, with the
    # barrier and destroy_process_group too). The results are on disk; the OS closes the rest.
    dist.barrier()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1])

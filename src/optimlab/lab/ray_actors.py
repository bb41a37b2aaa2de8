"""The Ray executor's two actors, kept free of torch: Ray starts a process for each actor,
which imports the actor's module, and importing torch and the lab there (about a second
each on 2 CPUs) held up every task, which asks the checkpoint actor first.
(`optimlab.lab.ray_executor` uses them; docs/distributed.md.)"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from optimlab.lab.store import Checkpoint


class Steps:
    """Holds each running shard's last reported member-steps."""

    def __init__(self) -> None:
        self.steps: dict[int, int] = {}

    def set(self, shard: int, step: int) -> None:
        self.steps[shard] = step

    def get(self) -> dict[int, int]:
        return self.steps


class CheckpointSink:
    """Holds the shards' checkpoints: the new ones, until the driver takes them, and each
    shard's latest per run (a shard run again goes on from those)."""

    def __init__(self) -> None:
        self.new: list[Checkpoint] = []
        self.latest: dict[int, dict[str, tuple[int, bytes]]] = {}

    def put(self, shard: int, items: list[tuple[str, Checkpoint]]) -> None:
        for key, (config, step, blob) in items:
            self.latest.setdefault(shard, {})[key] = (step, blob)
            self.new.append((config, step, blob))

    def take(self) -> list[Checkpoint]:
        new, self.new = self.new, []
        return new

    def last(self, shard: int) -> dict[str, tuple[int, bytes]]:
        return self.latest.get(shard, {})

    def forget(self, shard: int) -> None:
        """The shard has ended: its checkpoints are no longer needed."""
        self.latest.pop(shard, None)

"""The sweep benchmark: `optimlab sweep` against the loop a student writes, side by side.

Rows, all on the same data, configurations and torch threads, in one process run:

- `loop`: the lecture's loop once per configuration: a `DataLoader` over a
  `TensorDataset`, a `torch.optim` optimizer that computes the same update as ours
  (`torch_peer`), then `zero_grad`, forward, `cross_entropy`, `backward`, `step`; the
  final metrics by `optimlab.train.evaluate`. Its clock starts after the data is loaded
  (a student's script would also pay `import torch` and the data: we do not charge them);
- `command`: the whole `optimlab sweep` command in a fresh process (start-up, imports,
  data, training, evaluation every `eval_every` steps, the store and the report);
- `vectorized`, `sequential`, `processes`, ...: the executors, in this process, each into
  an empty folder (`wall_s` the whole sweep, `train_s` the summed training clocks, divided
  by the number of groups the vectorized executor trained at once).
  `ray` runs on the Ray cluster this process joins (`optimlab.lab.ray_executor.connect`:
  $RAY_ADDRESS, or a local Ray of this machine's cores), started before the rounds and
  timed apart (`ray_init_s`); its row reports its overhead against `vectorized`.

The FLOP count is the model's matrix arithmetic (forward and backward GEMMs of every
linear and convolution layer, im2col form: 2·m·k·n each), and the machine's
matrix-multiply rate is measured in the same run on those very shapes, stacked over the
sweep's members (`torch.bmm`), each product in the fastest of the layouts that compute it
(which operand is stored transposed, and whether C or Cᵀ is written), so "fraction of the
matmul rate" compares like with like against the best the machine does on them.
"""

from __future__ import annotations

import itertools
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from optimlab.analysis.records import read_summary
from optimlab.bench.report import format_goals, goal
from optimlab.lab import executors, ray_executor
from optimlab.lab.environment import environment
from optimlab.lab.grid import EXECUTORS, SweepConfig, with_executor
from optimlab.lab.member_grads import member_grads
from optimlab.lab.store import run_name
from optimlab.lab.sweep import Sweep, grid_configs
from optimlab.optim.batched import BatchedOptimizer
from optimlab.train import RunResult, TrainConfig, evaluate, init_model, on_device
from optimlab.train.config import DTYPES

# Ray's wall time over the local vectorized executor's, at most (2 CPUs, the same sweep)
RAY_GOAL = 1.2
# The sweep's other goals: the whole command against the loop, the training's fraction of
# the matmul rate (fastest layouts), the vectorized executor against the sequential one.
LOOP_GOAL, MATMUL_GOAL, SEQUENTIAL_GOAL = 10.0, 0.70, 4.0
# The rows that are not executors of ours.
PEERS = ("loop", "command")
ROWS = (*PEERS, *EXECUTORS)
# What runs by default: every row whose engine is installed (Ray is an optional extra).
DEFAULT_ROWS = tuple(r for r in ROWS if r != "ray" or ray_executor.installed())


def torch_peer(optimizer: str, hp: dict[str, Any]) -> tuple[type[torch.optim.Optimizer],
                                                            dict[str, Any]]:
    """The torch.optim class and arguments that compute the same update as ours.

    Our EMA momentum (v ← βv + (1−β)g, w ← w − ηv) is torch's heavy ball (v ← βv + g)
    with η(1−β): both v start at 0, so v_ema = (1−β)·v_heavy at every step.
    """
    kw = dict(hp)
    if "betas" in kw:
        kw["betas"] = tuple(kw["betas"])
    if optimizer == "momentum":
        beta = kw.pop("momentum", 0.9)
        return torch.optim.SGD, {**kw, "lr": kw["lr"] * (1 - beta), "momentum": beta}
    if optimizer == "rmsprop":
        return torch.optim.RMSprop, {"alpha": 0.9, **kw}  # ours defaults to the lecture's β
    peers = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
    return peers[optimizer], kw


def student_loop(config: TrainConfig, dataset: Any) -> dict[str, Any]:
    """One configuration trained as the lecture writes it; the final metrics and clock.

    Same initial weights as our runs (`init_model`); the minibatches are the
    DataLoader's own shuffle (seeded with the run's seed, but in another order than
    ours: the loader also draws its workers' seeds from the generator), so results
    agree with ours within seed-to-seed noise, as any two seeds do.
    """
    t0 = time.perf_counter()
    data = on_device(dataset, "cpu", config.torch_dtype)
    model = init_model(config.model, data, config.seed, config.torch_dtype)
    cls, kw = torch_peer(config.optimizer, config.hyperparameters)
    optimizer = cls(model.parameters(), **kw)
    loader = DataLoader(TensorDataset(data.x_train, data.y_train), batch_size=config.batch_size,
                        shuffle=True, drop_last=True,
                        generator=torch.Generator().manual_seed(config.seed))
    step, diverged = 0, False
    while step < config.steps and not diverged:
        for x, y in loader:
            step += 1
            diverged = not math.isfinite(loop_step(model, optimizer, x, y))
            if step == config.steps or diverged:
                break
    train_s = time.perf_counter() - t0
    metrics = evaluate(model, data)
    return {"run": run_name(config), "train_seconds": train_s, "diverged": diverged,
            "final_val_acc": metrics.get("val", {}).get("acc"),
            "final_test_acc": metrics["test"]["acc"],
            "final_train_loss": metrics["train"]["loss"],
            "wall_s": time.perf_counter() - t0}


def loop_step(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor,
              y: torch.Tensor) -> float:
    """The lecture's step: zero_grad, forward, cross_entropy, backward, step; the loss."""
    optimizer.zero_grad()
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    optimizer.step()
    return loss.item()


def gemms(model: nn.Module, input_shape: tuple[int, ...], batch: int
          ) -> list[tuple[int, int, int]]:
    """(m, k, n) of every matrix product in one training step of `model` on `batch` inputs:
    per linear or convolution layer the forward (m×k · k×n), the weight gradient and,
    except for the first layer, the input gradient (im2col form for convolutions)."""
    layers: list[tuple[int, int, int]] = []

    def hook(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
        if isinstance(module, nn.Linear):
            rows = output.numel() // module.out_features
            layers.append((rows, module.in_features, module.out_features))
        else:  # a convolution: one row per output position, k = c_in · kernel elements
            conv: Any = module
            rows = output.numel() // conv.out_channels
            k = conv.in_channels * math.prod(conv.kernel_size) // conv.groups
            layers.append((rows, k, conv.out_channels))

    kinds = (nn.Linear, nn.Conv1d, nn.Conv2d)
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, kinds)]
    try:
        with torch.no_grad():
            model(torch.zeros(batch, *input_shape, dtype=next(model.parameters()).dtype))
    finally:
        for h in handles:
            h.remove()
    out = []
    for i, (m, k, n) in enumerate(layers):
        out += [(m, k, n), (k, m, n)] + ([(m, n, k)] if i > 0 else [])
    return out


def flops_per_step(shapes: list[tuple[int, int, int]]) -> int:
    """Multiply-adds count twice: 2·m·k·n per product."""
    return sum(2 * m * k * n for m, k, n in shapes)


# The ways one product C = A·B can be computed, as three letters: A stored as it is (N) or
# transposed (T, i.e. as Aᵀ contiguous), B likewise, and C written as it is (N) or as Cᵀ,
# computed as Bᵀ·Aᵀ (T). MKL's speed differs between them severalfold on the sweep's
# narrow shapes (a 100 × 10 output against its 10 × 100 transpose: docs/performance.md,
# 'Behind the code'), and a model is free to store its operands and outputs either way.
LAYOUTS = tuple(a + b + c for a in "NT" for b in "NT" for c in "NT")
PLAIN = "NNN"  # every operand and output as the product is written: the rate's old layout


def layout_product(a: torch.Tensor, b: torch.Tensor, layout: str
                   ) -> tuple[Callable[[], object], torch.Tensor]:
    """(a call computing the product of a [K, m, k] and b [K, k, n] in `layout`, the product
    [K, m, n] it leaves: C itself, or a transposed view of the Cᵀ it writes). The operands
    are copied into the layout's storage here, so the call is one `torch.bmm` and nothing
    else."""
    def stored(t: torch.Tensor, letter: str) -> torch.Tensor:
        return t.contiguous() if letter == "N" else t.transpose(1, 2).contiguous().transpose(1, 2)

    a, b = stored(a, layout[0]), stored(b, layout[1])
    if layout[2] == "N":
        c = torch.empty(len(a), a.shape[1], b.shape[2], dtype=a.dtype)
        return lambda: torch.bmm(a, b, out=c), c
    ct = torch.empty(len(a), b.shape[2], a.shape[1], dtype=a.dtype)
    at, bt = a.transpose(1, 2), b.transpose(1, 2)
    return lambda: torch.bmm(bt, at, out=ct), ct.transpose(1, 2)


def _per_call(fn: Callable[[], object], calls: int, clock: Callable[[], float]) -> float:
    t0 = clock()
    for _ in range(calls):
        fn()
    return (clock() - t0) / calls


def matmul_rate(shapes: list[tuple[int, int, int]], members: int, dtype: torch.dtype,
                rounds: int = 7, target_s: float = 0.05,
                clock: Callable[[], float] = time.perf_counter) -> dict[str, Any]:
    """The machine's matrix-multiply rate on `shapes`, stacked over `members`: the matrix work
    of one vectorized step and nothing else (`torch.bmm`, outputs preallocated).

    Each distinct product is timed in every one of `LAYOUTS` (median of `rounds`
    interleaved rounds, by `clock`), and the rate counts each at its fastest layout: the
    ceiling of a step whose every product is stored the best way. `plain_*` is the same
    sum in the plain layout alone. `products` says, per distinct shape (m, k, n) and how
    often the step has it, every layout's ms and the fastest."""
    gen = torch.Generator().manual_seed(0)
    distinct = list(dict.fromkeys(shapes))
    calls: dict[tuple[tuple[int, int, int], str], Callable[[], object]] = {}
    for m, k, n in distinct:
        a = torch.randn(members, m, k, generator=gen, dtype=dtype)
        b = torch.randn(members, k, n, generator=gen, dtype=dtype)
        for layout in LAYOUTS:
            calls[(m, k, n), layout] = fn = layout_product(a, b, layout)[0]
            fn()
    # Calls per sample: each distinct product's samples take ≈ target_s per round together.
    inner = {key: max(1, round(target_s / len(distinct) / max(_per_call(fn, 1, clock), 1e-7)))
             for key, fn in calls.items() if key[1] == PLAIN}
    samples: dict[tuple[tuple[int, int, int], str], list[float]] = {key: [] for key in calls}
    for _ in range(rounds):
        for key, fn in calls.items():
            samples[key].append(_per_call(fn, inner[key[0], PLAIN], clock))
    products: list[dict[str, Any]] = []
    for shape in distinct:
        ms = {layout: statistics.median(samples[shape, layout]) * 1e3 for layout in LAYOUTS}
        products.append({"shape": list(shape), "count": shapes.count(shape),
                         "best": min(LAYOUTS, key=ms.__getitem__), "ms": ms})
    best_ms = sum(p["count"] * p["ms"][p["best"]] for p in products)
    plain_ms = sum(p["count"] * p["ms"][PLAIN] for p in products)
    flop = flops_per_step(shapes) * members
    return {"gflop_per_step": flop / 1e9, "ms_per_step": best_ms, "gflops": flop / best_ms / 1e6,
            "plain_ms_per_step": plain_ms, "plain_gflops": flop / plain_ms / 1e6,
            "products": products}


def best_layouts(rates: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per distinct product of `rates` (`matmul_rate` results on the same shapes): each
    layout's median ms across `rates`, the fastest of them, its ms and the plain layout's."""
    out = []
    for i, p in enumerate(rates[0]["products"]):
        ms = {layout: statistics.median(r["products"][i]["ms"][layout] for r in rates)
              for layout in LAYOUTS}
        best = min(LAYOUTS, key=ms.__getitem__)
        out.append({"shape": p["shape"], "count": p["count"], "best": best,
                    "best_ms": ms[best], "plain_ms": ms[PLAIN], "ms": ms})
    return out


def format_layouts(products: list[dict[str, Any]]) -> str:
    """A heading, then one line per distinct product: its shape, count, fastest layout and
    the plain one."""
    return "\n".join([
        "  per product (m×k×n, count: fastest layout; of A, B, C: N as is, T transposed):",
        *(f"    {'×'.join(map(str, p['shape'])):<12} ×{p['count']}: {p['best']} "
          f"{p['best_ms']:.3f} ms, plain {p['plain_ms']:.3f} ms" for p in products)])


@dataclass
class SweepBenchConfig:
    sweep: SweepConfig  # the configurations, as `optimlab sweep` takes them
    rows: tuple[str, ...] = DEFAULT_ROWS  # what to time (PEERS and EXECUTORS), in this order
    threads: int = 0  # torch threads for every row; 0: torch's default (one per core)
    repeats: int = 1  # rounds of all rows, order rotated each round; medians reported

    def validate(self) -> None:
        bad = [r for r in self.rows if r not in ROWS]
        if bad or not self.rows:
            raise ValueError(f"Invalid rows: {', '.join(bad) or '(none)'}; allowed: "
                             f"{', '.join(ROWS)}")
        if self.threads < 0 or self.repeats < 1:
            raise ValueError(f"Invalid threads={self.threads} / repeats={self.repeats}; "
                             "allowed: threads >= 0 (0: torch's default), repeats >= 1")
        if "ray" in self.rows:
            ray_executor.require_ray()


def command_argv(cfg: SweepConfig, threads: int, out: Path) -> list[str]:
    """`optimlab sweep` for `cfg` as a user types it (its default evaluation schedule)."""
    lr = ",".join(repr(v) for v in cfg.grid["lr"])
    return [sys.executable, "-m", "optimlab", "sweep", "--optimizers", ",".join(cfg.optimizers),
            "--lr", lr, "--steps", str(cfg.steps), "--batch-size", str(cfg.batch_size),
            "--model", cfg.model, "--dataset", cfg.dataset, "--dtype", cfg.dtype,
            "--eval-every", str(cfg.eval_every), "--threads", str(threads), "--out", str(out)]


def _row_loop(cfg: SweepConfig, dataset: Any, _: Path, __: int) -> tuple[float, list[dict]]:
    t0 = time.perf_counter()
    records = [student_loop(c, dataset) for c in grid_configs(cfg, len(dataset.y_train))]
    return time.perf_counter() - t0, records


def _row_command(cfg: SweepConfig, _: Any, out: Path, threads: int) -> tuple[float, list[dict]]:
    t0 = time.perf_counter()
    done = subprocess.run(command_argv(cfg, threads, out), capture_output=True, text=True,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"optimlab sweep exited {done.returncode}: {done.stderr[-2000:]}")
    return wall, _with_names(read_summary(out / "summary.json"))


def _row_executor(name: str) -> Callable[..., tuple[float, list[dict]]]:
    def row(cfg: SweepConfig, dataset: Any, out: Path, _: int) -> tuple[float, list[dict]]:
        wall, _sweep, records = timed_sweep(with_executor(cfg, name), out, dataset)
        return wall, _with_names(records)
    return row


def timed_sweep(cfg: SweepConfig, out: str | Path, dataset: Any,
                on_result: Callable[[RunResult, float], None] | None = None
                ) -> tuple[float, Sweep, list[dict[str, Any]]]:
    """`Sweep(cfg, out).run()` timed as the benches report it: the wall clock of the whole
    sweep (its construction, the store and the summary included), the sweep, its records.
    `on_result(result, seconds)`: each finished run, with the seconds since the start."""
    t0 = time.perf_counter()
    each = None if on_result is None else (
        lambda result: on_result(result, time.perf_counter() - t0))
    sweep = Sweep(cfg, out, dataset=dataset)
    records = sweep.run(on_result=each)
    return time.perf_counter() - t0, sweep, records


def _with_names(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Summary records keyed like the loop's: by run name."""
    return [{**r, "run": run_name(TrainConfig(optimizer=r["optimizer"], seed=r["seed"],
                                               hyperparameters=r["hyperparameters"]))}
            for r in records]


def agreement(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> dict[str, Any]:
    """Largest |difference| of final metrics between runs of the same name, and the means."""
    by_run = {r["run"]: r for r in b}
    out: dict[str, Any] = {"same_diverged": all(r["diverged"] == by_run[r["run"]]["diverged"]
                                                for r in a)}
    for key in ("final_val_acc", "final_test_acc", "final_train_loss"):
        pairs = [(r[key], by_run[r["run"]][key]) for r in a
                 if r[key] is not None and by_run[r["run"]][key] is not None]
        out[f"max_abs_diff_{key}"] = max((abs(x - y) for x, y in pairs), default=None)
        out[f"mean_{key}"] = [statistics.fmean(x for x, _ in pairs) if pairs else None,
                              statistics.fmean(y for _, y in pairs) if pairs else None]
    return out


def run_sweep_bench(cfg: SweepBenchConfig, dataset: Any,
                    progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Every row `cfg.repeats` times (order rotated), as one JSON-ready record."""
    cfg.validate()
    threads = cfg.threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    sw = cfg.sweep
    rows: dict[str, Callable[..., tuple[float, list[dict]]]] = {
        "loop": _row_loop, "command": _row_command,
        **{name: _row_executor(name) for name in EXECUTORS}}
    model = init_model(sw.model, dataset, 0)
    shapes = gemms(model, tuple(dataset.input_shape), sw.batch_size)
    members = len(grid_configs(sw, len(dataset.y_train)))
    total_gflop = flops_per_step(shapes) * sw.steps_for(len(dataset.y_train)) * members / 1e9
    walls: dict[str, list[float]] = {r: [] for r in cfg.rows}
    records: dict[str, list[dict]] = {}
    rate = [matmul_rate(shapes, min(members, sw.max_batch), DTYPES[sw.dtype])]
    ray_init_s = None
    if "ray" in cfg.rows:
        t0 = time.perf_counter()
        ray_executor.connect()
        ray_init_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        for rnd in range(cfg.repeats):
            order = list(cfg.rows[rnd % len(cfg.rows):] + cfg.rows[:rnd % len(cfg.rows)])
            for name in order:
                if progress:
                    progress(f"round {rnd + 1}/{cfg.repeats}: {name}")
                out = Path(tmp) / f"{name}-{rnd}"
                wall, records[name] = rows[name](sw, dataset, out, threads)
                walls[name].append(wall)
            rate.append(matmul_rate(shapes, min(members, sw.max_batch), DTYPES[sw.dtype]))
    gflops = statistics.median(r["gflops"] for r in rate)
    plain = statistics.median(r["plain_gflops"] for r in rate)
    result: dict[str, Any] = {
        "settings": {"sweep": asdict(sw), "rows": list(cfg.rows), "threads": threads,
                     "repeats": cfg.repeats, "runs": members},
        "environment": environment(),
        "flops": {"gemms_per_member_step": shapes,
                  "mflop_per_member_step": flops_per_step(shapes) / 1e6,
                  "total_gflop": total_gflop, "matmul_gflops": gflops,
                  "matmul_plain_gflops": plain, "matmul_layouts": best_layouts(rate),
                  "matmul_samples": rate},
        "rows": {}}
    for name in cfg.rows:
        wall = statistics.median(walls[name])
        train = sum(r["train_seconds"] for r in records[name])
        if name in ("vectorized", "command"):  # groups trained at once: their clocks overlap
            train /= executors.side_by_side(members, sw.max_batch, threads)
        result["rows"][name] = {
            "wall_s": wall, "wall_samples_s": walls[name], "train_s": train,
            "train_gflops": total_gflop / train, "fraction_of_matmul": total_gflop / train / gflops,
            "fraction_of_plain_matmul": total_gflop / train / plain,
            "diverged": sum(bool(r["diverged"]) for r in records[name])}
    if "ray" in cfg.rows:
        result["ray_init_s"] = ray_init_s
        if "vectorized" in cfg.rows:
            ray, local = result["rows"]["ray"], result["rows"]["vectorized"]
            ray["overhead_vs_vectorized"] = {
                "wall_s": ray["wall_s"] - local["wall_s"], "ratio": ray["wall_s"] / local["wall_s"],
                "agreement": agreement(records["ray"], records["vectorized"])}
    if "loop" in cfg.rows:
        for name in cfg.rows:
            row = result["rows"][name]
            row["speedup_vs_loop"] = result["rows"]["loop"]["wall_s"] / row["wall_s"]
            if name != "loop":
                row["agreement_with_loop"] = agreement(records[name], records["loop"])
    result["goals"] = sweep_goals(result["rows"])
    return result


def sweep_goals(rows: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The goals that the measured rows decide (wall clock ratios; the matmul fraction of
    the vectorized training, else of the command's)."""
    out = []
    if "loop" in rows and "command" in rows:
        out.append(goal("the whole `optimlab sweep` ≥ 10× the student's loop",
                        rows["command"]["speedup_vs_loop"], LOOP_GOAL))
    trained = rows.get("vectorized") or rows.get("command")
    if trained is not None:
        out.append(goal("the vectorized training ≥ 70% of the matmul rate",
                        trained["fraction_of_matmul"], MATMUL_GOAL))
    if "vectorized" in rows and "sequential" in rows:
        out.append(goal("the vectorized executor ≥ 4× the sequential one",
                        rows["sequential"]["wall_s"] / rows["vectorized"]["wall_s"],
                        SEQUENTIAL_GOAL))
    if "overhead_vs_vectorized" in rows.get("ray", {}):
        out.append(goal("Ray ≤ 1.2× the vectorized executor",
                        rows["ray"]["overhead_vs_vectorized"]["ratio"], RAY_GOAL, at_most=True))
    return out


def _cpu_ms(n: int, fn: Callable[..., object], *args: Any) -> float:
    """CPU milliseconds per call of fn(*args), over n calls."""
    t0 = time.process_time()
    for _ in range(n):
        fn(*args)
    return (time.process_time() - t0) / n * 1e3


def _next_step(group: executors.Group, taken: Iterator[int]) -> None:
    group.step(next(taken), lambda result: None)


def _optimizer_steps(group: executors.Group, fused: bool) -> Callable[[], None]:
    """One step of every optimizer of `group` (each segment's members) on copies of its
    parameters and last gradients, through the fused batched kernels or the torch ops."""
    flat, grads = group.flat.clone(), group.grads.clone()
    opts = [(BatchedOptimizer(opt.name, [flat[a:b]], opt.members, fused=fused), a, b)
            for opt, a, b in group.segments]

    def step() -> None:
        for opt, a, b in opts:
            opt.step([grads[a:b]])

    return step


def step_times(sw: SweepConfig, dataset: Any, rounds: int = 5, steps: int = 10,
               threads: int = 0) -> dict[str, Any]:
    """CPU milliseconds of one training step (`time.process_time`: other processes on the
    machine do not count) on `threads` torch threads (0: torch's default), medians of
    `rounds` interleaved rounds of `steps` steps each:

    - `loop_step`: the loop's step for the sweep's last configuration (its DataLoader's
      next minibatch and `loop_step`), and × the group's members;
    - `grads`, `step`: the vectorized executor's first group (`max_batch` members) —
      its losses and gradients alone, and its whole step (minibatches, gradients, every
      optimizer, bookkeeping) — through the model's written-out backward where it has one;
      `grads_vmap`, `step_vmap` the same through `vmap`;
    - `optimizer`, `optimizer_torch_ops`: the step's optimizer part alone, every member's
      update, through the fused batched kernels (the step's path) and through the torch ops;
    - `bmm`: the step's matrix products alone (`matmul_rate` on its shapes, in CPU time too),
      each in its fastest layout; `bmm_plain` all in the plain layout."""
    torch.set_num_threads(threads or torch.get_num_threads())
    configs = grid_configs(sw, len(dataset.y_train))[:sw.max_batch]
    groups = {"": executors.Group(configs, dataset), "_vmap": executors.Group(configs, dataset)}
    groups["_vmap"].grad_fn = member_grads(groups["_vmap"].module, hand_written=False,
                                           task=configs[0].task)
    model = init_model(configs[-1].model, dataset, configs[-1].seed, configs[-1].torch_dtype)
    cls, kw = torch_peer(configs[-1].optimizer, configs[-1].hyperparameters)
    optimizer = cls(model.parameters(), **kw)
    data = on_device(dataset, "cpu", configs[-1].torch_dtype)
    loader = DataLoader(TensorDataset(data.x_train, data.y_train), batch_size=sw.batch_size,
                        shuffle=True, drop_last=True, generator=torch.Generator().manual_seed(0))
    batches = itertools.chain.from_iterable(itertools.repeat(loader))
    shapes = gemms(model, tuple(dataset.input_shape), sw.batch_size)
    samples: dict[str, list[float]] = {k: [] for k in (
        "loop_step", "grads", "step", "grads_vmap", "step_vmap", "optimizer",
        "optimizer_torch_ops", "bmm", "bmm_plain")}
    rates: list[dict[str, Any]] = []
    taken = itertools.count(1)
    _next_step(groups[""], taken)  # gradients for the optimizer parts, kernels compiled
    optimizers = {"optimizer": _optimizer_steps(groups[""], fused=True),
                  "optimizer_torch_ops": _optimizer_steps(groups[""], fused=False)}
    for _ in range(rounds):
        for path, g in groups.items():
            x, y = g.minibatches()
            samples["grads" + path].append(_cpu_ms(steps, g.grad_fn, g.params, x, y, g.grads))
            samples["step" + path].append(_cpu_ms(steps, _next_step, g, taken))
        for name, fn in optimizers.items():
            samples[name].append(_cpu_ms(10 * steps, fn))
        samples["loop_step"].append(_cpu_ms(10 * steps, lambda: loop_step(model, optimizer,
                                                                           *next(batches))))
        rates.append(matmul_rate(shapes, len(configs), DTYPES[sw.dtype], rounds=3,
                                 clock=time.process_time))
        samples["bmm"].append(rates[-1]["ms_per_step"])
        samples["bmm_plain"].append(rates[-1]["plain_ms_per_step"])
    ms = {k: statistics.median(v) for k, v in samples.items()}
    ms["loop_x_members"] = ms["loop_step"] * len(configs)
    return {"members": len(configs), "rounds": rounds, "threads": torch.get_num_threads(),
            "ms": ms, "samples_ms": samples, "layouts": best_layouts(rates),
            "gflop_per_step": flops_per_step(shapes) * len(configs) / 1e9,
            "speedup_vs_loop": {k: ms["loop_x_members"] / ms[k] for k in
                                ("grads", "step", "grads_vmap", "step_vmap")},
            "fraction_of_matmul": {k: ms["bmm"] / ms[k] for k in ("step", "step_vmap")},
            "optimizer_share": ms["optimizer"] / ms["step"],
            "fraction_of_plain_matmul": {k: ms["bmm_plain"] / ms[k] for k in ("step",
                                                                              "step_vmap")}}


def format_step_times(r: dict[str, Any]) -> str:
    """The step times for people: ms of CPU per step, the speed-up, the matmul fraction."""
    ms = r["ms"]
    lines = [f"{r['members']} members, {r['threads']} threads, CPU ms per step (medians of "
             f"{r['rounds']} rounds); "
             f"{r['gflop_per_step']:.3f} GFLOP of matrix products per step, "
             f"bmm alone {ms['bmm']:.2f} ms in the fastest layout per product "
             f"({ms['bmm_plain']:.2f} ms all plain)",
             format_layouts(r["layouts"]),
             f"  loop: {ms['loop_step']:.3f} per configuration, {ms['loop_x_members']:.2f} "
             f"× {r['members']}"]
    for path, name in (("", "written-out"), ("_vmap", "vmap")):
        lines.append(f"  {name + ':':<13}gradients {ms['grads' + path]:.2f}, step "
                     f"{ms['step' + path]:.2f}: {r['speedup_vs_loop']['step' + path]:.2f}× "
                     f"the loop, {r['fraction_of_matmul']['step' + path]:.0%} of the matmul rate "
                     f"({r['fraction_of_plain_matmul']['step' + path]:.0%} of the plain "
                     "layout's)")
    lines.append(f"  optimizer:   fused {ms['optimizer']:.3f} ({r['optimizer_share']:.0%} of the "
                 f"written-out step), torch ops {ms['optimizer_torch_ops']:.3f}: "
                 f"{ms['optimizer_torch_ops'] / ms['optimizer']:.2f}× the fused")
    return "\n".join(lines)


def format_summary(result: dict[str, Any]) -> str:
    """A few lines for people: each row's wall clock, speed-up and matmul fraction."""
    f = result["flops"]
    lines = [f"{result['settings']['runs']} runs, {result['settings']['threads']} threads; "
             f"{f['mflop_per_member_step']:.2f} MFLOP per member-step, "
             f"{f['total_gflop']:.0f} GFLOP in all; matmul rate on these shapes "
             f"{f['matmul_gflops']:.1f} GFLOP/s in the fastest layout per product "
             f"({f['matmul_plain_gflops']:.1f} all plain)",
             format_layouts(f["matmul_layouts"]),
             f"  {'row':<12}{'wall s':>9}{'train s':>9}{'vs loop':>9}{'GFLOP/s':>9}"
             f"{'of matmul':>11}{'of plain':>10}"]
    for name, r in result["rows"].items():
        lines.append(f"  {name:<12}{r['wall_s']:>9.1f}{r['train_s']:>9.1f}"
                     f"{r.get('speedup_vs_loop', float('nan')):>8.2f}×"
                     f"{r['train_gflops']:>9.1f}{r['fraction_of_matmul']:>11.0%}"
                     f"{r['fraction_of_plain_matmul']:>10.0%}")
    found = sweep_goals(result["rows"])
    return "\n".join([*lines, *format_goals(found, "measured in this run")] if found else lines)


__all__ = ["LAYOUTS", "PEERS", "PLAIN", "ROWS", "SweepBenchConfig", "agreement", "best_layouts",
           "command_argv", "flops_per_step", "format_layouts", "format_step_times",
           "format_summary", "gemms", "layout_product", "loop_step", "matmul_rate",
           "run_sweep_bench", "step_times", "student_loop", "torch_peer"]

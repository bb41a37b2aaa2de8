"""Reading a benchmark record: the project's speed goals as measured ratios; a table."""

from __future__ import annotations

from typing import Any

from optimlab.bench.lab_scale import GOAL_RATIO, format_lab_case

# The model at which throughput goals are judged, and the per-step-overhead model.
LARGE, SMALL = "25M", "small200"
# Where an optimizer without a fused path (Muon: its step is matrix products) is judged
# against its peer's fastest path.
MATRICES = "matrices25M"
# Roofline fraction every fused path must reach at LARGE (the speed issue's 95 %).
ROOFLINE_GOAL = 0.95
# On a GPU: the throughput goals at 25M and at the GPT-like list, and their roofline fraction.
GPU_LARGE, GPU_ROOFLINE_GOAL = ("25M", "mixed"), 0.85


def _ms(case: dict[str, Any], impl: str) -> float | None:
    for row in case["rows"]:
        if row["impl"] == impl:
            return float(row["ms"])
    return None


def goal(text: str, value: float | None, target: float, at_most: bool = False
         ) -> dict[str, Any]:
    """A goal as the benches report it: met when `value` ≥ `target` (`at_most`: ≤)."""
    met = None if value is None else (value <= target if at_most else value >= target)
    return {"goal": text, "value": value, "target": target, "at_most": at_most, "met": met}


def format_goals(found: list[dict[str, Any]], value: str = "measured ratio, side by side "
                 "in this run") -> list[str]:
    """The goals for people, a line each: met or not, the value, the target."""
    lines = [f"goals (value = {value}):"]
    for g in found:
        verdict = {True: "met", False: "NOT met", None: "n/a"}[g["met"]]
        bound = "≤ " if g.get("at_most") else ""
        lines.append(f"  {verdict:<8}{_fmt(g['value'], '.2f'):>6} (target {bound}"
                     f"{g['target']:g})  {g['goal']}")
    return lines


def _fastest(case: dict[str, Any],
             impls: tuple[str, ...] = ("torch-single", "torch-foreach", "torch-fused")
             ) -> float | None:
    """The peer's fastest time per step over `impls` (None: none of them measured)."""
    times = [ms for impl in impls if (ms := _ms(case, impl)) is not None]
    return min(times) if times else None


def _ratio(theirs: float | None, ours: float) -> float | None:
    return None if theirs is None else theirs / ours


def _speed_goals(case: dict[str, Any]) -> list[dict[str, Any]]:
    """Ours fused against torch's best comparable path, as a speed ratio (>1: ours faster)."""
    name, fused = case["optimizer"], _ms(case, "ours-fused")
    if fused is None:
        return []
    if name == "rmsprop":
        return [goal(f"rmsprop fused ≥ 3× torch's fastest RMSprop ({case['model']})",
                     _ratio(_fastest(case), fused), 3.0)]
    torch_fused = _ms(case, "torch-fused")
    if torch_fused is None:  # a peer with no fused CPU step (NAdam's, a package's): its fastest
        return [goal(f"{name} fused ≥ its peer's fastest step ({case['model']})",
                     _ratio(_fastest(case, ("torch-single", "torch-foreach")), fused), 1.0)]
    twin = "Adam" if name == "adam" else "SGD"
    return [goal(f"{name} fused ≥ torch's fused {twin} ({case['model']})",
                 torch_fused / fused, 1.0)]


def _peer_goal(case: dict[str, Any]) -> list[dict[str, Any]]:
    """Our default path (a record of an earlier version: foreach) against the peer's
    fastest, as a speed ratio."""
    path = "default" if _ms(case, "ours-default") is not None else "foreach"
    ours, theirs = _ms(case, f"ours-{path}"), _fastest(case)
    if ours is None or theirs is None:
        return []
    return [goal(f"{case['optimizer']} {path} ≥ its peer's fastest ({case['model']})",
                 theirs / ours, 1.0)]


def _lab_goals(case: dict[str, Any]) -> list[dict[str, Any]]:
    """Per variant: our step time ÷ torch's fastest, target ≤ GOAL_RATIO."""
    return [goal(f"{case['optimizer']} step ≤ {GOAL_RATIO}× {case['peer']} "
                 f"({case['model']}, {r['variant']})", r["ratio_to_torch"], GOAL_RATIO,
                 at_most=True)
            for r in case["rows"] if "ratio_to_torch" in r]


def goals(cases: list[dict[str, Any]], device: str = "cpu") -> list[dict[str, Any]]:
    """The project's speed goals, each with the measured value (a ratio) and whether it is met."""
    large, roofline = (GPU_LARGE, GPU_ROOFLINE_GOAL) if device == "cuda" \
        else ((LARGE,), ROOFLINE_GOAL)
    out = []
    for case in cases:
        if case.get("kind") == "lab-scale":
            out += _lab_goals(case)
            continue
        fused = next((r for r in case["rows"] if r["impl"] == "ours-fused"), None)
        if case["model"] in large:
            out += _speed_goals(case)
            if fused is not None:
                out.append(goal(f"{case['optimizer']} fused ≥ {roofline:.0%} of roofline "
                                f"({case['model']})", fused["roofline"], roofline))
        if fused is None and case["model"] in (*large, MATRICES):
            out += _peer_goal(case)
        if case["model"] == SMALL and fused is not None:
            foreach = _ms(case, "torch-foreach")
            out.append(goal(f"{case['optimizer']} fused step ≤ torch foreach step ({SMALL})",
                            None if foreach is None else foreach / fused["ms"], 1.0))
    return out


def _fmt(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def format_table(record: dict[str, Any]) -> str:
    """One block per (model, optimizer); then the goals."""
    m = record["machine"]
    gpu = f"gpu={m['gpu']!r} triton={m['triton']} " if "gpu" in m else ""
    lines = [f"{gpu}threads={m['threads']} torch={m['torch']} "
             f"numba={m['numba']} dtype={record['config']['dtype']} "
             f"repeats={record['config']['repeats']} (medians; interleaved"
             f"{', CUDA events' if gpu else ''})"]
    header = f"  {'impl':<16}{'ms/step':>10}{'GB/s':>8}{'roofline':>10}{'extra MB':>10}"
    for case in record["cases"]:
        if case.get("kind") == "lab-scale":
            lines += ["", *format_lab_case(case)]
            continue
        s = case["stream"]
        lines += ["", f"{case['optimizer']} on {case['model']}: {case['description']}, "
                      f"{case['params']:,} params, {case['tensors']} tensors, "
                      f"{case['bytes_per_param']} B/param; stream a+=b {s['gbs']:.1f} GB/s",
                  header]
        for r in case["rows"]:
            lines.append(f"  {r['impl']:<16}{r['ms']:>10.3f}{r['gbs']:>8.1f}"
                         f"{r['roofline']:>10.0%}{_fmt(r['extra_peak_mb'], '.1f'):>10}")
    if record["goals"]:
        lines += ["", *format_goals(record["goals"])]
    return "\n".join(lines)

"""TensorBoard event files from the records: one TensorBoard run per optimlab run.

Written with `torch.utils.tensorboard.SummaryWriter` (it needs the `tensorboard` package,
the `tensorboard` extra), never a hand-written event format. Per run, under LOGDIR/<run>:
- `loss/train_minibatch`: the minibatch loss at every step;
- `loss/<split>`, `acc/<split>` (train, val, test): every evaluation;
- the hyperparameters and final metrics through the HParams plugin (`hparam/...`).
Each scalar's wall time is the run's training clock (`train_seconds`), so TensorBoard's
"relative" axis is training time, evaluation excluded, as in the reports.

`export(RUN_DIR)` converts a compare or sweep folder after the fact; `LiveLogger` writes the
same while training (a callback of `optimlab.train.train_run`). Only the event writer
needs torch; the records are read without the lab (`optimlab.analysis`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from optimlab._imports import optional
from optimlab.analysis.records import CurvePoint, family, load_compare
from optimlab.analysis.store import FILENAME, read_runs

# time to target in steps first: the measure to rank by (the seconds depend on the machine)
HPARAM_METRICS = ("final_test_acc", "final_val_acc", "best_test_acc", "final_train_loss",
                  "final_test_loss", "time_to_target_step", "time_to_target_examples",
                  "time_to_target_s", "train_seconds")
MISSING = ("tensorboard is not installed: pip install 'optimlab[tensorboard]' (it provides "
           "TensorBoard's event writer)")


def require() -> Any:
    """torch's SummaryWriter class, or a one-line ImportError naming the extra it needs."""
    return optional("torch.utils.tensorboard", MISSING).SummaryWriter


def summary_writer(logdir: Path, flush_secs: int = 120) -> Any:
    return require()(log_dir=str(logdir), flush_secs=flush_secs)


def tag(point: CurvePoint) -> str:
    if point.split == "batch":
        return f"{point.metric}/train_minibatch"
    return f"{point.metric}/{point.split}"


def write_points(writer: Any, points: Iterable[CurvePoint]) -> None:
    for p in points:
        writer.add_scalar(tag(p), p.value, global_step=int(p.step), walltime=p.train_seconds)


def hparams(record: dict[str, Any]) -> dict[str, Any]:
    """The run's settings as HParams values (numbers, strings, bools; pairs split)."""
    out: dict[str, Any] = {"optimizer": family(record),
                           "seed": int(record.get("seed", 0))}
    for key, value in sorted((record.get("hyperparameters") or {}).items()):
        if isinstance(value, (list, tuple)):
            out.update({f"{key}[{i}]": v for i, v in enumerate(value)
                        if isinstance(v, (int, float, bool))})
        elif isinstance(value, (int, float, str, bool)):
            out[key] = value
    for key in ("model", "dataset", "batch_size", "steps_planned"):
        if isinstance(record.get(key), (int, float, str)):
            out[key] = record[key]
    return out


def write_hparams(writer: Any, record: dict[str, Any]) -> None:
    metrics = {f"hparam/{k}": float(record[k]) for k in HPARAM_METRICS
               if isinstance(record.get(k), (int, float))}
    writer.add_hparams(hparams(record), metrics, run_name=".")


def write_run(logdir: Path, record: dict[str, Any], points: Sequence[CurvePoint]) -> Path:
    """One run's event files under logdir/<run>; returns that folder."""
    folder = logdir / record["run"]
    writer = summary_writer(folder)
    try:
        write_points(writer, points)
        write_hparams(writer, record)
    finally:
        writer.close()
    return folder


def _points(curves: dict[tuple[str, str], dict[str, Any]]) -> list[CurvePoint]:
    """Back from the compare report's arrays to curve points, in step order."""
    out = [CurvePoint(int(s), float(t), split, metric, float(v))
           for (split, metric), c in curves.items()
           for s, t, v in zip(c["step"], c["train_seconds"], c["value"])]
    return sorted(out, key=lambda p: p.step)


def export(run_dir: str | Path, logdir: str | Path | None = None) -> tuple[Path, list[Path]]:
    """Event files for every run of a compare or sweep folder (default logdir:
    RUN_DIR/tensorboard); returns the logdir and the runs' folders."""
    require()  # before anything is read or written
    run_dir = Path(run_dir)
    logdir = Path(logdir) if logdir is not None else run_dir / "tensorboard"
    if (run_dir / FILENAME).is_file():
        runs = [(r["summary"], r["curves"]) for r in read_runs(run_dir)]
    elif (run_dir / "summary.json").is_file():
        _, summary, curves = load_compare(run_dir)
        records = summary["runs"]
        runs = [(r, _points(curves.get(r["run"], {}))) for r in records]
    else:
        raise ValueError(f"Invalid RUN_DIR {str(run_dir)!r}: it holds neither summary.json "
                         f"(a compare folder) nor {FILENAME} (a sweep folder)")
    return logdir, [write_run(logdir, record, points) for record, points in runs]


class LiveLogger:
    """Writes a run's points while it trains (`on_curves`), then its HParams (`finish`)."""

    def __init__(self, logdir: str | Path, run: str) -> None:
        # written to disk every few seconds: TensorBoard shows the run as it trains
        self.writer = summary_writer(Path(logdir) / run, flush_secs=5)
        self.seen = 0

    def on_curves(self, curves: list[CurvePoint]) -> None:
        write_points(self.writer, curves[self.seen:])
        self.seen = len(curves)

    def finish(self, record: dict[str, Any]) -> None:
        write_hparams(self.writer, record)
        self.writer.close()

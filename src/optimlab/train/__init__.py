"""One training run: seeded initialisation and minibatch order, the loop, evaluation, records.

Public API (the sweep reproduces single runs with exactly these pieces):
- `TrainConfig`: the run's definition (dataset, model, optimizer, hyperparameters,
  steps, batch_size, seed, eval_every, target_acc, device, dtype);
- `init_model`, `batch_indices`: the seeding contract (see `optimlab.train.seeding`);
- `evaluate(model_or_fn, dataset, task)`: full-set loss (and accuracy) per split;
- `task_loss(task, output, y)`: cross-entropy (classification) or squared error (regression);
- `make_optimizer(config, model)`, `check_model(config, dataset)`: the run's optimizer, and a
  check that the model fits the data before anything trains;
- `train_run(config, dataset, callbacks=())` -> `RunResult(config, record, curves, extras)`;
- `summary_record(config, curves, timings)`: the pure function that makes the record;
- `CurvePoint`, `Timings`: the curve rows and the two clocks;
- `warm_up(config, dataset)`: one untimed step, so the first timed run pays no one-time costs.
"""

from optimlab.train.config import DTYPES, TrainConfig
from optimlab.train.evaluation import SPLITS, TASKS, evaluate, evaluate_stacked, task_loss
from optimlab.train.loop import check_model, make_optimizer, on_device, train_run, warm_up
from optimlab.train.record import CurvePoint, RunResult, Timings, finite_or_none, summary_record
from optimlab.train.seeding import batch_indices, init_model

__all__ = [
    "DTYPES", "SPLITS", "TASKS", "TrainConfig", "check_model", "make_optimizer", "task_loss",
    "CurvePoint", "RunResult", "Timings", "batch_indices",
    "evaluate", "evaluate_stacked", "finite_or_none", "init_model", "on_device",
    "summary_record", "train_run",
    "warm_up",
]

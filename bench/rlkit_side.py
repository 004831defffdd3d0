"""The rlkit side of a comparison: a run of rlkit's own training loop, with each evaluation's wall time measured
(so that callers can time training alone)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np


def rlkit_run(config: str, overrides: list[str], run_dir: Path, eval_times: list[float] | None = None
              ) -> list[dict[str, Any]]:
    """Train with rlkit's own loop; returns its metrics records. ``eval_times`` receives the wall time of
    each evaluation, in order (so that callers can time training alone)."""
    from rlkit.training import loops
    from rlkit.config import load_config
    from rlkit.runfiles.logger import read_metrics

    cfg = load_config(config, overrides)
    if run_dir.exists():  # a bench run owns its directory: never read records of an earlier run
        shutil.rmtree(run_dir)
    evaluate = loops.evaluate

    def timed_evaluate(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return evaluate(*args, **kwargs)
        finally:
            if eval_times is not None:
                eval_times.append(time.perf_counter() - t0)

    loops.evaluate = timed_evaluate
    try:
        loops.train_online(cfg, run_dir)
    finally:
        loops.evaluate = evaluate
    return read_metrics(run_dir)


def rlkit_evals(records: list[dict[str, Any]], eval_times: list[float]) -> list[tuple[int, float, float]]:
    """(step, training time, mean) per evaluation: the record's time less all evaluation time up to it
    (an eval record is written right after its evaluation returns)."""
    evals = [r for r in records if r["kind"] == "eval"]
    assert len(evals) == len(eval_times), (len(evals), len(eval_times))
    spent = np.cumsum(eval_times)
    return [(r["step"], r["time"] - float(t), r["return_mean"]) for r, t in zip(evals, spent)]

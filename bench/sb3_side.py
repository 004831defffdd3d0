"""The reference side of a comparison: Stable-Baselines3, an optional dependency (the ``bench`` extra). It is
imported inside functions only, never at module level, and :func:`require_sb3` turns its absence into one
line that says how to install it."""

from __future__ import annotations

import time
from typing import Any, Callable

from rlkit.errors import ConfigError

INSTALL = "pip install 'rlkit-toolkit[bench]'"


def require_sb3() -> None:
    """A one-line :class:`ConfigError` (the CLI prints it and exits 2) when Stable-Baselines3 cannot be imported."""
    try:
        import stable_baselines3  # noqa: F401
    except ImportError as exc:
        raise ConfigError(f"rlkit bench compares against Stable-Baselines3, which cannot be imported ({exc}); "
                          f"install the bench extra: {INSTALL}") from None


def sb3_learn_timed(model: Any, total: int, log_every: int, eval_every: int, evaluate_at: Callable[[int], float],
                    count: Callable[[int], int]) -> tuple[list[tuple[int, float, int]], list[tuple[int, float]],
                                                          list[tuple[float, float]]]:
    """``model.learn(total)`` with a clock: (step, time, ``count(step)``) every ``log_every`` env steps, and
    ``evaluate_at(step)`` every ``eval_every`` and at the end (as rlkit's loop), each evaluation timed so
    rates can leave it out. Returns (marks, [(step, evaluation)], [(end time, evaluation seconds)])."""
    from stable_baselines3.common.callbacks import BaseCallback

    marks: list[tuple[int, float, int]] = []
    evals: list[tuple[int, float]] = []
    eval_times: list[tuple[float, float]] = []

    class Clock(BaseCallback):
        def _on_step(self) -> bool:
            step = self.num_timesteps
            if step % log_every == 0:
                marks.append((step, time.perf_counter(), count(step)))
            if step % eval_every == 0 or step == total:
                t0 = time.perf_counter()
                evals.append((step, evaluate_at(step)))
                eval_times.append((time.perf_counter(), time.perf_counter() - t0))
            return True

    model.learn(total_timesteps=total, callback=Clock())
    return marks, evals, eval_times

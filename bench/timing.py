"""Timing shared by the suites: rates over a window of a run with evaluations left out, a timer around an update
method, calls interleaved in slices (A B A B ...), and the lockstep: two training runs in one process taking turns
at every update, so both meet the same machine load."""

from __future__ import annotations

import threading
import time
from typing import Any, Callable


def window_rate(marks: list[tuple[int, float, int]], evals: list[tuple[float, float]], start_step: int
                ) -> float | None:
    """Updates/s between the first mark at or after ``start_step`` and the last mark, less the time of the
    evaluations that ended inside. ``marks``: (env step, time, updates so far); ``evals``: (end time, duration)."""
    inside = [m for m in marks if m[0] >= start_step]
    if len(inside) < 2:
        return None
    (_, t0, u0), (_, t1, u1) = inside[0], inside[-1]
    spent = sum(duration for end, duration in evals if t0 < end <= t1)
    return (u1 - u0) / max(t1 - t0 - spent, 1e-9)


class UpdateTimer:
    """Wraps an update method and sums the wall time spent inside it (measured during training, so it
    shares the load of that moment: the share of training time spent updating is robust to load drift)."""

    def __init__(self, update: Callable[..., Any]) -> None:
        self.update, self.seconds, self.calls = update, 0.0, 0

    def __call__(self, *args, **kwargs):
        t0 = time.perf_counter()
        try:
            return self.update(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - t0
            self.calls += 1

    def rate(self) -> float | None:
        return self.calls / self.seconds if self.calls else None


def interleaved_rates(calls: list[Callable[[], Any]], seconds: float, rounds: int = 10) -> list[float]:
    """Calls per second of each function, timed in ``rounds`` alternating slices of ``seconds / rounds``
    each (A B A B ...) after a warm-up, so that load drifting on a shared machine hits all of them alike."""
    for call in calls:
        for _ in range(10):
            call()
    counts, spent = [0] * len(calls), [0.0] * len(calls)
    for _ in range(rounds):
        for i, call in enumerate(calls):
            start = time.perf_counter()
            while time.perf_counter() - start < seconds / rounds:
                call()
                counts[i] += 1
            spent[i] += time.perf_counter() - start
    return [n / t for n, t in zip(counts, spent)]


class Baton:
    """Two training runs in one process (two threads) taking turns at every update: a side hands the turn
    over at the start of each of its updates and goes on once it gets it back. Only one side runs at a time
    and both see the same machine load at the same moments (on a shared machine, a minutes-long run A and
    then a run B do not). Each side's own time is its wall time less its waits."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.turn = 0
        self.done = [False, False]
        self.waited = [0.0, 0.0]
        self.starts: list[list[tuple[float, float]]] = [[], []]  # per side: (update start, total waited so far)

    def handover(self, side: int) -> None:
        t0 = time.perf_counter()
        with self.cond:
            self.turn = 1 - side
            self.cond.notify_all()
            self.cond.wait_for(lambda: self.turn == side or self.done[1 - side])
        t1 = time.perf_counter()
        self.waited[side] += t1 - t0
        self.starts[side].append((t1, self.waited[side]))

    def finish(self, side: int) -> None:
        with self.cond:
            self.done[side] = True
            self.turn = 1 - side
            self.cond.notify_all()

    def rate(self, side: int, skip: int) -> float | None:
        """Updates/s of ``side``'s own time between its update ``skip`` and its last update."""
        starts = self.starts[side]
        if len(starts) < skip + 2:
            return None
        (t0, w0), (t1, w1) = starts[skip], starts[-1]
        return (len(starts) - 1 - skip) / max((t1 - t0) - (w1 - w0), 1e-9)


def lockstep(agent_class: type, model: Any, total: int, run_rlkit: Callable[[], Any], skip: int
             ) -> tuple[float | None, float | None]:
    """Train rlkit (``run_rlkit``, in this thread: its loop installs signal handlers) and the SB3 ``model`` for
    ``total`` env steps (in a worker thread) side by side, taking turns at every update (:class:`Baton`):
    (rlkit, SB3) updates/s of each side's own time after its first ``skip`` updates. The turns are taken in
    ``agent_class.update`` (wrapped on the class for the run) and in the model's ``train``."""
    baton = Baton()
    sb3_train = model.train

    def train_in_turn(*args, **kwargs):
        baton.handover(1)
        return sb3_train(*args, **kwargs)

    model.train = train_in_turn
    errors: list[BaseException] = []

    def sb3_side() -> None:
        try:
            model.learn(total_timesteps=total)
        except BaseException as exc:  # reported from the main thread
            errors.append(exc)
        finally:
            baton.finish(1)

    worker = threading.Thread(target=sb3_side, daemon=True)
    update = agent_class.update

    def update_in_turn(self, *args, **kwargs):
        baton.handover(0)
        return update(self, *args, **kwargs)

    agent_class.update = update_in_turn
    worker.start()
    try:
        run_rlkit()
    finally:
        agent_class.update = update
        baton.finish(0)
        worker.join()
    if errors:
        raise errors[0]
    return baton.rate(0, skip), baton.rate(1, skip)

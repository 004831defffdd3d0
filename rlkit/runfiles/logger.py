"""Run logging: a live progress bar, TensorBoard scalars, ``metrics.jsonl`` and learning-curve plots.

``metrics.jsonl`` is the source of truth: one JSON object per line with ``kind`` ("train",
"episode" or "eval"), ``step`` (env steps) and ``time`` (training wall seconds, cumulative over
resumes). TensorBoard and the plots are views of the same numbers. On resume, records written after
the checkpoint (by a run that was killed) are moved to ``metrics.orphaned.jsonl`` — never deleted —
and TensorBoard purges its events past the checkpoint step, so the resumed run's records replace them.
The checkpoint stores how many records had been written (steps are not unique), so the cut is exact;
a line inside the kept part that is not a JSON record (corrupted on disk) goes to the orphan file too.
Non-finite numbers are written as ``null``: every line is strict JSON.
"""

from __future__ import annotations

import json
import math
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np

METRICS_FILE = "metrics.jsonl"
CURVE_FILE = "learning_curve.png"


class RunLogger:
    def __init__(self, run_dir: Path, total_steps: int, start_step: int = 0, progress: bool = True,
                 tensorboard: bool = True, description: str = "", keep_records: int | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.metrics_path = self.run_dir / METRICS_FILE
        self.records = 0
        if keep_records is not None:
            self.records = self._keep_first(keep_records)
        self._file = open(self.metrics_path, "a", buffering=1)
        self.recent_returns: deque[float] = deque(maxlen=20)
        self.last_eval: float | None = None
        self._tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            _quiet_tensorboard_thread()
            self._tb = SummaryWriter(str(self.run_dir / "tb"), purge_step=start_step if start_step > 0 else None)
        self._bar = None
        if progress:
            from tqdm import tqdm

            self._bar = tqdm(total=total_steps, initial=start_step, unit="step", desc=description,
                             dynamic_ncols=True, smoothing=0.05)
        self._bar_step = start_step

    def _keep_first(self, count: int) -> int:
        """Keep the first ``count`` lines (the checkpointed records); returns how many were kept."""
        if not self.metrics_path.exists():
            return 0
        lines = self.metrics_path.read_bytes().decode("utf-8", errors="replace").splitlines()
        keep, orphaned = lines[:count], lines[count:]  # a line cut by a kill mid-write is among the orphans
        corrupt = [line for line in keep if not _is_record(line)]
        if corrupt:  # damaged on disk inside the checkpointed part: moved aside, not silently kept
            keep = [line for line in keep if _is_record(line)]
            orphaned = corrupt + orphaned
        if orphaned:
            with open(self.run_dir / "metrics.orphaned.jsonl", "a") as f:
                f.write("\n".join(orphaned) + "\n")
        tmp = self.metrics_path.with_suffix(".tmp")
        tmp.write_text("".join(line + "\n" for line in keep))
        tmp.replace(self.metrics_path)
        return len(keep)

    def log(self, kind: str, step: int, time: float, values: dict[str, Any]) -> None:
        record = _finite_or_null({"kind": kind, "step": int(step), "time": round(float(time), 3), **values})
        self._file.write(json.dumps(record, allow_nan=False) + "\n")
        self.records += 1
        if kind == "episode":
            self.recent_returns.append(float(values["return"]))
        if kind == "eval":
            self.last_eval = float(values["return_mean"])
        if self._tb is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    self._tb.add_scalar(f"{kind}/{key}", value, step)
        if kind in ("episode", "eval"):
            self._postfix()

    def advance(self, step: int) -> None:
        """Move the bar to ``step``; cheap enough for every collect step (tqdm redraws at most ~10/s)."""
        if self._bar is not None and step != self._bar_step:
            self._bar.update(step - self._bar_step)
            self._bar_step = step

    def progress(self, step: int) -> None:
        self.advance(step)
        self._postfix(refresh=True)

    def evaluating(self, done: int, total: int) -> None:
        """Show that an evaluation is running (``eval 3/10 episodes``): it may take a while."""
        self._postfix(evaluating=f"{done}/{total} episodes", refresh=True)

    def _postfix(self, evaluating: str | None = None, refresh: bool = False) -> None:
        if self._bar is None:
            return
        postfix = {}
        if self.recent_returns:
            postfix["return"] = f"{np.mean(self.recent_returns):.1f}"
        if self.last_eval is not None:
            postfix["eval"] = f"{self.last_eval:.1f}"
        if evaluating is not None:
            postfix["evaluating"] = evaluating
        self._bar.set_postfix(postfix, refresh=refresh)

    def message(self, text: str) -> None:
        if self._bar is not None:
            self._bar.write(text)
        else:
            print(text, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        try:
            if self._tb is not None:
                self._tb.close()  # a write error of its thread (a full disk) is raised here, once
        finally:
            self._tb = None
            self._file.close()


def _quiet_tensorboard_thread() -> None:
    """TensorBoard writes events from a thread; when a write fails (a full disk) that thread would print its
    own traceback, and the writer raises the same error again in the main thread at its next call, where the
    CLI turns it into one line. Installed once: only that thread's OSErrors are kept quiet."""
    import threading

    previous = threading.excepthook
    if getattr(previous, "rlkit_quiet_tensorboard", False):
        return

    def hook(args) -> None:
        if type(args.thread).__name__ == "_AsyncWriterThread" and isinstance(args.exc_value, OSError):
            return
        previous(args)

    hook.rlkit_quiet_tensorboard = True
    threading.excepthook = hook


# --------------------------------------------------------------------------------------
# Reading and plotting
# --------------------------------------------------------------------------------------


def _is_record(line: str) -> bool:
    try:
        record = json.loads(line)
    except ValueError:
        return False
    return isinstance(record, dict) and "kind" in record and "step" in record


def _finite_or_null(value: Any) -> Any:
    """NaN and infinities become None (JSON ``null``): ``json.dumps`` would write bare ``NaN``."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, np.floating):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite_or_null(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_null(v) for v in value]
    return value


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / METRICS_FILE
    records = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and "kind" in record and "step" in record:
            records.append(record)
    return records


def _curves(records: list[dict[str, Any]]) -> tuple[str, np.ndarray, np.ndarray, np.ndarray]:
    """Eval returns if the run evaluated, else smoothed training episode returns."""
    evals = [r for r in records if r["kind"] == "eval"]
    if evals:
        return ("evaluation return", np.array([r["step"] for r in evals]), np.array([r["time"] for r in evals]),
                np.array([r["return_mean"] for r in evals], dtype=float))  # null (no episode) -> NaN
    episodes = [r for r in records if r["kind"] == "episode"]
    returns = np.array([r.get("return") for r in episodes], dtype=float)
    if len(returns):
        window = max(1, min(20, len(returns) // 5))
        returns = np.convolve(returns, np.ones(window) / window, mode="full")[: len(returns)]
        returns[: window - 1] = [returns[i] * window / (i + 1) for i in range(min(window - 1, len(returns)))]
    return ("episode return (smoothed)", np.array([r["step"] for r in episodes]), np.array([r["time"] for r in episodes]),
            returns)


def plot_runs(run_dirs: list[Path], out_path: Path, labels: list[str] | None = None) -> Path:
    """Learning curves vs env steps and vs wall time into a PNG (see :func:`learning_curve_figure`)."""
    import matplotlib.pyplot as plt

    fig = learning_curve_figure(run_dirs, labels)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
    return out_path


MARKERS_BELOW = 50
"""Curves with fewer points than this are drawn with markers: a single evaluation is then a dot,
not an invisible zero-length line."""


def learning_curve_figure(run_dirs: list[Path], labels: list[str] | None = None):
    """Runs with the same label (by default the run's config without its seed) are aggregated:
    mean line, shaded band = min..max over seeds. Each label keeps one colour in every panel (return vs env
    steps, vs wall time, and the success rate of goal tasks, aggregated over seeds the same way)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rlkit.runfiles.runs import run_label

    groups: dict[str, list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]] = {}
    successes: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}  # goal-conditioned runs: success rate per eval
    for i, run_dir in enumerate(run_dirs):
        label = labels[i] if labels else run_label(Path(run_dir))
        records = read_metrics(Path(run_dir))
        groups.setdefault(label, []).append(_curves(records))
        rated = [r for r in records if r["kind"] == "eval" and r.get("success_rate") is not None]
        if rated:
            successes.setdefault(label, []).append((np.array([r["step"] for r in rated]),
                                                    np.array([r["success_rate"] for r in rated], dtype=float)))
    colours = {label: f"C{i % 10}" for i, label in enumerate(groups)}

    if successes:
        fig, (ax_steps, ax_time, ax_success) = plt.subplots(1, 3, figsize=(17, 4.5))
        for label, curves in successes.items():
            _plot_seeds(ax_success, curves, label, colours[label])
        ax_success.set_xlabel("env steps")
        ax_success.set_ylabel("evaluation success rate")
        ax_success.set_ylim(-0.02, 1.02)
        ax_success.grid(alpha=0.3)
        ax_success.legend(fontsize=8)
    else:
        fig, (ax_steps, ax_time) = plt.subplots(1, 2, figsize=(12, 4.5))
    ylabel = "return"
    for label, curves in groups.items():
        ylabel = curves[0][0]
        curves = [c for c in curves if len(c[1])]
        if curves:
            _plot_seeds(ax_steps, [(c[1], c[3]) for c in curves], label, colours[label])
            _plot_seeds(ax_time, [(c[2], c[3]) for c in curves], label, colours[label])
    ax_steps.set_xlabel("env steps")
    ax_time.set_xlabel("wall time (s)")
    for ax in (ax_steps, ax_time):
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _plot_seeds(ax, curves: list[tuple[np.ndarray, np.ndarray]], label: str, colour: str) -> None:
    """One label's curves (x, y) on ``ax`` in ``colour``: a single run as it is; several seeds interpolated on a
    common grid, their mean as the line and min..max as a shaded band."""
    n = len(curves)
    if n == 1:
        x, y = curves[0]
        ax.plot(x, y, label=label, color=colour, marker="o" if len(x) < MARKERS_BELOW else None, markersize=4)
        return
    x_min = max(x[0] for x, _ in curves)
    x_max = min(x[-1] for x, _ in curves)
    grid = np.linspace(x_min, max(x_max, x_min), 200)
    stacked = np.stack([np.interp(grid, x, y) for x, y in curves])
    if x_max <= x_min:  # one shared point: the grid collapses, draw it as a dot
        grid, stacked = grid[:1], stacked[:, :1]
    ax.plot(grid, stacked.mean(0), label=f"{label} (n={n})", color=colour,
            marker="o" if len(grid) == 1 else None, markersize=4)
    ax.fill_between(grid, stacked.min(0), stacked.max(0), color=colour, alpha=0.2)


def mean_std(values: list[float]) -> tuple[float, float]:
    if not values:
        return math.nan, math.nan
    return float(np.mean(values)), float(np.std(values))

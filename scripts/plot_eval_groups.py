"""Evaluation curves of groups of runs (seeds of one setting) in one figure: success rate and episode length
against env steps, the mean of each group bold and every seed thin, read from each run's ``metrics.jsonl``.

    python scripts/plot_eval_groups.py --out docs/figures/humanoid_goto_long_skill.png \
        --group "MPO over z (long skill)" runs/goto_s0 runs/goto_s1 runs/goto_s2 \
        --group "scratch, PD targets" runs/scratch_pd_s0 runs/scratch_pd_s1 runs/scratch_pd_s2

Prints the table behind the figure (per group and evaluation step: the mean success rate, each seed's, and
the mean episode length). A group is drawn at the evaluation steps all its runs share.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def evaluations(run: Path) -> dict[int, dict]:
    """Step -> the evaluation record (the last one logged at that step: a resumed run may repeat one)."""
    records = {}
    for line in (run / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record.get("kind") == "eval":
            records[int(record["step"])] = record
    if not records:
        raise SystemExit(f"{run}: no evaluation records in metrics.jsonl")
    return records


def training_success(run: Path, window: int) -> dict[int, float]:
    """Window end (env steps) -> the share of training episodes ending in that window that succeeded."""
    ends: dict[int, list[float]] = {}
    for line in (run / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record.get("kind") == "episode" and "success" in record:
            ends.setdefault((int(record["step"]) // window + 1) * window, []).append(float(record["success"]))
    return {end: float(np.mean(values)) for end, values in sorted(ends.items())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--group", nargs="+", action="append", required=True, metavar=("LABEL", "RUN"),
                        help="a label and the run directories of its seeds")
    parser.add_argument("--out", required=True, help="the figure (PNG)")
    parser.add_argument("--metric", default="success_rate", help="the evaluation field to plot (default success_rate)")
    parser.add_argument("--title", default="")
    parser.add_argument("--train-window", type=int, default=0, metavar="STEPS",
                        help="also plot the training episodes' success rate over windows of STEPS env steps")
    args = parser.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = 3 if args.train_window else 2
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 4))
    ax_metric, ax_length = axes[0], axes[1]
    for index, (label, *runs) in enumerate(args.group):
        if not runs:
            raise SystemExit(f"--group {label!r}: no runs given")
        per_run = [evaluations(Path(run)) for run in runs]
        steps = sorted(set.intersection(*(set(r) for r in per_run)))
        missing = [run for run, r in zip(runs, per_run) if any(args.metric not in r[s] for s in steps)]
        if missing:
            raise SystemExit(f"--group {label!r}: evaluations of {', '.join(missing)} hold no {args.metric!r} "
                             "(pick another --metric, e.g. return_mean)")
        values = np.array([[r[s][args.metric] for s in steps] for r in per_run])   # [seeds, evals]
        lengths = np.array([[r[s]["length_mean"] for s in steps] for r in per_run])
        color = f"C{index}"
        for row, length in zip(values, lengths):
            ax_metric.plot(steps, row, color=color, alpha=0.3, linewidth=1)
            ax_length.plot(steps, length, color=color, alpha=0.3, linewidth=1)
        ax_metric.plot(steps, values.mean(0), color=color, linewidth=2.5, label=f"{label} ({len(runs)} seeds)")
        ax_length.plot(steps, lengths.mean(0), color=color, linewidth=2.5, label=label)
        if args.train_window:
            per_window = [training_success(Path(run), args.train_window) for run in runs]
            ends = sorted(set.intersection(*(set(w) for w in per_window)))
            shares = np.array([[w[e] for e in ends] for w in per_window])
            axes[2].plot(ends, shares.mean(0), color=color, linewidth=2.5, marker="o", label=label)
            print(f"{label}: training episodes that succeeded, per {args.train_window} env steps: " + ", ".join(
                f"to {e}: {shares[:, j].mean():.3f}" for j, e in enumerate(ends)))
        print(f"{label}:")
        for j, step in enumerate(steps):
            print(f"  {step:>7d}  {args.metric} {values[:, j].mean():.3f} "
                  f"({' / '.join(f'{v:.2f}' for v in values[:, j])})  episode length {lengths[:, j].mean():.1f}")
    ax_metric.set_xlabel("env steps")
    ax_metric.set_ylabel(f"evaluation {args.metric.replace('_', ' ')}")
    ax_length.set_xlabel("env steps")
    ax_length.set_ylabel("evaluation mean episode length (steps)")
    ax_metric.legend(fontsize=8)
    if args.train_window:
        axes[2].set_xlabel("env steps")
        axes[2].set_ylabel(f"training success rate (per {args.train_window} steps)")
    if args.title:
        fig.suptitle(args.title)
    fig.tight_layout()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=100)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

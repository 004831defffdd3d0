"""Learning curves of motion-imitation runs: normalised episode length and per-step tracking reward.

    python scripts/plot_imitation.py RUN_DIR [RUN_DIR ...] [--labels A B ...] [--clip-frames N]
                                     [--out imitation_curves.png]

Normalised episode length = episode length / the episode's full length: each run's
``env.kwargs.max_episode_steps`` (one cycle: 38 for the walk config, 24 for the run config), or
``--clip-frames`` for all runs; MoCapAct's criterion for "tracks the whole clip" is >= 0.98. Tracking
reward per step = episode return / episode length (the CoMic reward is at most 1.45 per step, 1.0 with
``reward={"normalize": True}``). Solid lines: evaluations (deterministic policy,
``kind == "eval"`` records); faint lines: training episodes (exploring policy), averaged over windows of
``--window`` env steps. Prints the evaluation table as markdown.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from rlkit.runfiles.logger import METRICS_FILE, read_metrics
from rlkit.runfiles.runs import RunDirError, check_run_dir


def curves(run_dir: Path, clip_frames: int, window: int) -> dict[str, np.ndarray]:
    records = read_metrics(run_dir)
    evals = [r for r in records if r["kind"] == "eval"]
    episodes = [r for r in records if r["kind"] == "episode"]
    out = {
        "eval_step": np.array([r["step"] for r in evals]),
        "eval_length": np.array([r["length_mean"] / clip_frames for r in evals]),
        "eval_reward": np.array([r["return_mean"] / max(r["length_mean"], 1e-9) for r in evals]),
    }
    steps = np.array([r["step"] for r in episodes])
    bins = np.arange(0, (steps.max() if len(steps) else 0) + window, window)
    centers, lengths, rewards = [], [], []
    for lo in bins[:-1]:
        chunk = [r for r, s in zip(episodes, steps) if lo <= s < lo + window]
        if chunk:
            centers.append(lo + window / 2)
            lengths.append(np.mean([r["length"] for r in chunk]) / clip_frames)
            rewards.append(np.mean([r["return"] / r["length"] for r in chunk]))
    out.update(train_step=np.array(centers), train_length=np.array(lengths), train_reward=np.array(rewards))
    return out


def full_length(run_dir: Path) -> int:
    """The run's full episode length: ``env.kwargs.max_episode_steps`` of its config."""
    import yaml

    kwargs = ((yaml.safe_load((run_dir / "config.yaml").read_text()) or {}).get("env") or {}).get("kwargs") or {}
    if "max_episode_steps" not in kwargs:
        print(f"plot_imitation: error: run '{run_dir}' sets no env.kwargs.max_episode_steps (the full episode "
              "length); pass --clip-frames N", file=sys.stderr)
        raise SystemExit(2)
    return int(kwargs["max_episode_steps"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", nargs="+", type=Path)
    parser.add_argument("--labels", nargs="+")
    parser.add_argument("--clip-frames", type=int, help="full episode length for every run (default: each "
                        "run's env.kwargs.max_episode_steps)")
    parser.add_argument("--window", type=int, default=2500, help="env steps per training-episode average")
    parser.add_argument("--out", type=Path, default=Path("imitation_curves.png"))
    args = parser.parse_args()
    labels = args.labels or [p.name for p in args.run_dirs]
    if len(labels) != len(args.run_dirs):
        parser.error(f"--labels needs one label per run ({len(args.run_dirs)}), got {len(labels)}")
    for run_dir in args.run_dirs:  # bad input: a clear message and exit code 2, before anything is drawn
        try:
            check_run_dir(run_dir, need_checkpoint=False)
        except RunDirError as error:
            parser.error(str(error))
        if not (run_dir / METRICS_FILE).is_file():
            parser.error(f"run '{run_dir}' has no {METRICS_FILE} yet: it has not logged anything")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_len, ax_rew) = plt.subplots(1, 2, figsize=(12, 4.5))
    for run_dir, label in zip(args.run_dirs, labels):
        c = curves(run_dir, args.clip_frames or full_length(run_dir), args.window)
        line = ax_len.plot(c["eval_step"], c["eval_length"], marker="o", label=f"{label} (eval)")[0]
        ax_len.plot(c["train_step"], c["train_length"], color=line.get_color(), alpha=0.35, label=f"{label} (train)")
        ax_rew.plot(c["eval_step"], c["eval_reward"], marker="o", color=line.get_color(), label=f"{label} (eval)")
        ax_rew.plot(c["train_step"], c["train_reward"], color=line.get_color(), alpha=0.35)
        print(f"\n{label}: | env steps | " + " | ".join(f"{s / 1000:g}k" for s in c["eval_step"]) + " |")
        print("| normalised length | " + " | ".join(f"{v:.2f}" for v in c["eval_length"]) + " |")
        print("| tracking reward per step | " + " | ".join(f"{v:.3f}" for v in c["eval_reward"]) + " |")
    ax_len.axhline(0.98, color="k", linestyle="--", linewidth=0.8, label="goal 0.98")
    ax_len.set(xlabel="env steps", ylabel="normalised episode length", ylim=(0, 1.05))
    ax_rew.set(xlabel="env steps", ylabel="tracking reward per step", ylim=(0, 1.5))
    ax_len.legend(fontsize=8)
    ax_rew.legend(fontsize=8)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=90)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()

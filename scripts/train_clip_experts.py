"""Train one MPO tracking expert per vendored DeepMimic clip (Catch & Carry's first stage) and tabulate them.

    python scripts/train_clip_experts.py --out runs/experts [--clips kick punch ...] [--steps 10000]
                                         [--window 60] [--parallel 2] [--episodes 50] [--set KEY=VALUE ...]

Each clip is `rlkit train configs/mpo_humanoid_walk.yaml` (the walk expert's recipe: PD residuals, Acme's MPO with
the shipped policies' settings) with ``env.kwargs.clips=[CLIP]`` and an episode window of
``min(cycle, --window)`` steps for a looping clip (one cycle, from a random phase: the walk expert's 38) and
``min(frames - 7, --window)`` for a non-looping one with ``min_steps`` set to it, so that every start frame leaves
room for a whole episode (the last 5 frames are the reference look-ahead). Normalised length = mean episode length
/ the window; an expert is >= 0.98 (MoCapAct's criterion, Wagener et al. 2022).

Runs that already finished under --out are read, not trained again; an interrupted one is resumed
(``rlkit train --resume``, with the run's own settings). At the end every run is evaluated with its latest
weights over --episodes episodes
(:func:`rlkit.training.expert_rollouts.evaluate_on_clip`, deterministic policy, random start frames), beside the
untrained policy (the zero residual: the PD servos replaying the clip) from the run's step-0 evaluation.
Writes OUT/experts.json and prints a markdown table; the experts that qualify go to `rlkit dataset experts
--experts OUT/CLIP ...`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXPERT_CRITERION = 0.98


def clip_window(clip: str, window: int) -> tuple[int, dict[str, int]]:
    """Episode steps and the env kwargs that set them for ``clip`` (see the module docstring)."""
    import gymnasium as gym

    import rlkit.envs  # noqa: F401  (registers the ids)

    env = gym.make("rlkit/HumanoidImitation-v0", clips=[clip])
    c = env.unwrapped.library.clips[0]  # resampled to the control rate, as training sees it
    env.close()
    if c.loop:
        steps = min(c.num_frames - 1, window)
        return steps, {"max_episode_steps": steps}
    steps = min(c.num_frames - 7, window)
    if steps < 1:
        raise SystemExit(f"clip '{clip}' has {c.num_frames} frames, too short for an episode")
    return steps, {"max_episode_steps": steps, "min_steps": steps}


def train_args(clip: str, kwargs: dict[str, int], steps: int, seed: int, run_dir: Path,
               extra: list[str]) -> list[str]:
    every = max(steps // 4, 1)
    overrides = [f"env.kwargs.clips=[{clip}]", *(f"env.kwargs.{k}={v}" for k, v in kwargs.items()),
                 f"train.total_steps={steps}", f"train.eval_every={every}", f"train.checkpoint_every={every}",
                 "log.progress=false", *extra]
    return [sys.executable, "-m", "rlkit", "train", str(REPO / "configs" / "mpo_humanoid_walk.yaml"),
            "--seed", str(seed), "--run-dir", str(run_dir), *overrides]


def finished(run_dir: Path, steps: int) -> bool:
    rows = eval_rows(run_dir)
    return bool(rows) and rows[-1]["step"] >= steps


def eval_rows(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if r.get("kind") == "eval"]


def train_one(clip: str, ns: argparse.Namespace) -> tuple[str, int]:
    run_dir = Path(ns.out) / clip.replace(":", "_").replace("=", "")
    if finished(run_dir, ns.steps):
        return clip, 0
    _, kwargs = clip_window(clip, ns.window)
    if (run_dir / "checkpoints" / "latest.pt").is_file():  # resumes with the run's own settings (--set ignored)
        cmd = [sys.executable, "-m", "rlkit", "train", "--resume", str(run_dir), f"train.total_steps={ns.steps}"]
    else:
        if run_dir.exists():  # started but killed before its first checkpoint: nothing to resume, start again
            shutil.rmtree(run_dir)
        cmd = train_args(clip, kwargs, ns.steps, ns.seed, run_dir, ns.set)
    start = time.time()
    with open(Path(ns.out) / f"{run_dir.name}.log", "a") as log:
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ})
    print(f"{clip}: exit {proc.returncode} after {time.time() - start:.0f} s", flush=True)
    return clip, proc.returncode


def table_row(clip: str, ns: argparse.Namespace) -> dict:
    from rlkit.errors import ConfigError, RunDirError
    from rlkit.training.expert_rollouts import evaluate_on_clip, load_expert

    run_dir = Path(ns.out) / clip.replace(":", "_").replace("=", "")
    window, _ = clip_window(clip, ns.window)
    rows = eval_rows(run_dir)
    row = {"clip": clip, "run": str(run_dir), "episode_steps": window}
    if not rows:
        return {**row, "error": "no evaluations (see the run's log)"}
    row["untrained"] = rows[0]["length_mean"] / window if rows[0]["step"] == 0 else None
    best = max(rows, key=lambda r: r["length_mean"])
    row.update(best=best["length_mean"] / window, best_step=best["step"], last_step=rows[-1]["step"],
               curve=[(r["step"], r["length_mean"] / window) for r in rows])
    try:
        expert = load_expert(run_dir, checkpoint="latest")
        result = evaluate_on_clip(expert.agent, expert.env_kwargs, ns.episodes, ns.eval_seed)
    except (ConfigError, RunDirError) as exc:  # one broken run does not cost the others' rows
        return {**row, "error": f"not evaluated: {exc}"}
    row.update(final=result["length_mean"] / window, final_return=result["return_mean"])
    row["expert"] = row["final"] >= EXPERT_CRITERION
    return row


def main() -> None:
    from rlkit.envs.mocap import DEEPMIMIC_CLIPS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="directory of the runs (one per clip) and experts.json")
    parser.add_argument("--clips", nargs="+", default=list(DEEPMIMIC_CLIPS),
                        help="clip names (default: every vendored DeepMimic clip; derived ones such as walk:turn=30 work)")
    parser.add_argument("--steps", type=int, default=10000, help="env steps per expert")
    parser.add_argument("--window", type=int, default=60, help="longest episode in steps (60 = 2 s)")
    parser.add_argument("--parallel", type=int, default=2, help="training processes at once")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--episodes", type=int, default=50, help="final evaluation episodes per expert")
    parser.add_argument("--eval-seed", type=int, default=12345)
    parser.add_argument("--table-only", action="store_true", help="do not train; tabulate the runs under --out")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="overrides for every run")
    ns = parser.parse_args()
    from rlkit.errors import ConfigError

    for clip in ns.clips:  # bad clip names fail before anything trains
        try:
            clip_window(clip, ns.window)
        except ConfigError as exc:
            raise SystemExit(f"--clips {clip}: {exc}") from None
    Path(ns.out).mkdir(parents=True, exist_ok=True)
    if not ns.table_only:
        with ThreadPoolExecutor(max_workers=max(ns.parallel, 1)) as pool:
            failed = [c for c, rc in pool.map(lambda c: train_one(c, ns), ns.clips) if rc != 0]
        if failed:
            print(f"failed: {failed} (their logs are under {ns.out})", flush=True)
    rows = [table_row(c, ns) for c in ns.clips]
    (Path(ns.out) / "experts.json").write_text(json.dumps(rows, indent=1))
    print(f"| clip | episode steps | untrained | best in training (step) | final ({ns.episodes} episodes) | "
          f"return | expert (>= {EXPERT_CRITERION}) |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['clip']} | {r['episode_steps']} | {r['error']} | | | | |")
            continue
        untrained = "–" if r["untrained"] is None else f"{r['untrained']:.2f}"
        print(f"| {r['clip']} | {r['episode_steps']} | {untrained} | {r['best']:.2f} ({r['best_step']}) | "
              f"{r['final']:.2f} | {r['final_return']:.1f} | {'yes' if r['expert'] else 'no'} |")


if __name__ == "__main__":
    main()

"""MPO (rlkit) vs SAC (Stable-Baselines3) at the same env-step budget, interleaved in one run.

    python scripts/bench_mpo.py [--env Pendulum-v1] [--config configs/mpo_pendulum.yaml] [--steps 20000]
                                [--seeds 0 1 2] [--out bench_out/mpo_vs_sac] [key.sub=value ...]

For each seed both agents train on the same env for ``--steps`` env steps (order alternating per seed,
so drifting machine load hits both alike) and are evaluated with the same protocol: rlkit's
``evaluate`` (deterministic actions, ``--eval-episodes`` episodes, seeds ``seed + 100000 + step``)
every ``--eval-every`` steps. Reported per seed and as ratios MPO/SAC: final evaluation return,
first step with an evaluation >= ``--solved``, and updates per second of training wall time
(evaluations included on both sides). One torch thread on both sides. SAC uses rl-baselines3-zoo's
hyperparameters for Pendulum-v1 (lr 1e-3, else SB3 defaults) unless ``--sac-lr`` etc. say otherwise.
Writes ``results.json`` and prints a markdown table. Thin: MPO runs through ``rlkit.training.loops.train_online``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from rlkit.runfiles.checkpoint import load_checkpoint
from rlkit.config import EnvConfig, load_config
from rlkit.runfiles.logger import read_metrics
from rlkit.training.loops import evaluate, train_online
from rlkit.runfiles.runs import LATEST


def run_mpo(args, seed: int, out: Path) -> dict:
    overrides = [*args.overrides, f"env.id={args.env}", f"train.total_steps={args.steps}", f"seed={seed}",
                 f"train.eval_every={args.eval_every}", f"train.eval_episodes={args.eval_episodes}",
                 "torch_threads=1", "device=cpu", "train.save_buffer=false", "log.progress=false",
                 "log.tensorboard=false", "log.plot=false"]
    cfg = load_config(args.config, overrides)
    run_dir = out / f"mpo-s{seed}"
    shutil.rmtree(run_dir, ignore_errors=True)  # this script's own output: each run starts from an empty dir
    summary = train_online(cfg, run_dir)
    evals = [(r["step"], r["time"], r["return_mean"]) for r in read_metrics(run_dir) if r["kind"] == "eval"]
    updates = int(load_checkpoint(run_dir / LATEST)["agent"]["updates"])
    return _result("mpo", seed, evals, updates, summary["wall_time"], args.solved)


class _SB3Policy:
    """rlkit's ``evaluate`` calls ``act(step, explore=False, epsilon=...)`` with the agent contract's step record,
    built on ``device``: the SB3 model's deterministic action for its observations as host arrays."""

    device = torch.device("cpu")

    def __init__(self, model) -> None:
        self.model = model

    def act(self, step, explore: bool, epsilon: float | None = None) -> np.ndarray:
        return self.model.predict(step.obs.cpu().numpy(), deterministic=not explore)[0]


def run_sac(args, seed: int) -> dict:
    import gymnasium as gym
    from stable_baselines3 import SAC
    from stable_baselines3.common.callbacks import BaseCallback

    env_cfg = EnvConfig(id=args.env, num_envs=1)
    evals: list[tuple[int, float, float]] = []
    started = [0.0]

    class EvalEvery(BaseCallback):
        def _on_step(self) -> bool:
            if self.num_timesteps % args.eval_every == 0 or self.num_timesteps == args.steps:
                result = evaluate(_SB3Policy(self.model), env_cfg, args.eval_episodes, 0.0,
                                  seed=seed + 100_000 + self.num_timesteps)
                evals.append((self.num_timesteps, time.perf_counter() - started[0], result["return_mean"]))
            return True

    torch.manual_seed(seed)
    model = SAC("MlpPolicy", gym.make(args.env), learning_rate=args.sac_lr, batch_size=args.sac_batch_size,
                learning_starts=args.sac_learning_starts, seed=seed, device="cpu", verbose=0)
    started[0] = time.perf_counter()
    model.learn(total_timesteps=args.steps, callback=EvalEvery())
    wall = time.perf_counter() - started[0]
    return _result("sac", seed, evals, int(model._n_updates), wall, args.solved)


def _result(agent: str, seed: int, evals: list, updates: int, wall: float, solved_at: float) -> dict:
    solved = next(((step, t) for step, t, ret in evals if ret >= solved_at), (None, None))
    return {"agent": agent, "seed": seed, "final_return": evals[-1][2], "best_return": max(r for *_, r in evals),
            "steps_to_solve": solved[0], "time_to_solve_s": None if solved[1] is None else round(solved[1], 1),
            "updates": updates, "wall_time_s": round(wall, 1), "updates_per_s": round(updates / wall, 1),
            "evals": evals}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="Pendulum-v1")
    parser.add_argument("--config", default="configs/mpo_pendulum.yaml")
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--eval-every", type=int, default=2_000)
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--solved", type=float, default=-200.0, help="return counted as solved (Pendulum: -200)")
    parser.add_argument("--sac-lr", type=float, default=1e-3, help="rl-baselines3-zoo Pendulum-v1: 1e-3")
    parser.add_argument("--sac-batch-size", type=int, default=256)
    parser.add_argument("--sac-learning-starts", type=int, default=100)
    parser.add_argument("--only", choices=["mpo", "sac"], help="run one side only (e.g. to split across machines)")
    parser.add_argument("--out", default="bench_out/mpo_vs_sac")
    parser.add_argument("overrides", nargs="*", help="key.sub=value overrides for the MPO config")
    args = parser.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    results = []
    for i, seed in enumerate(args.seeds):
        order = ["mpo", "sac"] if i % 2 == 0 else ["sac", "mpo"]
        for agent in order:
            if args.only and agent != args.only:
                continue
            result = run_mpo(args, seed, out) if agent == "mpo" else run_sac(args, seed)
            results.append(result)
            print(json.dumps({k: v for k, v in result.items() if k != "evals"}), flush=True)

    machine = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
               "torch": torch.__version__, "torch_threads": torch.get_num_threads()}
    summary = {}
    for key in ("final_return", "updates_per_s"):
        by_agent = {a: [r[key] for r in results if r["agent"] == a] for a in ("mpo", "sac")}
        if all(by_agent.values()):
            mpo, sac = float(np.mean(by_agent["mpo"])), float(np.mean(by_agent["sac"]))
            summary[key] = {"mpo_mean": mpo, "sac_mean": sac, "ratio_mpo_over_sac": mpo / sac}
    (out / "results.json").write_text(json.dumps({"env": args.env, "steps": args.steps, "config": args.config,
                                                  "overrides": args.overrides, "machine": machine,
                                                  "results": results, "summary": summary}, indent=1))
    print(f"\n{args.env}, {args.steps} env steps per run, {machine}")
    print("| agent | seed | final return | best return | steps to solve | updates/s | wall time (s) |")
    print("|---|---|---|---|---|---|---|")
    for r in sorted(results, key=lambda r: (r["agent"], r["seed"])):
        print(f"| {r['agent']} | {r['seed']} | {r['final_return']:.1f} | {r['best_return']:.1f} | "
              f"{r['steps_to_solve']} | {r['updates_per_s']} | {r['wall_time_s']} |")
    for key, s in summary.items():
        print(f"{key}: MPO {s['mpo_mean']:.1f}, SAC {s['sac_mean']:.1f}, MPO/SAC = {s['ratio_mpo_over_sac']:.2f}")


if __name__ == "__main__":
    main()

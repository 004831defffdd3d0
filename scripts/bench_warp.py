"""Env steps/s of rlkit/HumanoidImitation-v0 on the mujoco-warp backend against the plain MuJoCo vector env.

Both are built the way a run builds them (``rlkit.training.build.make_vector_env`` with ``env.backend``), with the
kwargs of configs/mpo_humanoid_walk.yaml (walk clip, pd_residual, 38-step episodes, so autoresets happen), reset
with seed 0 and stepped with uniform random actions; after ``--warmup`` untimed steps (the first warp step loads
or compiles its kernels) ``--steps`` steps are timed. Env steps/s = worlds x steps / seconds (autoreset steps
included: they cost a step of every world). The load average is printed with each row (2 shared cores here)::

    OMP_NUM_THREADS=1 nice -n 5 .venv/bin/python scripts/bench_warp.py --sizes 1 64 256 1024 --mujoco-sizes 1 64 256
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch

from rlkit.config import EnvConfig
from rlkit.training.build import make_vector_env

KWARGS = {"clips": ["walk"], "max_episode_steps": 38, "action_mode": "pd_residual", "residual_scale": 0.3}


def measure(backend: str, n: int, steps: int, warmup: int, device: str) -> dict:
    kwargs = dict(KWARGS, **({"device": device} if backend == "warp" else {}))
    t0 = time.perf_counter()
    envs = make_vector_env(EnvConfig(id="rlkit/HumanoidImitation-v0", num_envs=n, kwargs=kwargs, backend=backend))
    build_s = time.perf_counter() - t0
    return {"backend": backend, "num_envs": n, "steps": steps, "build_s": build_s, **time_vector_steps(envs, steps, warmup)}


def time_vector_steps(envs, steps: int, warmup: int) -> dict:
    """Reset with seed 0, ``warmup`` untimed then ``steps`` timed vector steps of uniform random actions; closes
    ``envs``. Env steps/s = worlds x steps / seconds (autoreset steps included: they cost a step of every world)."""
    n = envs.num_envs
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1.0, 1.0, (warmup + steps, n, envs.single_action_space.shape[0])).astype(np.float32)
    envs.reset(seed=0)
    t0 = time.perf_counter()
    for t in range(warmup):
        envs.step(actions[t])
    warmup_s = time.perf_counter() - t0
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    ended = 0
    for t in range(warmup, warmup + steps):
        _, _, terminated, truncated, _ = envs.step(actions[t])
        ended += int((terminated | truncated).sum())
    seconds = time.perf_counter() - t0
    envs.close()
    return {"seconds": seconds, "env_steps_per_s": n * steps / seconds, "ms_per_vector_step": 1000 * seconds / steps,
            "warmup_s": warmup_s, "episodes_ended": ended, "load_1min": load}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 64, 256, 1024], help="warp worlds")
    parser.add_argument("--mujoco-sizes", type=int, nargs="*", default=[1, 64, 256], help="plain MuJoCo sub-envs")
    parser.add_argument("--steps", type=int, default=20, help="timed vector steps per row")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="warp device (cpu, cuda, auto)")
    parser.add_argument("--out", default=None, help="also write the rows as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    print("| backend | worlds | env steps/s | ms / vector step | build s | warm-up s | load (1 min) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for backend, sizes in (("mujoco", args.mujoco_sizes), ("warp", args.sizes)):
        for n in sizes:
            row = measure(backend, n, args.steps, args.warmup, args.device)
            rows.append(row)
            print(f"| {backend} | {n} | {row['env_steps_per_s']:,.0f} | {row['ms_per_vector_step']:.1f} | "
                  f"{row['build_s']:.1f} | {row['warmup_s']:.1f} | {row['load_1min']:.2f} |", flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()

"""How far apart Ant-maze trajectories get: mujoco-warp against MuJoCo, and MuJoCo against itself slightly perturbed.

From ``--worlds`` MuJoCo resets of rlkit/AntMazeU-v0 (seeds 100, 101, ...) the same uniform random actions drive
four simulations: MuJoCo (the reference); MuJoCo with the 8 joint angles perturbed by ``--eps`` (Gaussian) at the
start, which shows how fast the Ant itself amplifies a tiny difference; the warp backend (envs/ant_warp.py,
CPU device) started in the reference states; and the warp backend without its contact filter (mujoco-warp 4.0's own
plane-capsule contact frames). Each row is the largest |qpos| difference over the worlds after that many env steps::

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python scripts/warp_ant_drift.py --worlds 8 --steps 60
"""

from __future__ import annotations

import argparse

import gymnasium as gym
import numpy as np
import torch

import rlkit.envs  # noqa: F401  (registers rlkit/AntMazeU-v0)
from rlkit.envs.ant_warp import AntMazeWarpEnv


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worlds", type=int, default=8)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--eps", type=float, default=1e-6, help="joint-angle perturbation of the second MuJoCo run")
    parser.add_argument("--seed", type=int, default=0, help="seed of the actions")
    args = parser.parse_args()
    torch.set_num_threads(1)
    n = args.worlds

    def ant(env):
        return env.unwrapped.inner.ant_env

    reference = [gym.make("rlkit/AntMazeU-v0") for _ in range(n)]
    perturbed = [gym.make("rlkit/AntMazeU-v0") for _ in range(n)]
    starts = [env.reset(seed=100 + i)[0] for i, env in enumerate(reference)]
    for i, env in enumerate(perturbed):
        env.reset(seed=100 + i)
        qpos = ant(env).data.qpos.copy()
        qpos[7:] += args.eps * np.random.default_rng(i).standard_normal(len(qpos) - 7)
        ant(env).set_state(qpos, ant(env).data.qvel.copy())
    options = {"goal": np.stack([o["desired_goal"] for o in starts]),
               "qpos": np.stack([ant(env).data.qpos for env in reference])}
    warp, raw = AntMazeWarpEnv(num_envs=n, device="cpu"), AntMazeWarpEnv(num_envs=n, device="cpu")
    raw._model.callback.contactfilter = None
    warp.reset(options=options)
    raw.reset(options=options)
    rng = np.random.default_rng(args.seed)
    print(f"| env steps | MuJoCo vs MuJoCo (joints +{args.eps:g}) | warp vs MuJoCo | warp, own contact frames, vs MuJoCo |")
    print("|---:|---:|---:|---:|")
    for t in range(1, args.steps + 1):
        actions = rng.uniform(-1, 1, (n, 8)).astype(np.float32)
        warp.step(actions)
        raw.step(actions)
        for envs in (reference, perturbed):
            for env, a in zip(envs, actions):
                env.step(a)
        q_ref = np.stack([ant(env).data.qpos for env in reference])
        q_pert = np.stack([ant(env).data.qpos for env in perturbed])
        if t <= 5 or t % 5 == 0:
            print(f"| {t} | {np.abs(q_pert - q_ref).max():.1e} | {np.abs(warp._qpos.numpy() - q_ref).max():.1e} | "
                  f"{np.abs(raw._qpos.numpy() - q_ref).max():.1e} |", flush=True)


if __name__ == "__main__":
    main()

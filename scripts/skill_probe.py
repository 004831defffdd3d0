"""What a frozen NPMP skill offers a high-level policy on go-to-target, before any learning (issue 23).

    python scripts/skill_probe.py SKILL_DIR [--episodes 100]

1. Baselines over ``--episodes`` episodes (``reset(seed=i)``): the skill driven by z = 0, by z from its
   AR(1) prior (z_t = 0.95 z_{t-1} + sqrt(1 - 0.95^2) eps, z_0 ~ N(0, I)), and uniform random PD actions
   without the skill: success rate and mean episode length.
2. Can z steer? From one start state (seeds 0, 1, 2), z held fixed at 0 and at 20 draws from N(0, I),
   run until a fall or 90 steps: the root's displacement and its direction relative to z = 0's.
SKILL_DIR is an ``rlkit export`` of an npmp run (``rlkit.agents.npmp.load_skill``).
"""

from __future__ import annotations

import argparse

import gymnasium as gym
import numpy as np
import torch

import rlkit.envs  # noqa: F401  (registers the task ids)
from rlkit.agents.npmp import load_skill


def rollout(env, decoder, z_of_step, seed: int, max_steps: int = 300):
    obs, _ = env.reset(seed=seed)
    start = env.unwrapped.data.qpos[:2].copy()
    info: dict = {}
    for t in range(max_steps):
        z = z_of_step(t)
        if z is None:
            action = env.action_space.sample()
        else:
            with torch.no_grad():
                action = decoder(torch.as_tensor(obs["proprio"])[None], torch.as_tensor(z)[None])[0].numpy()
        obs, _, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            break
    return t + 1, bool(info.get("is_success")), env.unwrapped.data.qpos[:2] - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("skill")
    parser.add_argument("--episodes", type=int, default=100)
    args = parser.parse_args()
    torch.set_num_threads(1)
    decoder, spec = load_skill(args.skill)
    d = spec.latent_dim
    env = gym.make("rlkit/HumanoidGoToTarget-v0", action_mode="pd")
    env.action_space.seed(0)
    rng = np.random.default_rng(0)

    def ar1():
        z = rng.standard_normal(d).astype(np.float32)

        def step(t):
            nonlocal z
            if t > 0:
                z = (0.95 * z + np.sqrt(1 - 0.95 ** 2) * rng.standard_normal(d)).astype(np.float32)
            return z
        return step

    makers = {"z = 0": lambda: (lambda t: np.zeros(d, np.float32)), "z from the AR(1) prior": ar1,
              "random PD actions, no skill": lambda: (lambda t: None)}
    for name, make in makers.items():
        runs = [rollout(env, decoder, make(), seed) for seed in range(args.episodes)]
        print(f"{name:28s} success {np.mean([s for _, s, _ in runs]):.2f}, "
              f"mean episode length {np.mean([n for n, _, _ in runs]):.1f} ({args.episodes} episodes)")

    for seed in (0, 1, 2):
        zs = [np.zeros(d, np.float32)] + [rng.standard_normal(d).astype(np.float32) for _ in range(20)]
        rows = [rollout(env, decoder, lambda t, z=z: z, seed, max_steps=90) for z in zs]
        angles = [np.degrees(np.arctan2(disp[1], disp[0])) for _, _, disp in rows]
        rel = np.array([((a - angles[0] + 180) % 360) - 180 for a in angles[1:]])
        print(f"start seed {seed}: z = 0 walks {np.hypot(*rows[0][2]):.2f} m in {rows[0][0]} steps; 20 fixed z ~ N(0, I): "
              f"{np.mean([np.hypot(*r[2]) for r in rows[1:]]):.2f} m in {np.mean([r[0] for r in rows[1:]]):.1f} steps, "
              f"direction vs z = 0: mean |angle| {np.mean(np.abs(rel)):.0f} deg, range [{rel.min():.0f}, {rel.max():.0f}]")


if __name__ == "__main__":
    main()

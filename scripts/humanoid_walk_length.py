"""How long does a humanoid imitation policy keep tracking? Mean episode length on one clip with episodes capped at
``--cap`` steps (a looping clip such as ``walk`` runs on for the whole cap), from random start frames.

    python scripts/humanoid_walk_length.py pretrained/mpo_humanoid_walk --clip walk --cap 300 --episodes 20

Issue 23's experts must keep walking for many seconds before a skill distilled from them can (docs/
humanoid_imitation.md, "Turning clips, longer episodes"): this is the measure (30 steps = 1 s).
"""

from __future__ import annotations

import argparse
import json

import numpy as np

import rlkit
from rlkit.envs.humanoid_imitation import HumanoidImitationEnv


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="a run directory or an `rlkit export` of one")
    parser.add_argument("--clip", default="walk")
    parser.add_argument("--cap", type=int, default=300, help="episode cap in env steps (30 per second)")
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--checkpoint", default="latest", choices=["best", "latest"])
    parser.add_argument("--seed", type=int, default=1000)
    args = parser.parse_args()
    policy = rlkit.load(args.run, checkpoint=args.checkpoint)
    env = HumanoidImitationEnv(clips=[args.clip], max_episode_steps=args.cap, action_mode="pd_residual",
                               residual_scale=0.3)
    lengths, returns = [], []
    for episode in range(args.episodes):
        obs, _ = env.reset(seed=args.seed + episode)
        done, steps, total = False, 0, 0.0
        while not done:
            obs, reward, terminated, truncated, _ = env.step(policy.predict(obs[None], deterministic=True)[0])
            steps, total, done = steps + 1, total + float(reward), terminated or truncated
        lengths.append(steps)
        returns.append(total)
    env.close()
    print(json.dumps({"run": args.run, "clip": args.clip, "cap": args.cap, "episodes": args.episodes,
                      "mean_length": float(np.mean(lengths)), "seconds": float(np.mean(lengths)) / 30.0,
                      "share_of_cap": float(np.mean(lengths)) / args.cap,
                      "full_episodes": int(sum(n >= args.cap for n in lengths)), "mean_return": float(np.mean(returns))}))


if __name__ == "__main__":
    main()

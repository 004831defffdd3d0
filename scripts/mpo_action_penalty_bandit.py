"""MPO on a one-step bandit whose reward is the action: does the policy mean leave [-1, 1]?

Reward = the (clipped) action, so Q(a) = clip(a, -1, 1) is flat outside the bounds. The critic is learned
(batch 64 of fresh samples per update, discount 0), the std is held near 0.7 by its tight KL bound
(epsilon_stddev 1e-6), lr 3e-4, target copies every 100 updates, seed 0, one torch thread. Prints the
policy mean every 1,000 updates for: no penalty, Acme's epsilon_penalty 1e-3, 1e-2, and rlkit's 0.1.

    python scripts/mpo_action_penalty_bandit.py [--updates 6000]
"""

from __future__ import annotations

import argparse

import gymnasium as gym
import numpy as np
import torch

from rlkit.agents import MPO, MPOConfig
from rlkit.experience.replay import Transitions


def bandit_means(action_penalization: bool, epsilon_penalty: float, updates: int, seed: int = 0) -> list[float]:
    space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    agent = MPO(MPOConfig(policy_hidden=[32], critic_hidden=[32, 32], init_std=0.7, epsilon_stddev=1e-6,
                          action_penalization=action_penalization, epsilon_penalty=epsilon_penalty,
                          target_update_every=100, policy_lr=3e-4, critic_lr=3e-4), space, space, seed=seed)
    obs, means = torch.zeros(64, 1), []
    for i in range(updates):
        actions = torch.as_tensor(agent.predict(np.zeros((64, 1), np.float32), deterministic=False))
        agent.update(Transitions(obs=obs, actions=actions, rewards=actions[:, 0].clone(), next_obs=obs,
                                 discounts=torch.zeros(64), weights=torch.ones(64), indices=torch.arange(64)))
        if (i + 1) % 1000 == 0:
            with torch.no_grad():
                means.append(round(float(agent.policy(obs[:1])[0]), 2))
    return means


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=6000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    for label, on, eps in (("no penalty", False, 1e-3), ("epsilon_penalty 1e-3 (Acme)", True, 1e-3),
                           ("epsilon_penalty 1e-2", True, 1e-2), ("epsilon_penalty 0.1 (rlkit)", True, 0.1)):
        print(f"{label:30s} policy mean every 1,000 updates: {bandit_means(on, eps, args.updates)}", flush=True)


if __name__ == "__main__":
    main()

"""Does DrQ's random shift hide CartPole's state at 64 x 64? A supervised check behind the DrQ rows of issue 21.

DQN with DrQ (any K, M; shifts of +-4 or +-2 px) stayed at the untrained score on ``rlkit/PixelCartPole-v0`` while
plain DQN learned (docs/benchmarks.md, "Self-supervised modules"). The implementation matches the paper's equations
view by view (tests/test_auxiliary_ssl.py), so this asks the representation question directly, without RL: the
Nature CNN (the DQN's encoder) plus a linear head regresses the true state (x, x_dot, theta, theta_dot) from the
env's observations, trained with DrQ's augmentation (``rlkit.auxiliary.augment.random_shift``, pad 0 = none, 2, 4)
for the same number of steps, and scored (R^2 per state dimension) on held-out episodes, unshifted.

    nice -n 10 python scripts/drq_shift_probe.py --steps 1500 --seeds 0 1

Data: PixelCartPole (3 stacked 64 x 64 grey frames) under a balancing policy (push toward the pole's fall) with 25%
uniform random actions, episodes of at most 200 steps; 80% of the episodes train, 20% test.
"""

from __future__ import annotations

import argparse
import json
import time

import gymnasium as gym
import numpy as np
import torch
from torch import nn

import rlkit.envs  # noqa: F401  (registers rlkit/PixelCartPole-v0)
from rlkit.auxiliary.augment import random_shift
from rlkit.contract.networks import NatureCNN

STATE = ("x", "x_dot", "theta", "theta_dot")


def collect(steps: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    env = gym.make("rlkit/PixelCartPole-v0")
    rng = np.random.default_rng(seed)
    obs_list, states, episode_ids = [], [], []
    episode, t = 0, 0
    obs, info = env.reset(seed=seed)
    while len(obs_list) < steps:
        state = np.asarray(info["state"], dtype=np.float32)
        obs_list.append(obs)
        states.append(state)
        episode_ids.append(episode)
        action = int(state[2] + 0.5 * state[3] > 0) if rng.random() > 0.25 else int(rng.integers(2))
        obs, _, terminated, truncated, info = env.step(action)
        t += 1
        if terminated or truncated or t >= 200:
            episode, t = episode + 1, 0
            obs, info = env.reset()
    env.close()
    return np.stack(obs_list), np.stack(states), np.asarray(episode_ids)


def r2(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    return 1.0 - ((pred - target) ** 2).sum(0) / ((target - target.mean(0)) ** 2).sum(0)


def train_probe(obs, states, train, test, pad: int, steps: int, seed: int, batch: int = 64) -> dict:
    torch.manual_seed(seed)
    channels, height, width = obs.shape[1:]
    model = nn.Sequential(NatureCNN(channels, height, width), nn.Linear(512, 4))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-4)
    mean, std = states[train].mean(0), states[train].std(0) + 1e-8
    x_train, y_train = torch.as_tensor(obs[train]), torch.as_tensor((states[train] - mean) / std)
    generator = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    for _ in range(steps):
        idx = torch.randint(len(x_train), (batch,), generator=generator)
        x = x_train[idx]
        if pad:
            x = random_shift(x, pad)
        loss = ((model(x) - y_train[idx]) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        pred = torch.cat([model(torch.as_tensor(obs[test][i:i + 256])) for i in range(0, len(test), 256)]).numpy()
    scores = r2(pred * std + mean, states[test])
    return {"pad": pad, "seed": seed, "r2": dict(zip(STATE, scores.round(3).tolist())),
            "r2_mean": float(scores.mean()), "train_loss": float(loss.detach()), "seconds": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=6000)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--pads", type=int, nargs="+", default=[0, 2, 4])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    args = parser.parse_args()
    torch.set_num_threads(1)
    obs, states, episodes = collect(args.samples, seed=123)
    test_episodes = np.unique(episodes)[::5]  # every fifth episode held out
    test = np.flatnonzero(np.isin(episodes, test_episodes))
    train = np.flatnonzero(~np.isin(episodes, test_episodes))
    print(f"{len(obs)} observations, {episodes.max() + 1} episodes, {len(train)} train / {len(test)} test", flush=True)
    rows = []
    for seed in args.seeds:
        for pad in args.pads:
            rows.append(train_probe(obs, states, train, test, pad, args.steps, seed))
            print(json.dumps(rows[-1]), flush=True)
    print(f"\n| shift (px) | {' | '.join(STATE)} | mean R² |  ({args.steps} steps, seeds {args.seeds}, held-out episodes)")
    print("|---|" + "---|" * (len(STATE) + 1))
    for pad in args.pads:
        sel = [r for r in rows if r["pad"] == pad]
        cells = [f"{np.mean([r['r2'][k] for r in sel]):.3f}" for k in STATE]
        print(f"| ±{pad} | {' | '.join(cells)} | {np.mean([r['r2_mean'] for r in sel]):.3f} |")


if __name__ == "__main__":
    main()

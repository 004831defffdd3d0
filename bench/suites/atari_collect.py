"""Suite ``atari-collect``: rlkit's collection path (ALE vector env, wrapper, policy forward, replay writes) vs
ALE's raw vector env stepping random actions."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from rlkit.bench.figures import Figure


def suite_atari_collect(seeds: list[int], out: Path, quick: bool, threads: int) -> list[Figure]:
    import gymnasium as gym
    from ale_py.vector_env import AtariVectorEnv

    import rlkit.envs  # noqa: F401
    from rlkit.agents.dqn import DQN, DQNConfig
    from rlkit.training.collector import Collector
    from rlkit.experience.replay import ReplayBuffer

    n_envs, steps = 8, (150 if quick else 1_500)
    env_threads = min(os.cpu_count() or 1, n_envs)
    figure = Figure(f"Atari collection env steps/s, epsilon 0.01 ({n_envs} envs, {env_threads} ALE threads)",
                    "steps/s", goal=">= 0.9")
    no_forward = Figure("same path, epsilon 1 (random actions: no network forward): rlkit's own overhead",
                        "steps/s", goal=">= 0.9")
    for seed in seeds:
        # raw: ALE's native vector env, random actions, the settings rlkit uses
        raw = AtariVectorEnv("pong", num_envs=n_envs, num_threads=env_threads, reward_clipping=False,
                             use_fire_reset=False)
        raw.reset(seed=seed)
        rng = np.random.default_rng(seed)
        actions = rng.integers(raw.single_action_space.n, size=(steps, n_envs))
        start = time.perf_counter()
        for t in range(steps):
            raw.step(actions[t])
        figure.reference.append(steps * n_envs / (time.perf_counter() - start))
        no_forward.reference.append(figure.reference[-1])
        raw.close()
        # rlkit: preprocessing wrapper + policy forward + replay write, as in train_online
        for fig, epsilon in ((figure, 0.01), (no_forward, 1.0)):
            envs = gym.make_vec("rlkit/Pong-v0", num_envs=n_envs, vectorization_mode="vector_entry_point",
                                num_threads=env_threads)
            agent = DQN(DQNConfig(eps_start=epsilon, eps_end=epsilon), envs.single_observation_space,
                        envs.single_action_space, seed=seed)
            buffer = ReplayBuffer.from_spaces(envs.single_observation_space, envs.single_action_space,
                                              capacity=n_envs * (steps + 8), num_envs=n_envs, frame_stack=4)
            collector = Collector(envs, seed)  # train_online's own collect step
            start = time.perf_counter()
            for _ in range(steps):
                step = collector.step(agent, explore=True)
                buffer.add(step.obs, step.actions, step.rewards, step.terminated | step.life_loss, step.truncated,
                           step.autoreset)
            fig.rlkit.append(steps * n_envs / (time.perf_counter() - start))
            envs.close()
        print(f"  seed {seed}: raw {figure.reference[-1]:.0f}, rlkit eps=0.01 {figure.rlkit[-1]:.0f}, "
              f"eps=1 {no_forward.rlkit[-1]:.0f} steps/s", flush=True)
    return [figure, no_forward]


NOTES = (
    "rlkit's collection path (ALE vector env + rlkit wrapper, Nature-CNN epsilon-greedy policy, "
    "replay writes) vs ALE's raw AtariVectorEnv stepping random actions, same envs and ALE threads. "
    "The policy network runs only for the envs that act greedily, so epsilon 1 measures the path "
    "without any forward pass."
)

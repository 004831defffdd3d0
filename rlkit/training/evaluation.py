"""Evaluation: whole episodes of an agent's evaluation policy on vector envs."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from rlkit.training.build import make_vector_env
from rlkit.training.collector import Collector
from rlkit.config import EnvConfig
from rlkit.runfiles.logger import mean_std

_EVALUATION_STREAM = 0xE7A1
"""Mixed into the evaluation seeds so they are unrelated to the training envs' (``seed + i``) as well."""


def evaluation_seed(run_seed: int, step: int) -> int:
    """The env seed of the evaluation after ``step`` env steps of the run seeded ``run_seed``.

    A vector env seeds its sub-env ``i`` with ``seed + i`` and each sub-env's later episodes follow from that, so
    seeds that differ by small offsets (the old ``run_seed + 100000 + step``) made runs of neighbouring seeds
    evaluate on largely the same episodes (7 of 8 sub-env streams shared between seeds 0 and 1), which hides the
    seed-to-seed spread. Hashing ``(run_seed, step)`` through numpy's ``SeedSequence`` gives every run and every
    evaluation its own episodes, and the same ones when the run is repeated or resumed. A 31-bit value: any
    env's ``reset(seed=...)`` accepts it.
    """
    entropy = [_EVALUATION_STREAM, int(run_seed) % 2**32, int(step)]
    return int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint32)[0] >> 1)


def evaluate(agent, env_cfg: EnvConfig, episodes: int, epsilon: float, seed: int,
             envs: gym.vector.VectorEnv | None = None, on_episode=None) -> dict[str, Any]:
    """Run ``episodes`` full episodes with the agent's evaluation policy (``explore=False``), mixed with
    uniform random actions with probability ``epsilon`` (0: none; Atari papers use 0.05).

    Returns ``return_mean``, ``return_std``, ``length_mean``, ``returns``, and for envs that report
    ``info["is_success"]`` (goal-conditioned tasks) ``success_rate``: the share of episodes whose last
    step reported success, and for envs that report ``info["goal_distance"]`` ``goal_distance_mean``: the
    mean distance to the goal at the episodes' last step (RIS's ``eval_distance``; it shows progress
    while the success rate is still 0), and for two-player games (``info["outcome"]``) ``win_rate``,
    ``draw_rate`` and ``loss_rate``.

    Each sub-env runs a fixed quota of episodes, so short episodes are not over-represented (a plain
    "first N episodes to finish" would favour them). A multi-agent game's rows (the env reports ``agent_id``;
    agent-major rows, ``row = agent * copies + copy``: rlkit.envs.multiagent) are counted by whole games: each
    copy plays ``ceil(episodes / rows)`` games (at least one) and every agent episode that ends in them counts, so
    every agent of every copy counts equally (more than ``episodes`` episodes where there are more rows) and an
    agent that never joins a game cannot hold the evaluation up. Spreading ``episodes`` over the first rows would
    count the first agents only. ``on_episode(done, episodes)`` is called after each
    counted episode (progress display).
    """
    own_envs = envs is None
    if envs is None:
        envs = make_vector_env(env_cfg, num_envs=min(episodes, 8))
    try:
        collector = Collector(envs, seed)
        n = envs.num_envs
        copy_of = _copies(collector.rows.get("agent_id"), n)  # [n] game copy of each row, None: single-agent
        if copy_of is not None:  # quota and counts per game copy; a copy's game ends on the step that resets it
            copies = int(copy_of.max()) + 1
            quota = np.full(copies, -(-episodes // n), dtype=np.int64)
        else:
            quota = np.array([episodes // n + (1 if e < episodes % n else 0) for e in range(n)])
        done_count = np.zeros(len(quota), dtype=np.int64)
        returns: list[float] = []
        lengths: list[int] = []
        successes: list[bool] = []
        distances: list[float] = []
        outcomes: list[int] = []
        while (done_count < quota).any():
            step = collector.step(agent, explore=False, epsilon=epsilon)
            success = step.infos.get("is_success") if isinstance(step.infos, dict) else None
            distance = step.infos.get("goal_distance") if isinstance(step.infos, dict) else None
            outcome = step.infos.get("outcome") if isinstance(step.infos, dict) else None
            for e, ret, length in step.episodes:
                if done_count[e if copy_of is None else copy_of[e]] < quota[e if copy_of is None else copy_of[e]]:
                    returns.append(ret)
                    lengths.append(length)
                    if success is not None and _has(step.infos, "is_success", e):
                        successes.append(bool(np.asarray(success)[e]))
                    if distance is not None and _has(step.infos, "goal_distance", e):
                        distances.append(float(np.asarray(distance)[e]))
                    if outcome is not None and _has(step.infos, "outcome", e):
                        outcomes.append(int(np.asarray(outcome)[e]))
                    if copy_of is None:
                        done_count[e] += 1
                    if on_episode is not None:
                        on_episode(len(returns), max(episodes, len(returns)))
            if copy_of is not None:  # a copy all of whose rows reset on this step has finished a game
                for c in range(len(quota)):
                    if step.autoreset[copy_of == c].all():
                        done_count[c] += 1
    finally:
        if own_envs:
            envs.close()
    mean, std = mean_std(returns)
    result = {"return_mean": mean, "return_std": std, "length_mean": float(np.mean(lengths)), "returns": returns}
    if successes:
        result["success_rate"] = float(np.mean(successes))
    if distances:
        result["goal_distance_mean"] = float(np.mean(distances))
    if outcomes:  # two-player games (info["outcome"]: 1 win, 0 draw, -1 loss)
        result.update({"win_rate": outcomes.count(1) / len(outcomes), "draw_rate": outcomes.count(0) / len(outcomes),
                       "loss_rate": outcomes.count(-1) / len(outcomes)})
    return result


def _copies(agent_id: np.ndarray | None, n: int) -> np.ndarray | None:
    """The game copy of each of ``n`` agent-major rows (``row = agent * copies + copy``), or None for envs without
    agent ids (or rows that do not tile into agents x copies)."""
    if agent_id is None:
        return None
    agents = int(np.max(agent_id)) + 1
    if n % agents or not np.array_equal(np.asarray(agent_id), np.repeat(np.arange(agents), n // agents)):
        return None
    return np.arange(n) % (n // agents)


def _has(infos: dict[str, Any], key: str, e: int) -> bool:
    """Whether sub-env ``e`` reported ``key`` on this step (gymnasium's vector infos carry a ``_key`` mask)."""
    mask = infos.get(f"_{key}")
    return True if mask is None else bool(np.asarray(mask)[e])

"""Hindsight experience replay as a sample-time hook on the transition replay buffer.

Andrychowicz et al. (2017), "Hindsight Experience Replay": a transition ``(s_t || g, a_t, r_t, s_{t+1} || g)``
that missed its goal ``g`` is also a transition that *reached* a goal the episode achieved later, so it is
replayed with that goal ``g'`` and the reward the env would have given for it, ``r' = compute_reward(
achieved(s_{t+1}), g', info)``. With sparse rewards this turns failures into learning signal.

In rlkit the relabelling happens at sample time (:class:`HindsightRelabeler`, the ReplayBuffer's
``sample_hook``): the buffer stores what the env returned, and each sampled batch gets a ``relabel_ratio``
share of its transitions relabelled. Each sub-env's stream is time-ordered, so "the same episode" is a
range of rows in the sampled transition's stream (:meth:`ReplayBuffer.episode_start_rows`,
:meth:`ReplayBuffer.episode_end_rows`): rows ``start .. end`` where ``end`` is the final-observation row of a
finished episode, or the newest row of the episode still running (so the unfinished episode relabels with
what it has achieved so far), and ``start`` its reset row (or the oldest row still stored after the ring
wrapped). Goal strategies, for a transition from row ``t`` (its next state is row ``t + 1``):

==========  ==================================================  ========================================
strategy    new goal: ``achieved_goal`` of a row drawn           SB3 ``HerReplayBuffer`` (finished
            uniformly from                                       episodes only: see below)
==========  ==================================================  ========================================
future      ``(t, end]``: the next state up to the last one      same for a finished episode (SB3:
                                                                 ``next_achieved_goal`` of a transition
                                                                 in ``[t, T)``)
final       ``{end}``: the episode's last (stored) state         same for a finished episode (the last
                                                                 ``next_achieved_goal``)
episode     ``[start, end]``: any stored state of the episode   SB3 leaves out the reset state ``s_0``
==========  ==================================================  ========================================

Which transitions are sampled: NOT the same as SB3. SB3's ``HerReplayBuffer`` samples a transition, real or
relabelled, only once its episode has ended (``ep_length > 0``), and drops an episode's remaining rows as
soon as the ring starts overwriting it. rlkit's replay samples every stored transition uniformly, the
running episode's included, and HER relabels those with the goals that episode has achieved so far
(``final`` = its newest state, ``future`` = up to it; a later sample of the same transition may get a goal
reached later). After the ring wraps, the rows left of a partly overwritten episode stay sampleable
(``episode`` then starts at the oldest stored row). The share of a batch that SB3 would not have sampled is
the running episode's share of the stored rows: on PointMaze U (one env, 300-step episodes, learning from
1,000 steps) 10% at the first update and 2.35% of all samples over a 20k-step run (counted). Sampling
finished episodes only, as SB3 (``scripts/study_her_finished_episodes.py``), on the same 5 seeds: mean success
over the ten evaluations 0.600 vs 0.586, at 20k 0.76 vs 0.79, per-seed differences within one evaluation's
noise (docs/benchmarks.md, "SAC + HER on PointMaze U: five fresh seeds"): no effect shown at that size.

Ratio: SB3 and the paper name a number of virtual goals per real one, ``n_sampled_goal = k``; the share of
relabelled samples is then ``relabel_ratio = k / (k + 1) = 1 - 1 / (k + 1)`` (k = 4 -> 0.8). rlkit relabels
exactly ``round(relabel_ratio * B)`` samples of a batch of ``B``, chosen at random (as SB3 relabels
``int(her_ratio * B)``); the others keep their stored goal and reward.

Rewards: ``compute_reward(achieved_goal, desired_goal, None)`` is called once per batch on arrays with a
leading batch axis, as gymnasium-robotics' GoalEnv specifies; an env whose reward needs the step's
``info`` is not supported (infos are not stored). With n-step returns (``train.replay.n_step = n``) the
stored reward sum is for the old goal, so it is recomputed for the whole window:
``sum_{i<k} gamma^i compute_reward(achieved(s_{t+i+1}), g')`` over the ``k <= n`` steps the buffer used.

Random replayed states (``replay_goal_fraction``): a share of the relabelled samples takes instead the
achieved goal of a stored state drawn uniformly from the whole buffer (any episode, any sub-env), as RIS's
reference buffer does (``fraction_resampled_goals_are_replay_buffer_goals=0.5``: of its 80% relabelled
goals, half future states, half replayed states). Such goals teach the value of far-apart state pairs that
no single episode connects, which is what RIS's subgoal search asks the critic about.

Terminations: an env with a batched ``compute_terminated(achieved_goal, desired_goal, info)`` (gymnasium-
robotics' GoalEnv API; rlkit's goal envs return ``terminate_on_success and distance < radius`` per row) has
them recomputed for the relabelled samples: the transition whose next state reaches the new goal is terminal
(discount 0), one that only reached the old goal is not (it bootstraps from the stored next state, which is
a real state), and a stored termination the old goal did not cause (``compute_terminated`` of the old goal
says no: a fall, a lost life) stays one. With n-step windows the sum stops at the first step that reaches
the new goal. Without it (``train.replay.her.recompute_terminated: false``, or an env whose
``compute_terminated`` is missing or answers one bool for a whole batch, as gymnasium-robotics' own ids do)
the stored discounts (0 after a termination) are kept, as SB3 keeps its stored ``dones``: fine for envs that
do not terminate on success (``rlkit/PointGoal-v0``, Fetch, the mazes with ``terminate_on_success=False``),
wrong for those that do.

Randomness comes only from the buffer's generator (``ctx.generator``), which the buffer saves in its
``state_dict``: seeded runs and resumed runs relabel identically. Everything is vectorized over the batch;
the only Python loops walk episode boundaries (inside the buffer) and n-step window positions.

=====================  ==============================  ========================================================
rlkit                  SB3 ``HerReplayBuffer``         RIS reference ``HERReplayBuffer``
=====================  ==============================  ========================================================
relabel_ratio 0.8      n_sampled_goal 4                fraction_goals_are_rollout_goals 0.2
replay_goal_fraction   (none)                          fraction_resampled_goals_are_replay_buffer_goals 0.5
recomputed terminals   stored dones kept               terminal recomputed from the new goal (``train_ant.py``)
=====================  ==============================  ========================================================
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch

from rlkit.errors import ConfigError
from rlkit.experience.replay import ReplayBuffer, SampleContext, Transitions

__all__ = ["HindsightRelabeler", "env_compute_reward", "env_compute_terminated", "check_goal_space"]

Strategy = Literal["future", "final", "episode"]


class HindsightRelabeler:
    """``sample_hook`` that relabels goals: ``relabeler(batch, ctx) -> batch`` (see the module docstring).

    Args:
        compute_reward: the env's ``compute_reward(achieved_goal, desired_goal, info)``, vectorized over a
            leading batch axis (numpy in, numpy out).
        strategy: ``future``, ``final`` or ``episode``.
        relabel_ratio: share of each batch relabelled, in [0, 1] (SB3's ``n_sampled_goal = k`` is
            ``k / (k + 1)``).
        achieved_key, desired_key: the Dict observation keys of the achieved and the desired goal.
        replay_goal_fraction: share of the relabelled samples whose new goal comes from a stored state
            drawn uniformly from the whole buffer instead of the strategy (RIS's reference: 0.5).
        compute_terminated: the env's ``compute_terminated(achieved_goal, desired_goal, info)``, vectorized;
            given, the relabelled samples' discounts are recomputed (module docstring), else kept.
    """

    def __init__(self, compute_reward: Callable[..., Any], strategy: Strategy = "future", relabel_ratio: float = 0.8,
                 achieved_key: str = "achieved_goal", desired_key: str = "desired_goal",
                 replay_goal_fraction: float = 0.0, compute_terminated: Callable[..., Any] | None = None) -> None:
        if strategy not in ("future", "final", "episode"):
            raise ValueError(f"strategy must be 'future', 'final' or 'episode', got {strategy!r}")
        if not 0.0 <= relabel_ratio <= 1.0:
            raise ValueError(f"relabel_ratio must lie in [0, 1], got {relabel_ratio}")
        if not 0.0 <= replay_goal_fraction <= 1.0:
            raise ValueError(f"replay_goal_fraction must lie in [0, 1], got {replay_goal_fraction}")
        self.compute_reward, self.compute_terminated = compute_reward, compute_terminated
        self.strategy, self.relabel_ratio = strategy, float(relabel_ratio)
        self.replay_goal_fraction = float(replay_goal_fraction)
        self.achieved_key, self.desired_key = achieved_key, desired_key

    def __call__(self, batch: Transitions, ctx: SampleContext) -> Transitions:
        buffer, g = ctx.buffer, ctx.generator
        batch_size = len(ctx.rows)
        count = int(round(self.relabel_ratio * batch_size))
        if count == 0:
            return batch
        picked = torch.randperm(batch_size, generator=g)[:count]               # [M] which samples
        rows, envs = ctx.rows[picked], ctx.envs[picked]
        goal_rows = self.goal_rows(buffer, rows, envs, g)                       # [M]
        goal_envs = envs
        replayed = int(round(self.replay_goal_fraction * count))
        if replayed:  # the first `replayed` of the (randomly ordered) picked samples: any stored state
            goal_rows, goal_envs = goal_rows.clone(), envs.clone()
            goal_rows[:replayed], goal_envs[:replayed] = self.replayed_rows(buffer, replayed, g)
        goals = buffer.stored(self.achieved_key, goal_rows, goal_envs)          # [M, *goal_shape]
        goals = goals.to(batch.obs[self.desired_key].dtype)
        steps = (ctx.next_rows[picked] - rows) % buffer.rows_per_env            # [M] k of each n-step window
        rewards, discounts = self.window_rewards(buffer, rows, envs, steps, goals)  # [M], [M] or None

        device_picked = picked.to(buffer.device)
        obs, next_obs = dict(batch.obs), dict(batch.next_obs)
        obs[self.desired_key] = obs[self.desired_key].index_put((device_picked,), goals)
        next_obs[self.desired_key] = next_obs[self.desired_key].index_put((device_picked,), goals)
        new_rewards = batch.rewards.index_put((device_picked,), rewards.to(buffer.device))
        new_discounts = batch.discounts
        if discounts is not None:
            # a stored termination that the old goal did not cause (a fall, a life lost) stays a termination
            stored = batch.discounts[device_picked].cpu()
            end_achieved = buffer.stored(self.achieved_key, ctx.next_rows[picked], envs).detach().cpu().numpy()
            old_goals = batch.obs[self.desired_key][device_picked].detach().cpu().numpy()
            by_goal = torch.from_numpy(np.asarray(self.compute_terminated(end_achieved, old_goals, None), dtype=bool))
            discounts = torch.where((stored == 0) & ~by_goal, 0.0, discounts)
            new_discounts = new_discounts.index_put((device_picked,), discounts.to(buffer.device))
        return dataclasses.replace(batch, obs=obs, next_obs=next_obs, rewards=new_rewards, discounts=new_discounts)

    @staticmethod
    def replayed_rows(buffer: ReplayBuffer, count: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``count`` (row, env) pairs drawn uniformly over every stored row of every sub-env (CPU int64):
        each written row holds a real observation (a reset, a mid-episode or a final state)."""
        offsets = torch.randint(0, buffer.rows_stored, (count,), generator=generator)
        envs = torch.randint(0, buffer.num_envs, (count,), generator=generator)
        return (buffer.oldest_row + offsets) % buffer.rows_per_env, envs

    def goal_rows(self, buffer: ReplayBuffer, rows: torch.Tensor, envs: torch.Tensor,
                  generator: torch.Generator) -> torch.Tensor:
        """Rows (CPU int64 ``[M]``) whose achieved goals become the new goals, per the strategy."""
        R = buffer.rows_per_env
        end = buffer.episode_end_rows(rows, envs)
        if self.strategy == "final":
            return end
        if self.strategy == "future":  # uniform over (t, end]: 1 .. (end - t) rows ahead
            first, span = (rows + 1) % R, (end - rows) % R
        else:  # episode: uniform over [start, end]
            first = buffer.episode_start_rows(rows, envs)
            span = (end - first) % R + 1
        u = torch.rand(len(rows), generator=generator, dtype=torch.float64)
        offsets = torch.minimum((u * span).long(), span - 1)
        return (first + offsets) % R

    def window_rewards(self, buffer: ReplayBuffer, rows: torch.Tensor, envs: torch.Tensor, steps: torch.Tensor,
                       goals: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``sum_{i<k} gamma^i compute_reward(achieved(row t+i+1), goal)`` per sample (CPU float32 ``[M]``):
        the n-step reward sum for the new goal over the same ``k`` steps the buffer summed (``k = 1``: the
        one-step reward). With ``compute_terminated`` also the discounts (CPU float32 ``[M]``, else None):
        0 where a step ``i < k`` reaches the new goal (the sum then stops after that step), else
        ``gamma^k``."""
        R, n = buffer.rows_per_env, int(steps.max())
        ahead = (rows[None, :] + torch.arange(1, n + 1)[:, None]) % R                    # [n, M]
        achieved = buffer.stored(self.achieved_key, ahead.flatten(), envs.repeat(n))    # [n*M, *goal_shape]
        goals_np = goals.detach().cpu().numpy()
        tiled = np.broadcast_to(goals_np[None], (n, *goals_np.shape)).reshape(n * len(rows), *goals_np.shape[1:])
        rewards = np.asarray(self.compute_reward(achieved.detach().cpu().numpy(), tiled, None), dtype=np.float32)
        if rewards.shape != (n * len(rows),):
            raise ValueError(f"compute_reward returned shape {rewards.shape} for {n * len(rows)} goals: it must be "
                             "vectorized over a leading batch axis (gymnasium-robotics' GoalEnv convention)")
        rewards = torch.from_numpy(rewards).view(n, len(rows))
        position = torch.arange(n)[:, None]
        inside = position < steps[None, :]                                              # [n, M]: i < k
        powers = buffer.gamma_powers[:n, None]                                          # [n, 1] gamma^i
        if self.compute_terminated is None:
            return torch.where(inside, powers * rewards, 0.0).sum(dim=0), None
        terminated = np.asarray(self.compute_terminated(achieved.detach().cpu().numpy(), tiled, None), dtype=bool)
        if terminated.shape != (n * len(rows),):
            raise ValueError(f"compute_terminated returned shape {terminated.shape} for {n * len(rows)} goals: it "
                             "must be vectorized over a leading batch axis")
        terminated = torch.from_numpy(terminated).view(n, len(rows)) & inside
        ended = terminated.any(dim=0)                                                   # [M]
        last = torch.where(ended, terminated.to(torch.uint8).argmax(dim=0), steps - 1)  # [M] last step summed
        summed = torch.where(position <= last[None, :], powers * rewards, 0.0).sum(dim=0)
        discounts = torch.where(ended, 0.0, buffer.gamma_powers[steps])
        return summed, discounts


# --------------------------------------------------------------------------------------
# Building the hook for a run (rlkit.training.build.build_replay)
# --------------------------------------------------------------------------------------


def env_compute_reward(envs: Any) -> Callable[..., Any] | None:
    """The ``compute_reward`` of a vector env's first sub-env (all sub-envs share their reward settings),
    or None if it has none or its sub-envs are out of reach (only the sync vector env exposes them). A batched
    vector env with no sub-envs (the warp backend) answers with its own batched ``compute_reward``."""
    if callable(getattr(envs, "compute_reward", None)):
        return envs.compute_reward
    sub_envs = getattr(envs, "envs", None)
    if not sub_envs:
        return None
    return getattr(sub_envs[0].unwrapped, "compute_reward", None)


def env_compute_terminated(envs: Any) -> Callable[..., Any] | None:
    """The ``compute_terminated`` of a vector env's first sub-env (GoalEnv API), or the vector env's own, or None."""
    if callable(getattr(envs, "compute_terminated", None)):
        return envs.compute_terminated
    sub_envs = getattr(envs, "envs", None)
    if not sub_envs:
        return None
    return getattr(sub_envs[0].unwrapped, "compute_terminated", None)


def is_batched(compute_terminated: Callable[..., Any] | None, goal_shape: tuple[int, ...]) -> bool:
    """Whether ``compute_terminated`` answers one bool per row of a batch of goals (rlkit's goal envs do;
    gymnasium-robotics' own envs answer one bool for the whole batch)."""
    if compute_terminated is None:
        return False
    probe = np.zeros((2, *goal_shape), np.float32)
    try:
        return np.asarray(compute_terminated(probe, probe, None)).shape == (2,)
    except Exception:  # noqa: BLE001 (any failure means: not usable on batches)
        return False


def check_goal_space(observation_space: gym.Space, achieved_key: str, desired_key: str) -> None:
    """A one-line :class:`ConfigError` unless the observations are a Dict holding both goal keys with the
    same shape."""
    if not isinstance(observation_space, gym.spaces.Dict):
        raise ConfigError(f"train.replay.her needs Dict observations with '{achieved_key}' and '{desired_key}' "
                          f"(a goal env), but the env's observation space is {observation_space}; remove "
                          "train.replay.her")
    missing = [k for k in (achieved_key, desired_key) if k not in observation_space.spaces]
    if missing:
        raise ConfigError(f"train.replay.her: the observations have no key {missing[0]!r} (they have "
                          f"{sorted(observation_space.spaces)}); set train.replay.her.achieved_key / desired_key")
    shapes = {k: observation_space[k].shape for k in (achieved_key, desired_key)}
    if shapes[achieved_key] != shapes[desired_key]:
        raise ConfigError(f"train.replay.her: '{achieved_key}' has shape {shapes[achieved_key]} but '{desired_key}' "
                          f"{shapes[desired_key]}; a relabelled goal must fit the desired goal")


def build_relabeler(her_cfg: Any, observation_space: gym.Space, compute_reward: Callable[..., Any] | None,
                    compute_terminated: Callable[..., Any] | None = None) -> HindsightRelabeler:
    """The hook for ``train.replay.her`` (a :class:`rlkit.config.HERConfig`); one-line ConfigErrors for an env
    that is not a goal env."""
    check_goal_space(observation_space, her_cfg.achieved_key, her_cfg.desired_key)
    if compute_reward is None:
        raise ConfigError("train.replay.her recomputes rewards with the env's compute_reward(achieved_goal, "
                          "desired_goal, info), but this env has none (or it is out of reach: use "
                          "env.vectorization sync); remove train.replay.her or use a goal env")
    batched = is_batched(compute_terminated, observation_space[her_cfg.achieved_key].shape)
    if her_cfg.recompute_terminated and not batched:
        raise ConfigError("train.replay.her.recompute_terminated: true needs the env's compute_terminated(achieved_goal, "
                          "desired_goal, info) answering one bool per row of a batch, which this env "
                          + ("does not have" if compute_terminated is None else "does not do")
                          + "; set it to null (auto) or false")
    use = batched and her_cfg.recompute_terminated is not False
    return HindsightRelabeler(compute_reward, her_cfg.strategy, her_cfg.relabel_ratio,
                              her_cfg.achieved_key, her_cfg.desired_key, her_cfg.replay_goal_fraction,
                              compute_terminated if use else None)

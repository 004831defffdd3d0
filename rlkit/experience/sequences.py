"""Fixed-length sequences with padding and masks: the experience of the Decision Transformer (Chen et al.
2021), of CPC-style auxiliary losses over time (van den Oord et al. 2018) and of recurrent policies.

Storage is by whole episodes: the online loop's steps (NEXT_STEP autoreset convention, as in
rlkit.experience.replay) are kept per sub-env until the episode ends, then appended to one flat store; an offline
dataset fills the store directly (:meth:`SequenceBuffer.from_episodes`). Only finished episodes are
sampled, so returns-to-go are exact. When the store is full the oldest episodes are dropped.

Sampling follows the Decision Transformer's reference code (``gym/experiment.py``): a start step is
drawn uniformly over all stored steps (episodes weighted by length), the window holds the next ``L``
steps of that episode or fewer at its end, and short windows are padded on the left, so the newest
real step always sits at position ``L - 1`` — the position an agent acts from. ``mask`` is False on
padding; padded entries hold zeros.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch

__all__ = ["Sequences", "SequenceBuffer"]


@dataclass(frozen=True)
class Sequences:
    """A batch of ``B`` windows of ``L`` steps (all tensors on the buffer's device).

    Attributes:
        obs: ``[B, L, *obs_shape]`` (or a dict of such) observations.
        actions: ``[B, L, *action_shape]`` actions taken from ``obs``.
        rewards: ``[B, L]`` float32 rewards of those steps.
        returns_to_go: ``[B, L]`` float32 ``sum_{t' >= t} gamma^(t'-t) r_t'`` to the episode's end
            (``gamma`` = 1 by default: the Decision Transformer's undiscounted return-to-go).
        timesteps: ``[B, L]`` int64 step index within the episode.
        terminated: ``[B, L]`` bool, True on an episode's terminal step.
        mask: ``[B, L]`` bool, False on left padding.
    """

    obs: torch.Tensor | dict[str, torch.Tensor]
    actions: torch.Tensor
    rewards: torch.Tensor
    returns_to_go: torch.Tensor
    timesteps: torch.Tensor
    terminated: torch.Tensor
    mask: torch.Tensor


class SequenceBuffer:
    """Finished episodes in flat arrays; samples left-padded windows of ``length`` steps."""

    def __init__(self, observation_space: gym.Space, action_space: gym.Space, capacity: int, length: int,
                 num_envs: int = 1, gamma: float = 1.0, device: str | torch.device = "cpu", seed: int = 0) -> None:
        if length < 1:
            raise ValueError(f"sequence length must be >= 1, got {length}")
        if capacity < length:
            raise ValueError(f"capacity ({capacity}) must be >= the sequence length ({length})")
        self.is_dict = isinstance(observation_space, gym.spaces.Dict)
        spaces = dict(observation_space.spaces) if self.is_dict else {"": observation_space}
        self.capacity, self.length, self.num_envs = int(capacity), int(length), int(num_envs)
        self.gamma = float(gamma)
        self.device = torch.device(device)
        self._obs = {k: np.zeros((capacity, *s.shape), dtype=s.dtype) for k, s in spaces.items()}
        discrete = isinstance(action_space, gym.spaces.Discrete)
        self.action_shape = () if discrete else tuple(action_space.shape)
        self._actions = np.zeros((capacity, *self.action_shape), dtype=np.int64 if discrete else np.float32)
        self._rewards = np.zeros(capacity, dtype=np.float32)
        self._rtg = np.zeros(capacity, dtype=np.float32)
        self._timesteps = np.zeros(capacity, dtype=np.int64)
        self._terminated = np.zeros(capacity, dtype=bool)
        self._episode_end = np.zeros(capacity, dtype=np.int64)  # exclusive end row of each row's episode
        self._size = 0
        self._episode_lengths: list[int] = []  # stored episodes, oldest first
        self._open: list[list[tuple[Any, Any, float, bool]]] = [[] for _ in range(num_envs)]
        self._generator = torch.Generator().manual_seed(seed)

    @classmethod
    def from_episodes(cls, episodes, observation_space: gym.Space, action_space: gym.Space, length: int,
                      gamma: float = 1.0, device: str | torch.device = "cpu", seed: int = 0) -> "SequenceBuffer":
        """A buffer holding exactly ``episodes`` (objects with ``observations`` ``[T+1, ...]``, ``actions``,
        ``rewards``, ``terminations`` arrays; rlkit.experience.datasets' episodes)."""
        total = sum(len(e.actions) for e in episodes)
        buffer = cls(observation_space, action_space, capacity=max(total, length), length=length, gamma=gamma,
                     device=device, seed=seed)
        for episode in episodes:
            steps = len(episode.actions)
            obs = episode.observations
            obs = {k: np.asarray(v[:steps]) for k, v in obs.items()} if isinstance(obs, Mapping) else np.asarray(obs[:steps])
            buffer._append_episode(obs, np.asarray(episode.actions), np.asarray(episode.rewards, dtype=np.float32),
                                   np.asarray(episode.terminations, dtype=bool))
        return buffer

    # ------------------------------------------------------------------ writing
    def add(self, obs: Any, actions: Any, rewards: Any, terminated: Any, truncated: Any, autoreset: Any) -> None:
        """One vector step (the online loop's call). Autoreset rows are not transitions: skipped."""
        actions, rewards = np.asarray(actions), np.asarray(rewards, dtype=np.float32)
        terminated, truncated, autoreset = (np.asarray(x, dtype=bool) for x in (terminated, truncated, autoreset))
        for e in range(self.num_envs):
            if autoreset[e]:
                continue
            step_obs = {k: np.asarray(v[e]) for k, v in obs.items()} if self.is_dict else np.asarray(obs[e])
            self._open[e].append((step_obs, actions[e], float(rewards[e]), bool(terminated[e])))
            if terminated[e] or truncated[e]:
                steps = self._open[e]
                self._open[e] = []
                if self.is_dict:
                    ep_obs = {k: np.stack([s[0][k] for s in steps]) for k in self._obs}
                else:
                    ep_obs = np.stack([s[0] for s in steps])
                self._append_episode(ep_obs, np.stack([s[1] for s in steps]),
                                     np.array([s[2] for s in steps], dtype=np.float32),
                                     np.array([s[3] for s in steps], dtype=bool))

    def _append_episode(self, obs: Any, actions: np.ndarray, rewards: np.ndarray, terminated: np.ndarray) -> None:
        steps = len(actions)
        if steps == 0:
            return
        cut = 0
        if steps > self.capacity:  # keep the episode's last `capacity` steps (with their true step indices)
            cut = steps - self.capacity
            obs = {k: v[cut:] for k, v in obs.items()} if self.is_dict else obs[cut:]
            actions, rewards, terminated, steps = actions[cut:], rewards[cut:], terminated[cut:], self.capacity
        self._make_room(steps)
        start, end = self._size, self._size + steps
        for key, store in self._obs.items():
            store[start:end] = obs[key] if self.is_dict else obs
        self._actions[start:end] = actions.reshape(steps, *self.action_shape)
        self._rewards[start:end] = rewards
        self._terminated[start:end] = terminated
        self._timesteps[start:end] = cut + np.arange(steps)
        rtg = np.zeros(steps, dtype=np.float64)
        running = 0.0
        for t in range(steps - 1, -1, -1):
            running = rewards[t] + self.gamma * running
            rtg[t] = running
        self._rtg[start:end] = rtg
        self._episode_end[start:end] = end
        self._size = end
        self._episode_lengths.append(steps)

    def _make_room(self, steps: int) -> None:
        """Drop the oldest episodes until ``steps`` more rows fit (one compaction for all of them)."""
        if self._size + steps <= self.capacity:
            return
        drop, dropped_rows = 0, 0
        while self._size - dropped_rows + steps > self.capacity:
            dropped_rows += self._episode_lengths[drop]
            drop += 1
        self._episode_lengths = self._episode_lengths[drop:]
        keep = slice(dropped_rows, self._size)
        kept = self._size - dropped_rows
        for array in (*self._obs.values(), self._actions, self._rewards, self._rtg, self._timesteps, self._terminated,
                      self._episode_end):
            array[:kept] = array[keep].copy()
        self._episode_end[:kept] -= dropped_rows
        self._size = kept

    # ------------------------------------------------------------------ sampling
    def __len__(self) -> int:
        return self._size

    def num_sampleable(self) -> int:
        return self._size

    def sample(self, batch_size: int, **_: Any) -> Sequences:
        if self._size == 0:
            raise RuntimeError("nothing to sample yet: no episode has finished")
        L = self.length
        starts = torch.randint(0, self._size, (batch_size,), generator=self._generator).numpy()
        lengths = np.minimum(L, self._episode_end[starts] - starts)                 # [B] real steps
        offsets = np.arange(L)[None, :] - (L - lengths)[:, None]                   # [B, L] (< 0: padding)
        mask = offsets >= 0
        rows = starts[:, None] + np.where(mask, offsets, 0)                         # [B, L]

        def take(array: np.ndarray) -> torch.Tensor:
            picked = array[rows]
            picked[~mask] = 0
            return torch.from_numpy(picked).to(self.device, non_blocking=True)

        obs = {k: take(v) for k, v in self._obs.items()}
        return Sequences(obs=obs if self.is_dict else obs[""], actions=take(self._actions),
                         rewards=take(self._rewards), returns_to_go=take(self._rtg), timesteps=take(self._timesteps),
                         terminated=take(self._terminated), mask=torch.from_numpy(mask).to(self.device))

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        n = self._size
        state: dict[str, Any] = {f"obs.{k}" if k else "obs": torch.from_numpy(v[:n].copy()) for k, v in self._obs.items()}
        state.update(size=n, episode_lengths=torch.tensor(self._episode_lengths, dtype=torch.int64),
                     actions=torch.from_numpy(self._actions[:n].copy()), rewards=torch.from_numpy(self._rewards[:n].copy()),
                     rtg=torch.from_numpy(self._rtg[:n].copy()), timesteps=torch.from_numpy(self._timesteps[:n].copy()),
                     terminated=torch.from_numpy(self._terminated[:n].copy()),
                     episode_end=torch.from_numpy(self._episode_end[:n].copy()),
                     rng_state=self._generator.get_state(), open_episodes=self._open_state())
        return state

    def _open_state(self) -> list[dict[str, Any]]:
        """In-progress episodes per sub-env, as tensors (no pickled objects)."""
        out = []
        for steps in self._open:
            if not steps:
                out.append({})
                continue
            if self.is_dict:
                obs = {f"obs.{k}": torch.from_numpy(np.stack([s[0][k] for s in steps])) for k in self._obs}
            else:
                obs = {"obs": torch.from_numpy(np.stack([s[0] for s in steps]))}
            out.append({**obs, "actions": torch.from_numpy(np.stack([s[1] for s in steps])),
                        "rewards": torch.tensor([s[2] for s in steps]), "terminated": torch.tensor([s[3] for s in steps])})
        return out

    def load_state_dict(self, state: dict[str, Any]) -> None:
        n = int(state["size"])
        if n > self.capacity:
            raise ValueError(f"sequence state holds {n} steps, this buffer's capacity is {self.capacity}")
        for key, store in self._obs.items():
            store[:n] = state[f"obs.{key}" if key else "obs"].numpy()
        for name, array in (("actions", self._actions), ("rewards", self._rewards), ("rtg", self._rtg),
                            ("timesteps", self._timesteps), ("terminated", self._terminated),
                            ("episode_end", self._episode_end)):
            array[:n] = state[name].numpy()
        self._size = n
        self._episode_lengths = [int(x) for x in state["episode_lengths"].tolist()]
        self._generator.set_state(state["rng_state"])
        self._open = [[] for _ in range(self.num_envs)]
        for e, saved in enumerate(state["open_episodes"][: self.num_envs]):
            if not saved:
                continue
            count = len(saved["actions"])
            for t in range(count):
                obs = ({k: saved[f"obs.{k}"][t].numpy() for k in self._obs} if self.is_dict else saved["obs"][t].numpy())
                self._open[e].append((obs, saved["actions"][t].numpy(), float(saved["rewards"][t]),
                                      bool(saved["terminated"][t])))

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

Frame stacks are rebuilt, not stored (as rlkit.experience.replay does): with ``frame_stack = S > 1`` an
observation shaped ``(S, ...)`` (a Box, or a Dict's uint8 ``(S, H, W)`` image keys) keeps only its newest frame
per step, and each window step's stack is rebuilt at sample time from the frames of the ``S - 1`` steps before
it in the same episode, the episode's first frame standing in for those before its start (what the Atari
wrappers do at reset). Observations that are not such stacks are refused when stored (a ValueError naming
the step), so a rebuilt stack is always the stored one, bit for bit. A 1M-step Pong dataset takes ~7 GB of
buffer, not 28 (docs/datasets.md, "In memory"). One exception: an episode longer than the whole capacity keeps its
last ``capacity`` steps, and the stacks of the first ``S - 1`` of them pad with the first kept frame.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch

__all__ = ["Sequences", "SequenceBuffer", "StackedFrames"]


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


def _stacked_keys(spaces: dict[str, gym.Space], frame_stack: int, is_dict: bool) -> set[str]:
    """The keys stored one frame per step (rlkit.experience.replay's rule): with ``frame_stack > 1``, a Box
    observation shaped ``(S, ...)``, or a Dict's uint8 image keys shaped ``(S, H, W)``."""
    return {k for k, s in spaces.items()
            if frame_stack > 1 and s.shape is not None and len(s.shape) >= 2 and s.shape[0] == frame_stack
            and (not is_dict or (len(s.shape) == 3 and np.dtype(s.dtype) == np.uint8))}


def _stack_mismatch(stacks: np.ndarray, history: np.ndarray | None = None, chunk: int = 1024) -> int | None:
    """The first step whose stack is not the newest frames of the steps up to it (``history``: the frames
    before ``stacks[0]``, oldest first; None or empty: ``stacks[0]`` starts an episode, so its older frames
    must all be its newest one), or None when every stack is. Compared in chunks of steps (bounded temporaries)."""
    S = stacks.shape[1]
    if len(stacks) == 0:
        return None
    if history is None or len(history) == 0:
        expected = np.broadcast_to(stacks[0, -1], stacks[0, :-1].shape)
    else:
        expected = np.concatenate([np.repeat(history[:1], S, axis=0), history])[-(S - 1):]
    if not np.array_equal(stacks[0, :-1], expected):
        return 0
    for lo in range(1, len(stacks), chunk):  # each stack = the previous one shifted by one frame
        hi = min(lo + chunk, len(stacks))
        same = (stacks[lo:hi, :-1] == stacks[lo - 1:hi - 1, 1:]).reshape(hi - lo, -1).all(axis=1)
        if not same.all():
            return lo + int(np.argmin(same))
    return None


def _stack_error(step: int, where: str, frame_stack: int) -> ValueError:
    return ValueError(f"{where}: the observation of step {step} is not a stack of the newest {frame_stack} frames "
                      "(oldest first, the episode's first frame repeated before its start, as the Atari wrappers "
                      "stack them), so it cannot be stored as one frame; use frame_stack 1 for such data")


class StackedFrames:
    """A read-only ``[T, S, *frame]`` array of frame stacks rebuilt on indexing from ``T`` newest frames (the
    frames before the first are the first), optionally followed by one more, ``final``: how an episode's
    stacked observations stay readable (``obs[a:b]``, ``np.asarray(obs)``) without holding the stacks."""

    def __init__(self, frames: np.ndarray, stack: int, final: np.ndarray | None = None) -> None:
        self.frames, self.stack, self.final = frames, int(stack), final
        self.shape = (len(frames) + (final is not None), self.stack, *frames.shape[1:])
        self.dtype, self.ndim = frames.dtype, len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index: Any) -> np.ndarray:
        index = index if isinstance(index, tuple) else (index,)
        steps = np.arange(len(self))[index[0]]
        rows = np.maximum(np.asarray(steps)[..., None] + np.arange(1 - self.stack, 1), 0)  # [..., S] frame rows
        picked = self.frames[np.minimum(rows, len(self.frames) - 1)]
        if self.final is not None:
            picked[rows == len(self.frames)] = self.final
        return picked[(slice(None),) * np.ndim(steps) + index[1:]] if len(index) > 1 else picked

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self[:]
        return out if dtype is None else out.astype(dtype, copy=False)


class SequenceBuffer:
    """Finished episodes in flat arrays; samples left-padded windows of ``length`` steps (frame stacks stored
    once per step with ``frame_stack > 1``)."""

    def __init__(self, observation_space: gym.Space, action_space: gym.Space, capacity: int, length: int,
                 num_envs: int = 1, gamma: float = 1.0, device: str | torch.device = "cpu", seed: int = 0,
                 frame_stack: int = 1) -> None:
        if length < 1:
            raise ValueError(f"sequence length must be >= 1, got {length}")
        if capacity < length:
            raise ValueError(f"capacity ({capacity}) must be >= the sequence length ({length})")
        self.is_dict = isinstance(observation_space, gym.spaces.Dict)
        spaces = dict(observation_space.spaces) if self.is_dict else {"": observation_space}
        self.capacity, self.length, self.num_envs = int(capacity), int(length), int(num_envs)
        self.gamma = float(gamma)
        self.device = torch.device(device)
        if frame_stack < 1:
            raise ValueError(f"frame_stack must be >= 1, got {frame_stack}")
        self.frame_stack = int(frame_stack)
        self._stacked = _stacked_keys(spaces, self.frame_stack, self.is_dict)
        if self.frame_stack > 1 and not self._stacked:
            raise ValueError(f"frame_stack={frame_stack} needs observations shaped (frame_stack, ...) with the stack "
                             f"first, got {observation_space}")
        self._obs = {k: np.zeros((capacity, *(s.shape[1:] if k in self._stacked else s.shape)), dtype=s.dtype)
                     for k, s in spaces.items()}
        discrete = isinstance(action_space, gym.spaces.Discrete)
        self.action_shape = () if discrete else tuple(action_space.shape)
        self._actions = np.zeros((capacity, *self.action_shape), dtype=np.int64 if discrete else np.float32)
        self._rewards = np.zeros(capacity, dtype=np.float32)
        self._rtg = np.zeros(capacity, dtype=np.float32)
        self._timesteps = np.zeros(capacity, dtype=np.int64)
        self._terminated = np.zeros(capacity, dtype=bool)
        self._episode_end = np.zeros(capacity, dtype=np.int64)  # exclusive end row of each row's episode
        self._episode_start = np.zeros(capacity, dtype=np.int64)  # its first row (frame stacks pad from it)
        self._size = 0
        self._episode_lengths: list[int] = []  # stored episodes, oldest first
        self._open: list[list[tuple[Any, Any, float, bool]]] = [[] for _ in range(num_envs)]
        self._generator = torch.Generator().manual_seed(seed)

    @classmethod
    def from_episodes(cls, episodes, observation_space: gym.Space, action_space: gym.Space, length: int,
                      gamma: float = 1.0, device: str | torch.device = "cpu", seed: int = 0,
                      frame_stack: int = 1) -> "SequenceBuffer":
        """A buffer holding exactly ``episodes`` (objects with ``observations`` ``[T+1, ...]``, ``actions``,
        ``rewards``, ``terminations`` arrays; rlkit.experience.datasets' episodes), written one episode at a
        time from views of their arrays (no second copy of the data besides the buffer; with frame stacks,
        the buffer holds each step's newest frame only, checked against its stack)."""
        total = sum(len(e.actions) for e in episodes)
        buffer = cls(observation_space, action_space, capacity=max(total, length), length=length, gamma=gamma,
                     device=device, seed=seed, frame_stack=frame_stack)
        for i, episode in enumerate(episodes):
            steps = len(episode.actions)
            obs = episode.observations
            obs = {k: v[:steps] for k, v in obs.items()} if isinstance(obs, Mapping) else {"": obs[:steps]}
            buffer._append_episode(buffer._newest_frames(obs, where=f"episode {i}"), np.asarray(episode.actions),
                                   np.asarray(episode.rewards, dtype=np.float32),
                                   np.asarray(episode.terminations, dtype=bool))
        return buffer

    def _newest_frames(self, obs: dict[str, Any], where: str, history: dict[str, np.ndarray] | None = None,
                       first_step: int = 0) -> dict[str, np.ndarray]:
        """Observations ``[T, ...]`` by key -> what is stored: the newest frame of each stacked key, after checking
        the stacks are exactly what those frames rebuild (``history``: the frames of the episode's last steps
        before these, which start at its step ``first_step``)."""
        out = {}
        for key, value in obs.items():
            value = np.asarray(value)
            if key in self._stacked:
                bad = _stack_mismatch(value, None if history is None else history[key])
                if bad is not None:
                    raise _stack_error(first_step + bad, where + (f", key '{key}'" if key else ""), self.frame_stack)
                value = value[:, -1]
            out[key] = value
        return out

    def _stacks(self, key: str, rows: np.ndarray) -> np.ndarray:
        """The frame stacks ``[*rows.shape, S, ...]`` of stored ``rows``, rebuilt from their episodes' frames."""
        frame_rows = np.maximum(rows[..., None] + np.arange(1 - self.frame_stack, 1),
                                self._episode_start[rows][..., None])
        return self._obs[key][frame_rows]

    # ------------------------------------------------------------------ writing
    def add(self, obs: Any, actions: Any, rewards: Any, terminated: Any, truncated: Any, autoreset: Any,
            agent_id: Any = None) -> None:
        """One vector step (the online loop's call). Autoreset rows are not transitions: skipped. Each env row
        is its own stream of windows, so a multi-agent row's ``agent_id`` (fixed per row) needs no storing."""
        actions, rewards = np.asarray(actions), np.asarray(rewards, dtype=np.float32)
        terminated, truncated, autoreset = (np.asarray(x, dtype=bool) for x in (terminated, truncated, autoreset))
        for e in range(self.num_envs):
            if autoreset[e]:
                continue
            step_obs = {k: np.asarray(v[e]) for k, v in obs.items()} if self.is_dict else {"": np.asarray(obs[e])}
            if self._stacked:  # the newest frame, once its stack is checked against the episode's earlier frames
                recent = self._open[e][1 - self.frame_stack:]
                history = {k: np.stack([s[0][k] for s in recent]) for k in self._stacked} if recent else None
                frames = self._newest_frames({k: step_obs[k][None] for k in self._stacked}, f"sub-env {e}",
                                             history, first_step=len(self._open[e]))
                step_obs.update({k: v[0].copy() for k, v in frames.items()})  # not a view: frees the env's stacks
            self._open[e].append((step_obs, actions[e], float(rewards[e]), bool(terminated[e])))
            if terminated[e] or truncated[e]:
                steps = self._open[e]
                self._open[e] = []
                self._append_episode({k: np.stack([s[0][k] for s in steps]) for k in self._obs},
                                     np.stack([s[1] for s in steps]),
                                     np.array([s[2] for s in steps], dtype=np.float32),
                                     np.array([s[3] for s in steps], dtype=bool))

    def _append_episode(self, obs: dict[str, Any], actions: np.ndarray, rewards: np.ndarray,
                        terminated: np.ndarray) -> None:
        """Store one finished episode; ``obs``: by key (``""`` for a Box), as stored (frames for stacked keys)."""
        steps = len(actions)
        if steps == 0:
            return
        cut = 0
        if steps > self.capacity:  # keep the episode's last `capacity` steps (with their true step indices)
            cut = steps - self.capacity
            obs = {k: v[cut:] for k, v in obs.items()}
            actions, rewards, terminated, steps = actions[cut:], rewards[cut:], terminated[cut:], self.capacity
        self._make_room(steps)
        start, end = self._size, self._size + steps
        for key, store in self._obs.items():
            store[start:end] = obs[key]
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
        self._episode_start[start:end] = start
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
                      self._episode_end, self._episode_start):
            array[:kept] = array[keep].copy()
        self._episode_end[:kept] -= dropped_rows
        self._episode_start[:kept] -= dropped_rows
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

        def take(array: np.ndarray, key: str | None = None) -> torch.Tensor:
            picked = self._stacks(key, rows) if key in self._stacked else array[rows]   # [B, L, (S,) ...]
            picked[~mask] = 0
            return torch.from_numpy(picked).to(self.device, non_blocking=True)

        obs = {k: take(v, k) for k, v in self._obs.items()}
        return Sequences(obs=obs if self.is_dict else obs[""], actions=take(self._actions),
                         rewards=take(self._rewards), returns_to_go=take(self._rtg), timesteps=take(self._timesteps),
                         terminated=take(self._terminated), mask=torch.from_numpy(mask).to(self.device))

    def episode_observations(self, finals: list[Any]) -> list[Any]:
        """The stored episodes' observations, oldest first, each ``[T + 1, ...]`` with its final observation
        (``finals``, one per stored episode) after its steps: stacked keys as :class:`StackedFrames` over the
        buffer's own frames (no copy; valid while the buffer keeps its episodes where they are: a dataset's
        buffer, which never adds), other keys as arrays. None for an episode whose final stack is not the next
        one of its frames."""
        if len(finals) != len(self._episode_lengths):
            raise ValueError(f"{len(finals)} final observations for {len(self._episode_lengths)} stored episodes")
        out, start = [], 0
        for steps, final in zip(self._episode_lengths, finals):
            out.append(self._observations_of(slice(start, start + steps), final if self.is_dict else {"": final}))
            start += steps
        return out

    def _observations_of(self, rows: slice, final: dict[str, Any]) -> Any:
        out = {}
        for key, store in self._obs.items():
            last = np.asarray(final[key])
            if key not in self._stacked:
                out[key] = np.concatenate([store[rows], last[None]])
                continue
            if _stack_mismatch(last[None], store[rows][1 - self.frame_stack:]) is not None:
                return None
            out[key] = StackedFrames(store[rows], self.frame_stack, last[-1].copy())  # a copy: frees the stacks
        return out if self.is_dict else out[""]

    # ------------------------------------------------------------------ checkpoints
    @staticmethod
    def _state_key(key: str) -> str:
        return f"obs.{key}" if key else "obs"

    def state_dict(self) -> dict[str, Any]:
        """Everything stored, as tensors (stacked keys as their frames) and ``frame_stack``, for exact resume."""
        n = self._size
        state: dict[str, Any] = {self._state_key(k): torch.from_numpy(v[:n].copy()) for k, v in self._obs.items()}
        state.update(size=n, frame_stack=self.frame_stack,
                     episode_lengths=torch.tensor(self._episode_lengths, dtype=torch.int64),
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
            obs = {self._state_key(k): torch.from_numpy(np.stack([s[0][k] for s in steps])) for k in self._obs}
            out.append({**obs, "actions": torch.from_numpy(np.stack([s[1] for s in steps])),
                        "rewards": torch.tensor([s[2] for s in steps]), "terminated": torch.tensor([s[3] for s in steps])})
        return out

    def load_state_dict(self, state: dict[str, Any]) -> None:
        n = int(state["size"])
        if n > self.capacity:
            raise ValueError(f"sequence state holds {n} steps, this buffer's capacity is {self.capacity}")
        saved_stack = int(state.get("frame_stack", 1))  # states from before frame stacks stored whole observations
        if saved_stack != self.frame_stack:
            raise ValueError(f"sequence state was saved with frame_stack={saved_stack}, this buffer has "
                             f"frame_stack={self.frame_stack}; resume with the same train.replay.frame_stack")
        for key, store in self._obs.items():
            store[:n] = state[self._state_key(key)].numpy()
        for name, array in (("actions", self._actions), ("rewards", self._rewards), ("rtg", self._rtg),
                            ("timesteps", self._timesteps), ("terminated", self._terminated),
                            ("episode_end", self._episode_end)):
            array[:n] = state[name].numpy()
        self._size = n
        self._episode_lengths = [int(x) for x in state["episode_lengths"].tolist()]
        lengths = np.asarray(self._episode_lengths, dtype=np.int64)
        self._episode_start[:n] = np.repeat(np.cumsum(lengths) - lengths, lengths)
        self._generator.set_state(state["rng_state"])
        self._open = [[] for _ in range(self.num_envs)]
        for e, saved in enumerate(state["open_episodes"][: self.num_envs]):
            if not saved:
                continue
            count = len(saved["actions"])
            for t in range(count):
                obs = {k: saved[self._state_key(k)][t].numpy() for k in self._obs}
                self._open[e].append((obs, saved["actions"][t].numpy(), float(saved["rewards"][t]),
                                      bool(saved["terminated"][t])))

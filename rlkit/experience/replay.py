"""Replay store for off-policy agents (DQN, MPO, SAC, and offline agents through rlkit.experience.datasets).

Design, and why
---------------
* **One time-ordered stream per sub-environment.** Storage is ``[rows_per_env, num_envs, ...]``;
  ``add`` writes one row for all ``num_envs`` envs of a vectorized env. Row ``t`` of column ``e`` holds
  ``obs_t`` and the action, reward, ``terminated`` and ``truncated`` of the step taken from it. Because
  each column is a stream, the next observation is simply the next row: nothing is stored twice.

* **Gymnasium NEXT_STEP autoreset, no ``info["final_obs"]``.** After a step that ends an episode of env
  ``e``, the next ``step()`` resets it and returns the reset observation. The training loop passes
  ``autoreset = terminated | truncated`` of the *previous* step into ``add``; such a row holds the
  *final observation* of the finished episode. It is never sampled as a transition, but it is the
  bootstrap target of the row before it, which is how truncation (time limits) bootstraps from the
  true final observation, the careful timeout handling of SB3 without extra fields. The row after an
  autoreset row is flagged ``first`` (its observation is a reset observation), as is the first row of
  every stream.

* **n-step returns at sample time.** From a start row ``t`` the buffer sums
  ``sum_{i<k} gamma^i r_{t+i}`` and returns ``discount = gamma^k`` with ``k <= n`` the steps until the
  window ends: ``k = n`` normally, ``k = i + 1`` when step ``t + i`` terminated (then ``discount = 0``)
  or was truncated (then it bootstraps from the final observation row ``t + i + 1``). The agent's
  target is just ``rewards + discounts * max_a Q(next_obs, a)``; n is a buffer setting, not an agent
  code path (Sutton & Barto §7.1; Hessel et al. 2018, "Rainbow").

* **Frame stacks are rebuilt, not stored.** With ``frame_stack = S > 1`` observations are ``(S, H, W)``
  but only the newest frame of each row is kept, so a 1M-transition Atari buffer is about 7 GB, not 28.
  A stack is rebuilt by walking back ``S - 1`` rows in the same stream, stopping at the episode's first
  row, whose frame pads the stack (``stack_padding="repeat"``, what the Atari wrappers do on reset) or
  zeros (``"zero"``).

* **Which rows can be sampled.** A row is *sampleable* iff it is valid (not an autoreset row), its whole
  n-step window and bootstrap row are written (it is not among the newest ``n`` rows of its stream),
  and, once the ring has wrapped, its frame history still exists (it is not among the oldest ``S - 1``
  rows). That set is a contiguous range of ring offsets minus the autoreset rows, so uniform sampling
  draws offsets in the range and redraws the rare autoreset hits.

* **Prioritized replay** (Schaul et al. 2016, "Prioritized Experience Replay") uses an array-based
  sum-tree whose updates and prefix-sum searches are vectorized over the batch with one Python loop over
  tree levels. Stored priorities are ``(|delta| + eps)^alpha``; rows enter with the largest priority seen
  so far as soon as they become sampleable and hold exactly 0 whenever they are not, so they can never
  be drawn. Sampling is stratified (one draw per equal slice of the total mass) and importance weights
  are ``w_i = (N P(i))^-beta / max_j w_j`` over the batch, as SB3 and Dopamine normalise.

* **Payload on the device, bookkeeping on the CPU.** Observations and actions, the big tensors, live
  on ``device``. Rewards, flags, the sum-tree and the ``torch.Generator`` are small and live on the CPU,
  so choosing a batch needs no device round trips; only the final gathers touch the device and the
  returned ``Transitions`` are all on ``device``.

* **Dict observations** (goal-conditioned envs) are stored key by key, each key once per row like a
  Box observation; batches carry ``obs`` / ``next_obs`` as dicts of tensors. With ``frame_stack > 1``
  the image keys whose first axis is the stack are stored one frame per row (the others as they are).

* **A sample-time hook** (``sample_hook``; Tianshou's ``process_fn``) may rewrite each batch before the
  agent sees it: HER relabels goals there. It gets the batch and a :class:`SampleContext` (the sampled
  rows and sub-env streams, and the buffer to read more rows of the same episodes from) and returns a
  batch, e.g. a new reward computed from the stored observations::

      def reward_from_next_obs(batch, ctx):           # toy: reward = first feature of the next obs
          return dataclasses.replace(batch, rewards=batch.next_obs[:, 0].float())

      buffer = ReplayBuffer.from_spaces(obs_space, act_space, 10_000, 1, sample_hook=reward_from_next_obs)

* **Exact resume.** ``state_dict`` holds only tensors and Python scalars (safe for
  ``torch.load(weights_only=True)``), including the generator state, so a loaded buffer returns the
  same batches as the original would have.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch

__all__ = ["Transitions", "ReplayBuffer", "SampleContext", "SumTree"]

Obs = Any  # a tensor / array, or a dict of them for Dict observation spaces


@dataclass(frozen=True)
class Transitions:
    """A batch of (n-step) transitions, all tensors on the buffer's device.

    Attributes:
        obs: ``[B, *obs_shape]`` observations at the start row, dtype as stored (uint8 images,
            float32 vectors); frame stacks are rebuilt to ``[B, S, H, W]``.
        actions: ``[B, *action_shape]`` actions taken from ``obs`` (int64 Discrete, float32 Box).
        rewards: ``[B]`` float32 n-step discounted reward sum ``sum_{i<k} gamma^i r_{t+i}``.
        next_obs: ``[B, *obs_shape]`` observation at ``t + k`` to bootstrap from (for truncated episodes
            the true final observation).
        discounts: ``[B]`` float32 ``gamma^k``, or 0.0 if the episode terminated inside the window.
            The TD target is ``rewards + discounts * V(next_obs)``.
        weights: ``[B]`` float32 importance-sampling weights (all ones for uniform sampling).
        indices: ``[B]`` int64 flat storage indices (``row * num_envs + env``) for ``update_priorities``.
        agent_id: ``[B]`` int64 whose row ``obs`` is (multi-agent rows: the collector stores the step record's
            ``agent_id``), or None where the buffer was given no agent ids. ``next_agent_id``: the same for
            ``next_obs``. Agents with one network per agent or team (DQN's ``policies``) route rows by them.
    """

    obs: torch.Tensor | dict[str, torch.Tensor]
    actions: torch.Tensor
    rewards: torch.Tensor
    next_obs: torch.Tensor | dict[str, torch.Tensor]
    discounts: torch.Tensor
    weights: torch.Tensor
    indices: torch.Tensor
    agent_id: torch.Tensor | None = field(default=None, kw_only=True)
    next_agent_id: torch.Tensor | None = field(default=None, kw_only=True)


@dataclass(frozen=True)
class SampleContext:
    """What a sample-time hook may read besides the batch: the sampled ``rows`` and sub-env ``envs``
    (CPU int64 ``[B]``), the bootstrap rows ``next_rows``, the ``buffer`` itself and a seeded ``generator``.

    A hook reads the buffer through its public surface only: the layout (``rows_per_env``, ``num_envs``,
    ``device``, :attr:`~ReplayBuffer.stacked_keys`, :attr:`~ReplayBuffer.gamma_powers`), which rows are
    stored (:attr:`~ReplayBuffer.oldest_row`, :attr:`~ReplayBuffer.rows_stored`), episode bounds
    (:meth:`~ReplayBuffer.episode_start_rows`, :meth:`~ReplayBuffer.episode_end_rows`) and row lookups
    (:meth:`~ReplayBuffer.obs_at`, :meth:`~ReplayBuffer.stored`)."""

    rows: torch.Tensor
    envs: torch.Tensor
    next_rows: torch.Tensor
    buffer: "ReplayBuffer"
    generator: torch.Generator


class SumTree:
    """Array-based binary sum-tree over ``size`` leaves, vectorized over batches of indices.

    ``tree[1]`` is the root (total mass); node ``i`` has children ``2i`` and ``2i + 1``; leaf ``j`` lives
    at ``tree[num_leaves + j]`` with ``num_leaves`` the smallest power of two ``>= size``. float64 keeps
    the sums exact enough that zero-mass subtrees stay exactly zero.
    """

    def __init__(self, size: int) -> None:
        self.num_leaves = 1 << max(0, (size - 1).bit_length())
        self.depth = self.num_leaves.bit_length() - 1
        self.tree = torch.zeros(2 * self.num_leaves, dtype=torch.float64)

    @property
    def total(self) -> float:
        return float(self.tree[1])

    def get(self, leaves: torch.Tensor) -> torch.Tensor:
        return self.tree[leaves + self.num_leaves]

    def set(self, leaves: torch.Tensor, values: torch.Tensor) -> None:
        """Set leaf values; for duplicate leaves the largest value wins (deterministic)."""
        if leaves.numel() == 0:
            return
        unique, inverse = torch.unique(leaves, return_inverse=True)
        values = torch.zeros(len(unique), dtype=torch.float64).scatter_reduce(
            0, inverse, values.to(torch.float64), reduce="amax", include_self=False)
        nodes = unique + self.num_leaves
        self.tree[nodes] = values
        children = self.tree.view(-1, 2)  # children[i] = (tree[2i], tree[2i + 1])
        for _ in range(self.depth):  # recompute parents level by level (duplicate writes agree)
            nodes = nodes >> 1
            self.tree[nodes] = children[nodes].sum(dim=1)

    def find(self, prefix: torch.Tensor) -> torch.Tensor:
        """Leaf ``j`` for each prefix mass ``u`` with ``sum_{i<j} p_i <= u < sum_{i<=j} p_i``.

        Never returns a zero-mass leaf while the total is positive (even with rounding at the edges).
        """
        node = torch.ones_like(prefix, dtype=torch.int64)
        u = prefix.to(torch.float64)
        children = self.tree.view(-1, 2)
        for _ in range(self.depth):
            left, right = children[node].unbind(dim=1)
            go_right = ((u >= left) & (right > 0)) | (left <= 0)
            u = torch.where(go_right, u - left, u)
            node = 2 * node + go_right.long()
        return node - self.num_leaves


def _obs_state_key(key: str) -> str:
    """``obs`` for Box observations, ``obs.<key>`` per Dict key, in ``state_dict``."""
    return f"obs.{key}" if key else "obs"


def _slice_transitions(batch: Transitions, rows: slice) -> Transitions:
    """Rows ``rows`` of every field of ``batch`` (views; dict observations key by key)."""
    def cut(value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, Mapping):
            return {key: v[rows] for key, v in value.items()}
        return value[rows]
    return replace(batch, **{f.name: cut(getattr(batch, f.name)) for f in fields(batch)})


def _as_numpy(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if torch.is_tensor(x) else np.asarray(x)


def _torch_dtype(np_dtype: Any) -> torch.dtype:
    return torch.from_numpy(np.zeros(0, dtype=np_dtype)).dtype


def _stacked_keys(shapes: dict[str, tuple[int, ...]], dtypes: dict[str, torch.dtype], frame_stack: int,
                  is_dict: bool) -> set[str]:
    """The keys stored one frame per row: with ``frame_stack > 1``, a Box observation shaped ``(S, ...)``, or a
    Dict's uint8 image keys shaped ``(S, H, W)``."""
    return {k for k, s in shapes.items()
            if frame_stack > 1 and len(s) >= 2 and s[0] == frame_stack
            and (not is_dict or (len(s) == 3 and dtypes[k] == torch.uint8))}


def _check_layout(*, capacity: int, num_envs: int, n_step: int, frame_stack: int, stacked: set[str], obs_shape: Any,
                  stack_padding: str, gamma: float, alpha: float, eps: float) -> int:
    """A ValueError for arguments no buffer can be built from, else the rows per env stream."""
    if num_envs < 1:
        raise ValueError(f"num_envs must be >= 1, got {num_envs}")
    if capacity < num_envs:
        raise ValueError(f"capacity ({capacity}) must be >= num_envs ({num_envs})")
    if n_step < 1:
        raise ValueError(f"n_step must be >= 1, got {n_step}")
    if frame_stack < 1:
        raise ValueError(f"frame_stack must be >= 1, got {frame_stack}")
    if frame_stack > 1 and not stacked:
        raise ValueError(f"frame_stack={frame_stack} needs obs_shape (frame_stack, ...) with the "
                         f"stack first, got obs_shape={obs_shape}")
    if stack_padding not in ("repeat", "zero"):
        raise ValueError(f"stack_padding must be 'repeat' or 'zero', got {stack_padding!r}")
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be in [0, 1], got {gamma}")
    if alpha < 0.0:
        raise ValueError(f"alpha must be >= 0, got {alpha}")
    if eps <= 0.0:
        raise ValueError(f"eps must be > 0 (a zero TD error must stay drawable), got {eps}")
    rows_per_env = capacity // num_envs
    if rows_per_env < n_step + frame_stack:
        raise ValueError(f"capacity // num_envs = {rows_per_env} rows per env is too small for "
                         f"n_step={n_step} and frame_stack={frame_stack}: need at least "
                         f"{n_step + frame_stack} (= {(n_step + frame_stack) * num_envs} capacity)")
    return rows_per_env


class ReplayBuffer:
    """Preallocated ring of per-env transition streams with n-step returns, frame stacking and PER.

    Protocol (vectorized env with gymnasium NEXT_STEP autoreset)::

        obs, _ = envs.reset(seed=seed)
        autoreset = np.zeros(num_envs, bool)
        while ...:
            actions = agent.predict(obs, deterministic=False)
            next_obs, rewards, terminated, truncated, infos = envs.step(actions)
            buffer.add(obs, actions, rewards, terminated, truncated, autoreset)
            autoreset = terminated | truncated
            obs = next_obs
        batch = buffer.sample(batch_size, beta)
        metrics = agent.update(batch)                      # prioritized: first
                                                           #   agent.connect_priorities(buffer.update_priorities)

    ``capacity`` counts transitions over all envs: each stream holds ``capacity // num_envs`` rows.
    """

    def __init__(
        self,
        *,
        capacity: int,
        num_envs: int,
        obs_shape: tuple[int, ...] | dict[str, tuple[int, ...]],
        obs_dtype: torch.dtype | dict[str, torch.dtype],
        action_shape: tuple[int, ...],
        action_dtype: torch.dtype,
        device: str | torch.device = "cpu",
        gamma: float = 0.99,
        n_step: int = 1,
        frame_stack: int = 1,
        stack_padding: Literal["repeat", "zero"] = "repeat",
        prioritized: bool = False,
        alpha: float = 0.6,
        eps: float = 1e-6,
        seed: int = 0,
        sample_hook: Callable[[Transitions, SampleContext], Transitions] | None = None,
    ) -> None:
        self.is_dict = isinstance(obs_shape, dict)
        shapes = ({k: tuple(int(d) for d in s) for k, s in obs_shape.items()} if self.is_dict
                  else {"": tuple(int(d) for d in obs_shape)})
        dtypes = obs_dtype if self.is_dict else {"": obs_dtype}
        if self.is_dict and (not shapes or set(dtypes) != set(shapes)):
            raise ValueError(f"Dict observations need a shape and a dtype per key, got {obs_shape} / {obs_dtype}")
        action_shape = tuple(int(d) for d in action_shape)
        self._stacked = _stacked_keys(shapes, dtypes, frame_stack, self.is_dict)
        rows_per_env = _check_layout(capacity=capacity, num_envs=num_envs, n_step=n_step, frame_stack=frame_stack,
                                     stacked=self._stacked, obs_shape=obs_shape, stack_padding=stack_padding,
                                     gamma=gamma, alpha=alpha, eps=eps)

        self.rows_per_env, self.num_envs = rows_per_env, num_envs
        self.capacity = rows_per_env * num_envs  # effective capacity
        self.obs_shape, self.action_shape = obs_shape, action_shape
        self._obs_shapes = shapes
        self.device = torch.device(device)
        self.gamma, self.n_step, self.frame_stack = float(gamma), int(n_step), int(frame_stack)
        self.stack_padding = stack_padding
        self.prioritized, self.alpha, self.eps = bool(prioritized), float(alpha), float(eps)

        R, N = rows_per_env, num_envs
        # payload on the device; torch.empty so untouched pages are never allocated
        self._obs = {k: torch.empty((R, N, *(s[1:] if k in self._stacked else s)), dtype=dtypes[k], device=self.device)
                     for k, s in shapes.items()}
        self._actions = torch.empty((R, N, *action_shape), dtype=action_dtype, device=self.device)
        # bookkeeping on the CPU
        self._rewards = torch.zeros((R, N), dtype=torch.float32)
        self._terminated = torch.zeros((R, N), dtype=torch.bool)
        self._truncated = torch.zeros((R, N), dtype=torch.bool)
        self._valid = torch.zeros((R, N), dtype=torch.bool)   # False for autoreset rows
        self._first = torch.zeros((R, N), dtype=torch.bool)   # obs is a reset obs
        self._next_first = torch.ones(N, dtype=torch.bool)    # `first` flag of the next row per env
        self._agent_id: torch.Tensor | None = None            # [R, N] int64 once add() is given agent ids
        self._pos, self._full = 0, False                      # next row to write; ring wrapped?
        self._gamma_powers = torch.tensor([gamma ** k for k in range(n_step + 1)], dtype=torch.float32)
        self._tree = SumTree(self.capacity) if prioritized else None
        self._max_priority = 1.0
        self._generator = torch.Generator(device="cpu")
        self._generator.manual_seed(seed)
        self.discrete_actions: tuple[int, int] | None = None  # [low, high) of Discrete actions (from_spaces)
        self.sample_hook = sample_hook

    @classmethod
    def from_spaces(cls, observation_space: gym.Space, action_space: gym.Space, capacity: int,
                    num_envs: int, **kwargs: Any) -> ReplayBuffer:
        """Build from single-env gymnasium spaces (Box, Discrete, or a Dict of Boxes). ``frame_stack`` and the other
        constructor arguments pass through ``kwargs``; with ``frame_stack > 1`` the observation space
        must be the stacked ``(S, H, W)`` box."""
        if isinstance(observation_space, gym.spaces.Dict):
            for key, sub in observation_space.spaces.items():
                if not isinstance(sub, gym.spaces.Box):
                    raise ValueError(f"Dict observation key '{key}' must be a Box, got {sub}")
            obs_shape: Any = {k: tuple(s.shape) for k, s in observation_space.spaces.items()}
            obs_dtype: Any = {k: _torch_dtype(s.dtype) for k, s in observation_space.spaces.items()}
        elif isinstance(observation_space, (gym.spaces.Box, gym.spaces.Discrete)):
            obs_shape, obs_dtype = tuple(observation_space.shape), _torch_dtype(observation_space.dtype)
        else:
            raise ValueError(f"observation space must be Box, Discrete or a Dict of Boxes, got {observation_space}")
        if isinstance(action_space, gym.spaces.Discrete):
            action_shape, action_dtype = (), torch.int64
        elif isinstance(action_space, gym.spaces.Box):
            action_shape, action_dtype = tuple(action_space.shape), torch.float32
        else:
            raise ValueError(f"action space must be Box or Discrete, got {action_space}")
        buffer = cls(capacity=capacity, num_envs=num_envs, obs_shape=obs_shape, obs_dtype=obs_dtype,
                     action_shape=action_shape, action_dtype=action_dtype, **kwargs)
        if isinstance(action_space, gym.spaces.Discrete):  # what a loaded state's actions may hold
            buffer.discrete_actions = (int(action_space.start), int(action_space.start + action_space.n))
        return buffer

    # ------------------------------------------------------------------ sizes
    def _rows_written(self) -> int:
        return self.rows_per_env if self._full else self._pos

    def __len__(self) -> int:
        """Transitions stored (autoreset rows included), over all envs."""
        return self._rows_written() * self.num_envs

    def _sampleable_offsets(self) -> tuple[int, int]:
        """Ring offsets ``[lo, hi)`` (0 = oldest row) whose windows and frame histories are intact."""
        lo = self.frame_stack - 1 if self._full else 0
        return lo, self._rows_written() - self.n_step

    def _oldest_row(self) -> int:
        return self._pos if self._full else 0

    @property
    def rows_stored(self) -> int:
        """Rows stored per sub-env stream (autoreset rows included): ``rows_per_env`` once the ring is full."""
        return self._rows_written()

    @property
    def oldest_row(self) -> int:
        """The ring row holding every stream's oldest stored row; the stored rows are
        ``(oldest_row + i) % rows_per_env`` for ``i < rows_stored``, oldest first."""
        return self._oldest_row()

    @property
    def stacked_keys(self) -> frozenset[str]:
        """Observation keys stored one frame per row and sampled as frame stacks (``""`` is a Box
        observation's key; Dict observations: their stacked image keys). Empty without frame stacking."""
        return frozenset(self._stacked)

    @property
    def gamma_powers(self) -> torch.Tensor:
        """``gamma ** k`` for ``k = 0 .. n_step`` (CPU float32 ``[n_step + 1]``), the factors the n-step sums
        and discounts use (read only)."""
        return self._gamma_powers

    def _sampleable(self, rows: torch.Tensor) -> torch.Tensor:
        """``[K, N]`` bool: which (row, env) pairs of the given CPU row indices can be sampled."""
        lo, hi = self._sampleable_offsets()
        offsets = (rows - self._oldest_row()) % self.rows_per_env
        return self._valid[rows] & ((offsets >= lo) & (offsets < hi))[:, None]

    def num_sampleable(self) -> int:
        """Number of (row, env) pairs that ``sample`` can currently return."""
        lo, hi = self._sampleable_offsets()
        if hi <= lo:
            return 0
        rows = (self._oldest_row() + torch.arange(lo, hi)) % self.rows_per_env
        return int(self._valid[rows].sum())

    def nbytes(self) -> int:
        """Bytes of all preallocated storage (payload and bookkeeping)."""
        tensors = [*self._obs.values(), self._actions, self._rewards, self._terminated, self._truncated,
                   self._valid, self._first]
        if self._tree is not None:
            tensors.append(self._tree.tree)
        if self._agent_id is not None:
            tensors.append(self._agent_id)
        return sum(t.numel() * t.element_size() for t in tensors)

    # ------------------------------------------------------------------ writing
    def add(self, obs: Any, actions: Any, rewards: Any, terminated: Any, truncated: Any,
            autoreset: Any, agent_id: Any = None) -> None:
        """Write one row for all envs: ``obs`` ``[N, *obs_shape]``, ``actions`` ``[N, *action_shape]``,
        ``rewards``/``terminated``/``truncated``/``autoreset`` ``[N]`` (numpy arrays or tensors); ``agent_id``
        ``[N]`` (optional, multi-agent rows): whose row each ``obs`` is, sampled back as ``Transitions.agent_id``.
        A buffer given agent ids once needs them on every later ``add``."""
        row = self._pos
        self._add_agent_ids(row, agent_id)
        obs_by_key = self._split_obs(obs)
        if self.device.type == "cpu":  # write through numpy views: ~1 us per array, not ~8 us per op
            actions_np = _as_numpy(actions)
            self._check_shapes({k: _as_numpy(v).shape for k, v in obs_by_key.items()}, actions_np.shape)
            for key, value in obs_by_key.items():
                value = _as_numpy(value)
                self._obs[key].numpy()[row] = value[:, -1] if key in self._stacked else value
            self._actions.numpy()[row] = actions_np
        else:
            actions_t = torch.as_tensor(actions)
            self._check_shapes({k: tuple(torch.as_tensor(v).shape) for k, v in obs_by_key.items()},
                               tuple(actions_t.shape))
            for key, value in obs_by_key.items():
                value = torch.as_tensor(value)
                self._obs[key][row].copy_(value[:, -1] if key in self._stacked else value, non_blocking=True)
            self._actions[row].copy_(actions_t, non_blocking=True)
        autoreset_np = _as_numpy(autoreset).astype(bool, copy=False)
        self._rewards.numpy()[row] = _as_numpy(rewards)
        self._terminated.numpy()[row] = _as_numpy(terminated)
        self._truncated.numpy()[row] = _as_numpy(truncated)
        self._valid.numpy()[row] = ~autoreset_np
        next_first = self._next_first.numpy()
        self._first.numpy()[row] = next_first
        next_first[:] = autoreset_np

        self._pos = (row + 1) % self.rows_per_env
        self._full = self._full or self._pos == 0
        if self._tree is not None:
            self._refresh_priorities(row)

    def _add_agent_ids(self, row: int, agent_id: Any) -> None:
        if agent_id is None:
            if self._agent_id is not None:
                raise ValueError("this buffer stores agent ids (multi-agent rows): every add needs agent_id")
            return
        ids = _as_numpy(agent_id).astype(np.int64, copy=False)
        if ids.shape != (self.num_envs,) or (ids < 0).any():
            raise ValueError(f"agent_id must be {self.num_envs} ids >= 0, got shape {ids.shape}")
        if self._agent_id is None:
            # rows stored without ids (a checkpoint from before they were kept): every env that reports agent ids
            # (rlkit.envs.multiagent's rows) keeps one agent per column, so the column's id is theirs too
            self._agent_id = torch.as_tensor(ids).repeat(self.rows_per_env, 1)
        self._agent_id.numpy()[row] = ids

    def _split_obs(self, obs: Obs) -> dict[str, Any]:
        if not self.is_dict:
            return {"": obs}
        if not isinstance(obs, Mapping) or set(obs) != set(self._obs):
            keys = sorted(obs) if isinstance(obs, Mapping) else type(obs).__name__
            raise ValueError(f"obs must be a dict with keys {sorted(self._obs)}, got {keys}")
        return dict(obs)

    def _join_obs(self, by_key: dict[str, torch.Tensor]) -> Obs:
        return by_key if self.is_dict else by_key[""]

    def _check_shapes(self, obs_shapes: dict[str, tuple], actions_shape: tuple) -> None:
        N = self.num_envs
        for key, shape in obs_shapes.items():
            expected = (N, *self._obs_shapes[key])
            if tuple(shape) != expected:
                where = f"obs['{key}']" if self.is_dict else "obs"
                raise ValueError(f"{where} has shape {tuple(shape)}, expected {expected}")
        if tuple(actions_shape) != (N, *self.action_shape):
            raise ValueError(f"actions have shape {tuple(actions_shape)}, expected {(N, *self.action_shape)}")

    def _refresh_priorities(self, written_row: int) -> None:
        """Keep the sum-tree equal to 'max priority if sampleable else 0' for rows that changed."""
        R = self.rows_per_env
        closed = (written_row - self.n_step) % R  # its n-step window just closed
        rows = [closed, written_row]  # the newest row's window is open (it may overwrite an old row)
        if self._full:  # the oldest S - 1 rows lost their frame history
            rows += [(self._pos + k) % R for k in range(self.frame_stack - 1)]
        rows_t = torch.tensor(rows)
        priorities = torch.zeros(len(rows), self.num_envs, dtype=torch.float64)
        priorities[0] = self._sampleable(rows_t[:1])[0].to(torch.float64) * self._max_priority
        self._set_row_priorities(rows_t, priorities)

    def _set_row_priorities(self, rows: torch.Tensor, priorities: torch.Tensor) -> None:
        assert self._tree is not None
        leaves = rows[:, None] * self.num_envs + torch.arange(self.num_envs)
        self._tree.set(leaves.flatten(), priorities.flatten())

    def update_priorities(self, indices: torch.Tensor, priorities: torch.Tensor) -> None:
        """Set priorities ``(|p| + eps)^alpha`` for flat ``indices`` from ``sample``. Rows that stopped
        being sampleable since they were drawn keep priority 0."""
        if self._tree is None:
            raise RuntimeError("update_priorities needs a buffer built with prioritized=True")
        indices = torch.as_tensor(indices).detach().to("cpu", torch.int64).flatten()
        td = torch.as_tensor(priorities).detach().to("cpu", torch.float64).flatten()
        if indices.shape != td.shape:
            raise ValueError(f"{len(indices)} indices but {len(td)} priorities")
        stored = (td.abs() + self.eps) ** self.alpha
        rows, envs = indices // self.num_envs, indices % self.num_envs
        still_sampleable = self._sampleable(rows)[torch.arange(len(rows)), envs]
        stored = torch.where(still_sampleable, stored, 0.0)
        if stored.numel() > 0:
            self._max_priority = max(self._max_priority, float(stored.max()))
        self._tree.set(indices, stored)

    # ------------------------------------------------------------------ sampling
    def sample(self, batch_size: int, beta: float = 0.4) -> Transitions:
        """Draw ``batch_size`` n-step transitions, uniformly or by priority (``beta`` only matters
        for prioritized buffers)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if self._tree is not None:
            rows, envs, weights = self._sample_prioritized(batch_size, beta)
        else:
            rows, envs = self._sample_uniform(batch_size)
            weights = torch.ones(batch_size, dtype=torch.float32)

        # the bookkeeping in numpy on the CPU (tiny arrays: a torch op costs ~5 us, a numpy one ~1 us), the
        # payload gathers by flat (row, env) index; the batch's tensors are made once, at the end
        rows_np, envs_np = rows.numpy(), envs.numpy()
        flat_np = rows_np * self.num_envs + envs_np
        next_rows_np, rewards, discounts = self._n_step_targets_np(rows_np, envs_np, flat_np)
        next_flat_np = next_rows_np * self.num_envs + envs_np
        next_rows = torch.from_numpy(next_rows_np)
        on_cpu = self.device.type == "cpu"
        flat = torch.from_numpy(flat_np)
        if not on_cpu:
            to_device = dict(device=self.device, non_blocking=True)
            rewards, discounts, weights = (torch.from_numpy(rewards).to(**to_device),
                                           torch.from_numpy(discounts).to(**to_device), weights.to(**to_device))
        else:
            rewards, discounts = torch.from_numpy(rewards), torch.from_numpy(discounts)
        obs, next_obs = {}, {}
        for key, storage in self._obs.items():
            if key in self._stacked:
                obs[key], next_obs[key] = self._gather_stacks(storage, rows, envs,
                                                              torch.from_numpy((next_rows_np - rows_np)
                                                                               % self.rows_per_env))
            else:
                obs[key], next_obs[key] = self._gather_flat(storage, flat_np), self._gather_flat(storage, next_flat_np)
        batch = Transitions(
            obs=self._join_obs(obs),
            actions=self._gather_flat(self._actions, flat_np),
            rewards=rewards,
            next_obs=self._join_obs(next_obs),
            discounts=discounts,
            weights=weights,
            indices=flat if on_cpu else flat.to(device=self.device, non_blocking=True),
            **({} if self._agent_id is None else {
                "agent_id": self._gather_flat(self._agent_id, flat_np).to(device=self.device, non_blocking=True),
                "next_agent_id": self._gather_flat(self._agent_id, next_flat_np).to(device=self.device,
                                                                                    non_blocking=True)}),
        )
        if self.sample_hook is not None:
            batch = self.sample_hook(batch, SampleContext(rows, envs, next_rows, self, self._generator))
        return batch

    def sample_batches(self, batch_size: int, count: int, beta: float = 0.4) -> list[Transitions]:
        """``count`` uniform batches of ``batch_size`` from one draw of ``count * batch_size`` transitions (one
        gather per stored array, one sample hook call): views of that draw, ``count`` consecutive slices of it.
        Uniform replay only (a prioritized buffer's priorities change between the updates the batches feed)."""
        if self._tree is not None:
            raise ValueError("sample_batches draws uniformly; a prioritized buffer samples one batch per update")
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count}")
        batch = self.sample(batch_size * count, beta)
        return [_slice_transitions(batch, slice(i * batch_size, (i + 1) * batch_size)) for i in range(count)]

    def obs_at(self, rows: torch.Tensor, envs: torch.Tensor) -> Obs:
        """Stored observations at CPU ``rows``/``envs`` (frame stacks rebuilt), for sample hooks."""
        out = {}
        for key, storage in self._obs.items():
            if key in self._stacked:
                out[key] = self._gather_stacks(storage, rows, envs, torch.ones_like(rows))[0]
            else:
                out[key] = self._gather(storage, rows, envs)
        return self._join_obs(out)

    def stored(self, key: str, rows: torch.Tensor, envs: torch.Tensor) -> torch.Tensor:
        """One observation key's stored values at CPU ``rows``/``envs`` (``""`` for a Box observation), on the
        buffer's device: what :meth:`obs_at` gathers for that key alone (a goal, for HER). Frame-stacked keys
        are stored one frame per row: read those through :meth:`obs_at`."""
        if key not in self._obs:
            raise KeyError(f"no stored observation key {key!r} (keys: {sorted(self._obs)})")
        if key in self._stacked:
            raise ValueError(f"observation key {key!r} is frame-stacked (one frame per row): use obs_at")
        return self._gather(self._obs[key], rows, envs)

    def episode_end_rows(self, rows: torch.Tensor, envs: torch.Tensor) -> torch.Tensor:
        """For each (row, env), the last written row of its episode in that stream: the final-observation
        row of a finished episode, or the newest row of one still running. HER's "future" strategy draws
        its goals from rows ``(row, end]``. A done row that is the newest row ends there (its final-observation
        row is written by the next ``add``). Binary search over each stream's done rows in time order: one pass
        over the stored flags per call, not a scan per sample (300-step episodes, 20k rows: 0.16 ms per 256)."""
        R, oldest, written = self.rows_per_env, self._oldest_row(), self._rows_written()
        rows_np, envs_np = rows.numpy(), envs.numpy()
        done = self._terminated.numpy()[:written] | self._truncated.numpy()[:written]     # [W, N] by row
        end = np.empty_like(rows_np)
        for e in np.unique(envs_np):
            done_rows = np.flatnonzero(done[:, e])                                          # sorted rows
            split = np.searchsorted(done_rows, oldest)  # rows >= oldest come first in time (ring order)
            offsets = np.concatenate([done_rows[split:] - oldest, done_rows[:split] + (R - oldest)])
            offsets = np.append(offsets, written)                                           # sentinel: none
            sel = envs_np == e
            first_done = offsets[np.searchsorted(offsets, (rows_np[sel] - oldest) % R)]     # first done >= row
            end[sel] = (oldest + np.where(first_done < written - 1, first_done + 1, written - 1)) % R
        return torch.from_numpy(end)

    def episode_start_rows(self, rows: torch.Tensor, envs: torch.Tensor) -> torch.Tensor:
        """For each (row, env), the first row of its episode still stored in that stream: the episode's reset
        row, or the oldest stored row once the ring has overwritten the episode's beginning. The mirror of
        :meth:`episode_end_rows`; HER's "episode" strategy draws its goals from rows ``[start, end]``.
        Vectorized: looks back 64 rows at a time (one gather of ``first`` flags per block, not per row)."""
        R, block = self.rows_per_env, 64
        rows_np, envs_np = rows.numpy(), envs.numpy()
        first = self._first.numpy()
        to_oldest = (rows_np - self._oldest_row()) % R   # rows back to the oldest stored row
        start = rows_np.copy()
        pending = np.arange(len(rows_np))
        for offset in range(0, R, block):
            if pending.size == 0:
                break
            back = offset + np.arange(block)                                  # [C] rows back
            candidates = (rows_np[pending, None] - back) % R                  # [P, C]
            stop = first[candidates, envs_np[pending, None]] | (back >= to_oldest[pending, None])
            found = stop.any(axis=1)
            start[pending[found]] = candidates[found, stop[found].argmax(axis=1)]
            pending = pending[~found]
        return torch.from_numpy(start)

    def _sample_uniform(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        lo, hi = self._sampleable_offsets()
        if hi <= lo:
            raise RuntimeError(f"nothing to sample yet: {self._rows_written()} rows per env written, "
                               f"n_step={self.n_step} needs more")
        g, R, N, oldest = self._generator, self.rows_per_env, self.num_envs, self._oldest_row()

        def draw(k: int) -> tuple[np.ndarray, np.ndarray]:  # the generator's draws; the arithmetic in numpy
            offsets = torch.randint(lo, hi, (k,), generator=g).numpy()
            return (oldest + offsets) % R, torch.randint(0, N, (k,), generator=g).numpy()

        rows, envs = draw(batch_size)
        valid = self._valid.numpy()
        for _ in range(64):  # redraw autoreset rows; stays uniform over the sampleable set
            invalid = ~valid[rows, envs]
            num_invalid = int(np.count_nonzero(invalid))
            if num_invalid == 0:
                return torch.from_numpy(rows), torch.from_numpy(envs)
            rows[invalid], envs[invalid] = draw(num_invalid)
        rows_t, envs_t = torch.from_numpy(rows), torch.from_numpy(envs)
        # pathological buffers (almost all rows invalid): draw from an explicit list instead
        candidates = (oldest + torch.arange(lo, hi)) % R
        flat = (candidates[:, None] * N + torch.arange(N))[self._valid[candidates]]
        if flat.numel() == 0:
            raise RuntimeError("nothing to sample: every written row is an autoreset row")
        invalid = ~self._valid[rows_t, envs_t]
        picks = flat[torch.randint(0, len(flat), (int(invalid.sum()),), generator=g)]
        rows_t[invalid], envs_t[invalid] = picks // N, picks % N
        return rows_t, envs_t

    def _sample_prioritized(self, batch_size: int, beta: float
                            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        assert self._tree is not None
        if beta < 0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        total = self._tree.total
        if total <= 0:
            raise RuntimeError("nothing to sample yet: no row has a closed n-step window")
        # stratified: one uniform draw in each of batch_size equal slices of the total mass
        u = torch.rand(batch_size, generator=self._generator, dtype=torch.float64)
        prefix = (torch.arange(batch_size, dtype=torch.float64) + u) * (total / batch_size)
        leaves = self._tree.find(prefix.clamp_(max=total))
        probs = self._tree.get(leaves) / total
        # w_i = (N P(i))^-beta / max_j (N P(j))^-beta = (min_j P(j) / P(i))^beta: N cancels
        weights = (probs.min() / probs) ** beta
        return leaves // self.num_envs, leaves % self.num_envs, weights.float()

    def _n_step_targets(self, rows: torch.Tensor, envs: torch.Tensor
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Bootstrap rows, discounted reward sums and discounts for start rows (CPU tensors)."""
        rows_np, envs_np = rows.numpy(), envs.numpy()
        next_rows, reward_sum, discounts = self._n_step_targets_np(rows_np, envs_np, rows_np * self.num_envs + envs_np)
        return torch.from_numpy(next_rows), torch.from_numpy(reward_sum), torch.from_numpy(discounts)

    def _n_step_targets_np(self, rows_np: np.ndarray, envs_np: np.ndarray, flat_np: np.ndarray
                           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`_n_step_targets` in numpy over shared views of the bookkeeping tensors (small arrays, so
        per-op overhead rules); ``flat_np`` = ``rows * num_envs + envs``."""
        rewards, terminated_all, truncated_all = (self._rewards.numpy(), self._terminated.numpy(),
                                                  self._truncated.numpy())
        gamma_powers = self._gamma_powers.numpy()
        if self.n_step == 1:  # one-step: the next row, the reward, gamma unless terminated
            next_rows = (rows_np + 1) % self.rows_per_env
            discounts = np.where(terminated_all.reshape(-1)[flat_np], np.float32(0.0), gamma_powers[1])
            return next_rows, rewards.reshape(-1)[flat_np].astype(np.float32), discounts.astype(np.float32)
        steps = np.zeros(len(rows_np), dtype=np.int64)        # k: steps inside the window
        reward_sum = np.zeros(len(rows_np), dtype=np.float32)
        stopped = np.zeros(len(rows_np), dtype=bool)
        terminal = np.zeros(len(rows_np), dtype=bool)
        for i in range(self.n_step):
            r = (rows_np + i) % self.rows_per_env
            active = ~stopped
            reward_sum += np.where(active, gamma_powers[i] * rewards[r, envs_np], np.float32(0.0))
            steps += active
            terminated, truncated = terminated_all[r, envs_np], truncated_all[r, envs_np]
            terminal |= active & terminated
            stopped |= terminated | truncated
        next_rows = (rows_np + steps) % self.rows_per_env
        discounts = np.where(terminal, np.float32(0.0), gamma_powers[steps]).astype(np.float32)
        return next_rows, reward_sum, discounts

    def _gather_stacks(self, storage: torch.Tensor, rows: torch.Tensor, envs: torch.Tensor, steps: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """Frame stacks of obs (row t) and next_obs (row t+k), rebuilt from one gather.

        Both stacks live in the same episode, so they are windows of one block of rows
        ``[t-S+1 .. t+n]`` (walking back stops at the episode's first row, whose frame pads):
        obs = block[:, 0:S] and next_obs = block[:, k:k+S]. One ``index_select`` of ``S+n`` frames per
        sample instead of two of ``S`` each; with n = 1 both are views of the block (no further copy).
        """
        S, n, R = self.frame_stack, self.n_step, self.rows_per_env
        rows_np, envs_np, first = rows.numpy(), envs.numpy(), self._first.numpy()
        back, padded = [rows_np], [np.zeros(len(rows_np), dtype=bool)]
        current, hit_first = rows_np, np.zeros(len(rows_np), dtype=bool)
        for _ in range(S - 1):  # walk back, stopping at the episode's first row (numpy: tiny arrays)
            hit_first = hit_first | first[current, envs_np]
            current = np.where(hit_first, current, (current - 1) % R)
            back.append(current)
            padded.append(hit_first)
        ahead = [(rows_np + i) % R for i in range(1, n + 1)]
        block_rows = torch.from_numpy(np.stack(back[::-1] + ahead, axis=1))     # [B, S+n], oldest first
        block = self._gather(storage, block_rows, envs[:, None])               # [B, S+n, H, W]
        obs = block[:, :S]
        if n == 1:
            next_obs = block[:, 1:]  # k == 1 always
        else:
            columns = steps[:, None] + torch.arange(S)                      # [B, S]
            next_obs = block[torch.arange(len(rows))[:, None], columns.to(self.device)]
        if self.stack_padding == "zero":
            pad = torch.from_numpy(np.stack(padded[::-1] + [np.zeros(len(rows_np), dtype=bool)] * n, axis=1))
            next_pad = pad.gather(1, steps[:, None] + torch.arange(S))
            shape = (*pad.shape[:1], S, *[1] * (block.dim() - 2))
            obs = obs.masked_fill(pad[:, :S].reshape(shape).to(self.device), 0)
            next_obs = next_obs.masked_fill(next_pad.reshape(shape).to(self.device), 0)
        return obs, next_obs

    def _gather_flat(self, storage: torch.Tensor, flat_np: np.ndarray) -> torch.Tensor:
        """``storage[rows, envs]`` by flat numpy index ``rows * num_envs + envs`` (1-d): :meth:`_gather` for
        indices already computed."""
        if storage.device.type == "cpu" and storage.dim() <= 3:  # small rows (actions, vectors): numpy is cheaper
            return torch.from_numpy(storage.numpy().reshape(-1, *storage.shape[2:])[flat_np])
        return storage.flatten(0, 1).index_select(0, torch.from_numpy(flat_np).to(self.device, non_blocking=True))

    def _gather(self, storage: torch.Tensor, rows: torch.Tensor, envs: torch.Tensor) -> torch.Tensor:
        """``storage[rows, envs]`` via ``index_select`` on the flat (row, env) axis: one contiguous
        copy per element, about 10x faster than two-tensor advanced indexing for image rows."""
        flat_index = rows * self.num_envs + envs
        if storage.device.type == "cpu" and storage.dim() <= 3:  # small rows (actions, vectors): numpy is cheaper
            return torch.from_numpy(storage.numpy().reshape(-1, *storage.shape[2:])[flat_index.numpy()])
        flat_index = flat_index.to(self.device, non_blocking=True)
        picked = storage.flatten(0, 1).index_select(0, flat_index.flatten())
        return picked.view(*flat_index.shape, *storage.shape[2:])

    # ------------------------------------------------------------------ checkpoints
    _LAYOUT_KEYS = ("rows_per_env", "num_envs", "n_step", "frame_stack", "prioritized")

    def state_dict(self) -> dict[str, torch.Tensor | int | float]:
        """Everything needed to continue exactly; only tensors and Python scalars.

        Written rows only: a partly filled buffer is saved as copies of its written prefix; a full
        buffer returns its live storage tensors (save them before the next ``add``).
        """
        count = self._rows_written()

        def written(t: torch.Tensor) -> torch.Tensor:
            return t if count == self.rows_per_env else t[:count].clone()

        state: dict[str, torch.Tensor | int | float] = {k: getattr(self, k) for k in self._LAYOUT_KEYS}
        state.update(
            pos=self._pos, full=self._full, max_priority=self._max_priority,
            **{_obs_state_key(k): written(v) for k, v in self._obs.items()},
            actions=written(self._actions), rewards=written(self._rewards),
            terminated=written(self._terminated), truncated=written(self._truncated),
            valid=written(self._valid), first=written(self._first),
            next_first=self._next_first.clone(), rng_state=self._generator.get_state(),
        )
        if self._tree is not None:
            state["sum_tree"] = self._tree.tree.clone()
        if self._agent_id is not None:
            state["agent_id"] = written(self._agent_id)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from ``state_dict`` into a buffer built with the same layout arguments."""
        mismatched = [f"{k}: saved {state.get(k)!r}, buffer {getattr(self, k)!r}"
                      for k in self._LAYOUT_KEYS if state.get(k) != getattr(self, k)]
        if mismatched:
            raise ValueError("replay state does not match this buffer: " + "; ".join(mismatched))
        self._pos, self._full = int(state["pos"]), bool(state["full"])
        count = self._rows_written()
        for key, storage in self._obs.items():
            if _obs_state_key(key) not in state:
                raise ValueError(f"replay state has no observations '{_obs_state_key(key)}' "
                                 f"(it holds {sorted(k for k in state if k.startswith('obs'))})")
            storage[:count].copy_(state[_obs_state_key(key)])
        for name in ("actions", "rewards", "terminated", "truncated", "valid", "first"):
            getattr(self, f"_{name}")[:count].copy_(state[name])
        if self.discrete_actions is not None:
            low, high = self.discrete_actions
            actions = self._actions[:count]
            if bool(((actions < low) | (actions >= high)).any()):
                raise ValueError(f"replay state holds actions outside [{low}, {high}): not this run's replay")
        floats = {"rewards": self._rewards, "actions": self._actions,
                  **{f"observations '{k}'": v for k, v in self._obs.items()}}
        for what, storage in floats.items():  # NaN in a replayed value would only surface as a diverged loss
            if storage.is_floating_point() and not bool(torch.isfinite(storage[:count]).all()):
                raise ValueError(f"replay state holds non-finite {what}")
        self._next_first = state["next_first"].to("cpu", torch.bool).clone()
        self._max_priority = float(state["max_priority"])
        if self._tree is not None:
            self._tree.tree.copy_(state["sum_tree"])
            if not (bool(torch.isfinite(self._tree.tree).all()) and bool((self._tree.tree >= 0).all())):
                raise ValueError("replay state holds negative or non-finite priorities")
        if not (self._max_priority > 0 and self._max_priority < float("inf")):
            raise ValueError(f"replay state's max priority is {self._max_priority}")
        self._generator.set_state(state["rng_state"])
        self._agent_id = None
        if state.get("agent_id") is not None:
            ids = state["agent_id"].to("cpu", torch.int64)
            if tuple(ids.shape) != (count, self.num_envs) or bool((ids < 0).any()):
                raise ValueError(f"replay state's agent ids have shape {tuple(ids.shape)} (expected "
                                 f"{(count, self.num_envs)}) or negative ids")
            self._agent_id = torch.zeros((self.rows_per_env, self.num_envs), dtype=torch.int64)
            self._agent_id[:count].copy_(ids)

"""Symmetry augmentation of replayed transitions: a game that looks the same mirrored is learnt from both sides.

A board game's rules do not change when the board is mirrored (connect four: left-right) or turned (tic-tac-toe:
the 8 rotations and reflections of the square, the dihedral group D4). If ``g`` is such a symmetry, acting on
observations and on actions, then the transition ``(s, a, r, s')`` has a twin ``(g s, g a, r, g s')`` with the
same reward and discount, and the optimal action-value satisfies ``Q*(g s, g a) = Q*(s, a)``. Replaying each
sampled transition under a symmetry drawn uniformly from the group (identity included) multiplies the data by
the group's size at no simulation cost and teaches the network the invariance instead of hoping it generalises
to it. AlphaGo Zero trains on the 8 D4 transforms of each Go position and AlphaZero drops them only for chess and
shogi, whose rules are not symmetric (Silver et al. 2017, "Mastering the game of Go without human knowledge",
Methods: "data augmentation"; Silver et al. 2018). TD-Gammon-style value learners and Tianshou's board-game
examples do the same by hand.

The env declares its group (``env.unwrapped.symmetries()``, a list of :class:`Symmetry`, identity first) as
index arrays, so the augmentation is one gather per observation key on the replay's device:

* ``observation[key]``: ``flat_new = flat_old[index]`` over the key's flattened entries (an action mask is an
  observation key too: its index is the inverse of the action map, so that the new mask allows ``g a`` exactly
  where the old one allowed ``a``);
* ``action``: ``a_new = action[a_old]`` (a permutation of a Discrete action space).

:func:`check_symmetries` refuses a declaration that is not a group of permutations of the right sizes, or
whose mask index does not agree with its action map. The env's reward and termination must be invariant,
which only the env can promise (``TwoPlayerSeatEnv`` derives its maps from the board geometry and a test plays
mirrored games move by move against the real PettingZoo rules). So must its transitions, and in a two-player
seat env the opponent's reply is part of them: ``(g s, g a, r, g s')`` is a sample of the env only if the
opponent answers ``g s`` as it answers ``s``, turned by ``g``. The random opponent does; the heuristic one
nearly (it takes the lowest-numbered of several winning or blocking moves); a self-play snapshot, a network
that is not symmetric, does not, so there the twins stand for a symmetrised opponent, not the one played.

``train.replay.symmetries: true`` turns it on (Discrete actions only); the draws come from the replay's own
generator, so a resumed run draws the same symmetries.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import gymnasium as gym
import numpy as np
import torch

from rlkit.errors import ConfigError


@dataclass(frozen=True)
class Symmetry:
    """One transformation ``g``: ``observation`` maps each observation key (``None`` for a Box observation
    space) to an index over its flattened entries (``new = old.flatten()[index]``); ``action`` maps old
    Discrete actions to new ones (``a_new = action[a_old]``)."""

    observation: Mapping[str | None, np.ndarray]
    action: np.ndarray
    name: str = ""


def grid_symmetry(height: int, width: int, channels: int, cell_of: Callable[[int, int], tuple[int, int]],
                  action_of_cell: Mapping[tuple[int, int], int] | None, n_actions: int,
                  action_map: np.ndarray | None = None, name: str = "") -> tuple[np.ndarray, np.ndarray]:
    """The flattened index of an ``[H, W, C]`` board under the cell map ``cell_of(r, c) -> (r', c')`` (the new
    board's cell ``(r', c')`` shows the old board's ``(r, c)``), and the action map: ``action_map`` if given, else
    derived from ``action_of_cell`` (square games: action = cell)."""
    old = np.arange(height * width * channels).reshape(height, width, channels)
    new = np.empty_like(old)
    for r in range(height):
        for c in range(width):
            nr, nc = cell_of(r, c)
            new[nr, nc] = old[r, c]
    if action_map is None:
        action_map = np.empty(n_actions, dtype=np.int64)
        for (r, c), a in action_of_cell.items():
            action_map[a] = action_of_cell[cell_of(r, c)]
    return new.reshape(-1), np.asarray(action_map, dtype=np.int64)


def inverse(permutation: np.ndarray) -> np.ndarray:
    out = np.empty_like(permutation)
    out[permutation] = np.arange(len(permutation))
    return out


def check_symmetries(symmetries: list[Symmetry], observation_space: gym.Space, action_space: gym.Space,
                     mask_key: str | None = "action_mask", where: str = "env.symmetries()") -> None:
    """Refuse a declaration rlkit cannot apply exactly (a ValueError saying what is wrong)."""
    if not isinstance(action_space, gym.spaces.Discrete):
        raise ValueError(f"{where}: symmetries permute Discrete actions; the action space is {action_space}")
    if not symmetries:
        raise ValueError(f"{where}: no symmetries declared")
    n = int(action_space.n)
    spaces = dict(observation_space.spaces) if isinstance(observation_space, gym.spaces.Dict) \
        else {None: observation_space}
    for i, sym in enumerate(symmetries):
        label = f"{where}[{i}]{f' ({sym.name})' if sym.name else ''}"
        action = np.asarray(sym.action)
        if action.shape != (n,) or sorted(action.tolist()) != list(range(n)):
            raise ValueError(f"{label}: the action map must be a permutation of the {n} actions, got {action.tolist()}")
        if set(sym.observation) != set(spaces):
            raise ValueError(f"{label}: it maps observation keys {sorted(map(str, sym.observation))}, the space has "
                             f"{sorted(map(str, spaces))}")
        for key, space in spaces.items():
            index = np.asarray(sym.observation[key])
            size = int(np.prod(space.shape)) if space.shape else 1
            if index.shape != (size,) or sorted(index.tolist()) != list(range(size)):
                raise ValueError(f"{label}: the index of observation key {key!r} must be a permutation of its {size} "
                                 "entries")
        if mask_key in spaces and not np.array_equal(np.asarray(sym.observation[mask_key]), inverse(action)):
            raise ValueError(f"{label}: the '{mask_key}' index must be the inverse of the action map, so that the "
                             "new mask allows g(a) exactly where the old one allowed a")
    first = symmetries[0]
    if not (np.array_equal(first.action, np.arange(n)) and all(
            np.array_equal(np.asarray(first.observation[k]), np.arange(len(np.asarray(first.observation[k]))))
            for k in spaces)):
        raise ValueError(f"{where}[0] must be the identity (the untransformed transition is one of the draws)")


class SymmetryAugmenter:
    """The replay sample hook: each sampled transition is replayed under a symmetry drawn uniformly from the
    env's group (identity included), the same ``g`` for ``s``, ``a`` and ``s'``. Rewards, discounts, weights,
    priorities' indices and agent ids are unchanged (the rules are invariant)."""

    def __init__(self, symmetries: list[Symmetry]) -> None:
        self.count = len(symmetries)
        keys = list(symmetries[0].observation)
        self.index = {key: torch.as_tensor(np.stack([np.asarray(s.observation[key]) for s in symmetries]),
                                           dtype=torch.long) for key in keys}      # key -> [K, D]
        self.action = torch.as_tensor(np.stack([np.asarray(s.action) for s in symmetries]), dtype=torch.long)  # [K, A]
        self._device: torch.device | None = None

    def _to(self, device: torch.device) -> None:
        if self._device != device:
            self.index = {k: v.to(device) for k, v in self.index.items()}
            self.action = self.action.to(device)
            self._device = device

    def _apply(self, obs: Any, which: torch.Tensor) -> Any:
        if isinstance(obs, Mapping):
            return {key: self._apply_one(value, self.index[key], which) for key, value in obs.items()}
        return self._apply_one(obs, self.index[None], which)

    @staticmethod
    def _apply_one(value: torch.Tensor, index: torch.Tensor, which: torch.Tensor) -> torch.Tensor:
        flat = value.reshape(value.shape[0], -1)                                   # [B, D]
        return flat.gather(1, index[which]).view_as(value)                         # index[which]: [B, D]

    def __call__(self, batch: Any, ctx: Any) -> Any:
        which = torch.randint(0, self.count, (len(batch.rewards),), generator=ctx.generator)   # [B] on CPU
        device = batch.rewards.device
        self._to(device)
        which = which.to(device)
        actions = batch.actions.long()
        return dataclasses.replace(
            batch, obs=self._apply(batch.obs, which), next_obs=self._apply(batch.next_obs, which),
            actions=self.action[which, actions.view(-1)].view_as(actions).to(batch.actions.dtype))


def env_symmetries(envs: Any) -> list[Symmetry] | None:
    """The symmetry group a vector env's first sub-env declares (``unwrapped.symmetries()``), or None if it
    declares none or its sub-envs are out of reach."""
    sub_envs = getattr(envs, "envs", None)
    if not sub_envs:
        return None
    method = getattr(sub_envs[0].unwrapped, "symmetries", None)
    return list(method()) if callable(method) else None


def build_augmenter(enabled: bool, symmetries: list[Symmetry] | None, observation_space: gym.Space,
                    action_space: gym.Space, env_id: str = "the env") -> SymmetryAugmenter | None:
    """``train.replay.symmetries``' hook, or None when off; a ConfigError when the env has no usable group."""
    if not enabled:
        return None
    if symmetries is None:
        raise ConfigError(f"train.replay.symmetries: {env_id} declares no symmetries (an env declares them with a "
                          "symmetries() method on its unwrapped env, e.g. rlkit/ConnectFour-v0 and rlkit/TicTacToe-v0; "
                          "with env.vectorization: async they are out of reach: use sync); set it to false")
    try:
        check_symmetries(symmetries, observation_space, action_space, where=f"{env_id}: symmetries()")
    except ValueError as exc:
        raise ConfigError(f"train.replay.symmetries: {exc}") from None
    return SymmetryAugmenter(symmetries)

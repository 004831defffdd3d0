"""The agent interface: a Protocol, not a base class that owns the loop (see docs/design.md), and
``AgentConfig``, the base of every agent's config dataclass.

An agent owns its networks and optimizers only — never the env, the buffer or the logger — so the
loops in :mod:`rlkit.training.loops` drive any agent, online or offline (d3rlpy's ``fit`` / ``fit_online``
symmetry: both loops call the same ``update(batch)``).

Adding an agent touches three places: ``agents/<name>.py`` (config + agent), ``configs/<name>_*.yaml``
and one line in ``agents/__init__.py``'s ``AGENTS``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

import gymnasium as gym
import numpy as np
import torch

from rlkit.errors import ConfigError

Experience = Literal["transitions", "sequences"]


@dataclass
class AgentConfig:
    """Fields and checks every agent shares. Subclasses add their own fields (with docstrings) and call
    ``super().__post_init__()`` from theirs."""

    name: str = ""
    """The registry name (``agent: {name: dqn}``); fixed per subclass."""
    gamma: float = 0.99
    """Discount factor; the transition source applies it to n-step sums, the agent to bootstraps
    (sequence sources return undiscounted returns-to-go, the Decision Transformer's convention)."""

    experience: ClassVar[Experience] = "transitions"
    """The experience the agent learns from (Acme's adder choice): ``transitions`` (one-step or n-step,
    ``rlkit.experience.replay.ReplayBuffer``) or ``sequences`` (fixed-length windows with masks,
    ``rlkit.experience.sequences.SequenceBuffer``). Not a config key: it is what the agent's update is written for."""

    def __post_init__(self) -> None:
        if not 0.0 < self.gamma <= 1.0:
            raise ConfigError(f"agent.gamma must lie in (0, 1], got {self.gamma}")

    # shared checks, so every agent words the same mistake the same way
    def check_positive(self, *names: str) -> None:
        for name in names:
            value = getattr(self, name)
            if value is not None and not (0.0 < value < math.inf):  # also rejects NaN
                raise ConfigError(f"agent.{name} must be a finite number > 0, got {value}")

    def check_unit_interval(self, *names: str, open_low: bool = False) -> None:
        for name in names:
            value = getattr(self, name)
            low_ok = value > 0.0 if open_low else value >= 0.0
            if not (low_ok and value <= 1.0):
                raise ConfigError(f"agent.{name} must lie in {'(' if open_low else '['}0, 1], got {value}")

    def check_widths(self, *names: str) -> None:
        for name in names:
            widths = getattr(self, name)
            if not widths or any(w < 1 for w in widths):
                raise ConfigError(f"agent.{name} must be a non-empty list of widths >= 1, got {widths}")

    def check_at_least(self, minimum: int, *names: str) -> None:
        for name in names:
            if getattr(self, name) < minimum:
                raise ConfigError(f"agent.{name} must be >= {minimum}, got {getattr(self, name)}")


@runtime_checkable
class Agent(Protocol):
    """What the loops, evaluation, ``rlkit collect``, export and ``rlkit.load`` rely on.

    Built as ``AgentClass(cfg, observation_space, action_space, device, seed)``. Class attributes:
    ``acting_modules`` (the ``nn.Module`` attributes ``act`` needs; what ``rlkit export`` writes) and
    ``supports_prioritized_replay`` (``update`` accepts ``update_priorities``).
    """

    acting_modules: ClassVar[tuple[str, ...]]

    def act(self, obs: Any, explore: bool, episode_start: np.ndarray | None = None,
            epsilon: float | None = None) -> np.ndarray:
        """Actions for a batch of observations (``[N, *obs_shape]``, or a dict of such arrays).

        ``explore``: the training-time behaviour (its exploration schedule) vs the evaluation policy.
        ``episode_start`` (bool ``[N]``): True where ``obs`` is the first observation of an episode;
        agents with memory (recurrent, Decision Transformer) reset their context there.
        ``epsilon``: with this probability act uniformly at random (the evaluation protocol of Atari
        papers; ``rlkit collect --epsilon``); None or 0 is the agent's own policy.
        """

    def update(self, batch: Any) -> dict[str, torch.Tensor | float]:
        """One gradient step. Returns metrics as 0-dim tensors (or floats), read only at log time so
        that an update never waits on the device (no ``.item()`` per update).

        Optional: agents with ``supports_prioritized_replay`` also accept ``update_priorities`` (a
        callable ``(indices, priorities)``, passed by the loop when prioritized replay is on) and call
        it with the batch's new priorities (|TD error|): the only way information flows back to the
        experience source, since the agent never holds the buffer.
        """

    # Optional: ``set_env_steps(env_steps: int)``. Agents with schedules over env steps (DQN's epsilon,
    # SAC's initial random steps) implement it; the online loop calls it with its count of real
    # transitions (autoreset steps excluded) at the start and after every collect step.

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly: weights, optimizers, counters, RNG states.

        Only tensors, Python scalars, strings, lists and dicts, so checkpoints load with
        ``torch.load(weights_only=True)``.
        """

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def check_bounded_box_actions(agent: str, action_space: gym.Space) -> None:
    """Agents whose policy lives in [-1, 1]^A and rescales to the env's bounds need a Box with finite ones."""
    if not isinstance(action_space, gym.spaces.Box):
        raise ConfigError(f"{agent} needs a continuous (Box) action space, the env has {action_space}; "
                          "use DQN for discrete actions")
    if not (np.all(np.isfinite(action_space.low)) and np.all(np.isfinite(action_space.high))):
        raise ConfigError(f"{agent} rescales actions to the env's bounds, which must be finite: {action_space}")


def epsilon_mix(actions: np.ndarray, epsilon: float | None, action_space: gym.Space,
                rng: np.random.Generator) -> np.ndarray:
    """Replace each action by a uniformly random one with probability ``epsilon`` (agents whose own
    exploration is not epsilon-greedy use this for ``act(..., epsilon=)``)."""
    if not epsilon:
        return actions
    n = len(actions)
    mask = rng.random(n) < epsilon
    if not mask.any():
        return actions
    actions = np.array(actions, copy=True)
    if isinstance(action_space, gym.spaces.Discrete):
        actions[mask] = action_space.start + rng.integers(action_space.n, size=int(mask.sum()))
    elif isinstance(action_space, gym.spaces.Box):
        low, high = np.broadcast_to(action_space.low, action_space.shape), np.broadcast_to(action_space.high, action_space.shape)
        random = rng.uniform(low, high, size=(int(mask.sum()), *action_space.shape))
        actions[mask] = random.astype(actions.dtype)
    else:
        raise ConfigError(f"epsilon exploration is not defined for action space {action_space}")
    return actions


def metric_values(metrics: dict[str, torch.Tensor | float]) -> dict[str, float]:
    """Metrics as Python floats (one host sync for all of them)."""
    tensors = {k: v for k, v in metrics.items() if isinstance(v, torch.Tensor)}
    values = {k: float(v) for k, v in metrics.items() if not isinstance(v, torch.Tensor)}
    if tensors:
        stacked = torch.stack([t.detach().double().reshape(()) for t in tensors.values()]).cpu().tolist()
        values.update(zip(tensors, stacked))
    return values

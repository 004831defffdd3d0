"""The agent interface: a Protocol, not a base class that owns the loop (see docs/design.md).

An agent owns its networks and optimizers only — never the env, the buffer or the logger —
so the loops in :mod:`rlkit.loops` can drive any agent, and an agent with an unusual schedule
can compose the same pieces.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch


@runtime_checkable
class Agent(Protocol):
    def act(self, obs: np.ndarray, explore: bool) -> np.ndarray:
        """Actions for a batch of observations ``[N, *obs_shape]`` (one per sub-env)."""

    def update(self, batch: Any) -> tuple[dict[str, float], torch.Tensor | None]:
        """One gradient step. Returns (metrics, new priorities for prioritized replay or None).

        The priorities are the only way information flows back to the replay buffer: the agent
        never holds the buffer.
        """

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly: weights, optimizers, counters, RNG states.

        Only tensors, Python scalars, strings, lists and dicts, so checkpoints load with
        ``torch.load(weights_only=True)``.
        """

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

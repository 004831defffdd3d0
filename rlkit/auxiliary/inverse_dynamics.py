"""Inverse dynamics: predict the action from the encodings of the states before and after it.

Papers: Agrawal et al. (2016), "Learning to Poke by Poking" (the inverse model as a representation
learner); Pathak et al. (2017), "Curiosity-driven Exploration by Self-supervised Prediction" (ICM), eq. (2):
the features phi are shaped by predicting a_t from (phi(s_t), phi(s_t+1)), so they keep what the agent
controls and drop what it cannot affect.

With phi the attached part (the agent's encoder by default) and g this module's head (an MLP):
    a_hat_t = g([phi(s_t), phi(s_t+1)])
    L = CE(a_hat_t, a_t)                           Discrete actions (logits over the n actions)
    L = 1/A sum_j (a_hat_tj - a~_tj)^2              Box actions, a~ = (a - c) / h normalised by the bounds
                                                    (c = (high + low) / 2, h = (high - low) / 2; raw if unbounded)
The batch must hold one-step transitions (s_t+1 = ``batch.next_obs``): a run with ``train.replay.n_step``
> 1 is refused at start. Gradients flow into phi through ``agent.encode``; the head trains in the same step
(its parameters join the optimizer of phi, so they share its learning rate and its gradient-norm clipping).
The loss is a plain batch mean: prioritized replay's importance weights correct the TD loss's bias toward
high-error rows, which a supervised loss on the observed action does not have.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F

from rlkit.contract.auxiliary import AuxConfig, AuxModule
from rlkit.contract.networks import mlp
from rlkit.errors import ConfigError


@dataclass
class InverseDynamicsConfig(AuxConfig):
    name: str = "inverse_dynamics"
    hidden: list[int] = field(default_factory=lambda: [256])
    """Hidden widths of the head g on [phi(s_t), phi(s_t+1)]."""

    module: ClassVar[type[AuxModule]]
    needs_one_step: ClassVar[bool] = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if any(w < 1 for w in self.hidden):
            raise ConfigError(f"hidden widths must be >= 1, got {self.hidden}")


class InverseDynamics(AuxModule):
    """g: ``[B, 2F]`` -> logits ``[B, n]`` (Discrete) or normalised actions ``[B, A]`` (Box)."""

    def __init__(self, cfg: InverseDynamicsConfig, feature_dim: int, observation_space: gym.Space,
                 action_space: gym.Space) -> None:
        super().__init__(cfg, feature_dim, observation_space, action_space)
        self.discrete = isinstance(action_space, gym.spaces.Discrete)
        if self.discrete:
            out_dim, self.start = int(action_space.n), int(action_space.start)
        elif isinstance(action_space, gym.spaces.Box):
            out_dim = int(np.prod(action_space.shape))
            low, high = action_space.low.reshape(-1), action_space.high.reshape(-1)
            bounded = bool(np.all(np.isfinite(low)) and np.all(np.isfinite(high)))
            center = (high + low) / 2 if bounded else np.zeros(out_dim)
            half = (high - low) / 2 if bounded else np.ones(out_dim)
            half = np.where(half == 0, 1.0, half)  # a fixed dimension (low == high): its target is 0, not 0/0
            self.register_buffer("center", torch.as_tensor(center, dtype=torch.float32), persistent=False)
            self.register_buffer("half_range", torch.as_tensor(half, dtype=torch.float32), persistent=False)
        else:
            raise ConfigError(f"inverse_dynamics predicts Discrete or Box actions, the env has {action_space}")
        self.head = mlp(2 * feature_dim, cfg.hidden, out_dim)

    def loss(self, batch: Any, agent: Any) -> torch.Tensor:
        z = agent.encode(batch.obs, self.part)                                   # [B, F]
        z_next = agent.encode(batch.next_obs, self.part)                         # [B, F]
        prediction = self.head(torch.cat([z, z_next], dim=-1))                  # [B, n] or [B, A]
        if self.discrete:
            return F.cross_entropy(prediction, batch.actions.reshape(-1).long() - self.start)
        target = (batch.actions.reshape(len(prediction), -1).float() - self.center) / self.half_range
        return (prediction - target).square().mean()


InverseDynamicsConfig.module = InverseDynamics

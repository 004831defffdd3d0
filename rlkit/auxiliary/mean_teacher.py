"""Mean Teacher: consistency between the encoder and its EMA copy under different augmentations.

Tarvainen & Valpola (2017), "Mean teachers are better role models", sec. 2: a student f(x; theta) and a teacher
with the exponential moving average of its weights, theta'_t = alpha theta'_{t-1} + (1 - alpha) theta_t (eq. 1;
alpha = 0.99 while ramping up, 0.999 after), and a consistency cost between their outputs on two noisy views:

    J(theta) = E_{x, eta, eta'} || f(x, theta', eta') - f(x, theta, eta) ||^2      (no gradient into theta')

Here f is the attached part (the agent's encoder) and the views are the augmentations of
:mod:`rlkit.auxiliary.augment` (shift for images, Gaussian noise for vectors); the squared distance is averaged
over the batch and the F features. The teacher is declared through the agent contract as
``momentum_of(<part>, copy, tau)`` with tau = 1 - alpha (``aux.<label>.teacher``), updated after every step of the
student's optimizer. With identical views and teacher == student the loss is exactly 0.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, ClassVar

import gymnasium as gym
import torch
from torch import nn

from rlkit.auxiliary.augment import augment, check_augmentation, check_momentum_view_fields
from rlkit.auxiliary.batches import batch_observations
from rlkit.contract.auxiliary import AuxConfig, AuxModule
from rlkit.contract.parts import Part, momentum_of


def consistency_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """``mean_{i, f} (student - sg(teacher))^2`` of features ``[B, F]``."""
    return (student - teacher.detach()).square().mean()


@dataclass
class MeanTeacherConfig(AuxConfig):
    name: str = "mean_teacher"
    tau: float = 0.01
    """1 - alpha: the teacher's EMA rate per optimizer step (the paper's alpha = 0.99)."""
    augment: str = "auto"
    """As CURL's: ``shift`` | ``crop`` | ``noise`` | ``none`` | ``auto``."""
    pad: int = 4
    sigma: float = 0.1

    module: ClassVar[type[AuxModule]]

    def __post_init__(self) -> None:
        super().__post_init__()
        check_momentum_view_fields(self.augment, self.tau, self.pad, self.sigma)


class MeanTeacher(AuxModule):
    """No parameters of its own; the teacher is a declared momentum part (:meth:`extra_parts`)."""

    def __init__(self, cfg: MeanTeacherConfig, feature_dim: int, observation_space: gym.Space,
                 action_space: gym.Space) -> None:
        super().__init__(cfg, feature_dim, observation_space, action_space)
        self.augment_kind = check_augmentation(cfg.augment, observation_space, "agent.aux (mean_teacher)")

    def extra_parts(self, source: nn.Module) -> dict[str, Part]:
        return {"teacher": momentum_of(self.part, copy.deepcopy(source).requires_grad_(False), self.cfg.tau)}

    def loss(self, batch: Any, agent: Any) -> torch.Tensor:
        obs, cfg = batch_observations(batch), self.cfg
        student = agent.encode(augment(obs, self.augment_kind, cfg.pad, cfg.sigma), self.part)          # [B, F]
        with torch.no_grad():
            teacher = agent.encode(augment(obs, self.augment_kind, cfg.pad, cfg.sigma), self.part_names["teacher"])
        return consistency_loss(student, teacher)


MeanTeacherConfig.module = MeanTeacher

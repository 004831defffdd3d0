"""CURL: contrastive learning of the encoder against its momentum copy, on two augmentations of each observation.

Srinivas, Laskin, Abbeel (2020), "CURL: Contrastive Unsupervised Representations for Reinforcement Learning",
sec. 4; the momentum key encoder of MoCo (He et al. 2020, eq. 2). With f_q the attached part (the agent's
encoder, trained by the agent's loss and this one) and f_k its momentum copy:

    q_i = f_q(aug(o_i)),   k_i = sg(f_k(aug'(o_i)))          two independent augmentations (random crop / shift)
    L   = InfoNCE(q, k; W) = -1/B sum_i log softmax_j(q_i^T W k_j)_i     bilinear similarity (CURL eq. 3), in-batch
                                                                       negatives (rlkit.auxiliary.infonce)
    theta_k <- tau * theta_q + (1 - tau) * theta_k           after every step of f_q's optimizer (CURL: tau = 0.05)

The key encoder is declared through the agent contract as ``momentum_of(<part>, copy, tau)`` (named
``aux.<label>.key_encoder``): checkpoints and exact resume carry it, device moves move it, DDP leaves it alone,
and the contract updates it after each optimizer step. Deviations: CURL initialises W uniformly in [0, 1) on
its 50 layer-normalised features; the agents' encoders here end in ReLU features of any scale (the Nature CNN:
512), so W starts at I / sqrt(F) (scaled dot product) for stable first logits. The RL loss itself sees the
un-augmented observations unless DrQ is on (``agent.drq`` of SAC / DQN), as in CURL's shared-crop setup only then.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import gymnasium as gym
import torch
from torch import nn

from rlkit.auxiliary.augment import augment, check_augmentation, check_momentum_view_fields
from rlkit.auxiliary.batches import batch_observations
from rlkit.auxiliary.infonce import info_nce
from rlkit.contract.auxiliary import AuxConfig, AuxModule
from rlkit.contract.parts import Part, momentum_of
from rlkit.errors import ConfigError


@dataclass
class CURLConfig(AuxConfig):
    name: str = "curl"
    tau: float = 0.05
    """The key encoder's EMA rate per optimizer step (CURL's encoder_tau for DMC, 0.05)."""
    temperature: float = 1.0
    """Divides the bilinear logits (CURL: 1, W learns the scale)."""
    augment: str = "auto"
    """``shift`` (pad + random crop back to size, DrQ), ``crop`` (random crop resized back, CURL), ``noise``
    (vectors), ``auto`` (shift for uint8 images, noise for vectors)."""
    pad: int = 4
    """Pixels of shift / crop margin (DrQ: 4 on 84 x 84)."""
    sigma: float = 0.1
    """Standard deviation of ``noise`` augmentation (vector observations)."""

    module: ClassVar[type[AuxModule]]

    def __post_init__(self) -> None:
        super().__post_init__()
        check_momentum_view_fields(self.augment, self.tau, self.pad, self.sigma)
        if not 0.0 < self.temperature < math.inf:
            raise ConfigError(f"temperature must be > 0, got {self.temperature}")


class CURL(AuxModule):
    """W ``[F, F]``; the key encoder is a declared momentum part (:meth:`extra_parts`)."""

    def __init__(self, cfg: CURLConfig, feature_dim: int, observation_space: gym.Space, action_space: gym.Space) -> None:
        super().__init__(cfg, feature_dim, observation_space, action_space)
        self.augment_kind = check_augmentation(cfg.augment, observation_space, "agent.aux (curl)")
        self.W = nn.Parameter(torch.eye(feature_dim) / math.sqrt(feature_dim))

    def extra_parts(self, source: nn.Module) -> dict[str, Part]:
        key_encoder = copy.deepcopy(source).requires_grad_(False)
        return {"key_encoder": momentum_of(self.part, key_encoder, self.cfg.tau)}

    def loss(self, batch: Any, agent: Any) -> torch.Tensor:
        obs = batch_observations(batch)
        cfg = self.cfg
        q = agent.encode(augment(obs, self.augment_kind, cfg.pad, cfg.sigma), self.part)                # [B, F]
        with torch.no_grad():
            k = agent.encode(augment(obs, self.augment_kind, cfg.pad, cfg.sigma), self.part_names["key_encoder"])
        return info_nce(q, k, cfg.temperature, self.W)


CURLConfig.module = CURL

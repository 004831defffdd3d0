"""CPC: predict the encoding k steps ahead from a context, one matrix W_k per offset, in-batch negatives.

van den Oord, Li, Vinyals (2018), "Representation Learning with Contrastive Predictive Coding", sec. 2: an
encoder z_t = g_enc(o_t) (the attached part), an autoregressive context c_t = g_ar(z_<=t) (a GRU), and per
offset k a log-bilinear score f_k(o_{t+k}, c_t) = exp(z_{t+k}^T W_k c_t) (eq. 3), trained by InfoNCE (eq. 4;
:mod:`rlkit.auxiliary.infonce`) with the other rows of the batch as negatives:

    L = 1/|K| sum_{k in K} InfoNCE(queries = c_t, keys = z_{t+k}; W_k)

Gradients reach the encoder through both z_{t+k} and c_t. What the batch must hold (checked at start by
:meth:`CPCConfig.check_run`, one line when the run cannot supply it):

- transition batches (DQN, SAC, MPO, BC): only ``next_obs``, which lies ``train.replay.n_step`` steps ahead, so
  exactly one offset, equal to n_step; the context is the GRU over the single step, c_t = g_ar(z_t);
- sequence batches (the Decision Transformer's fixed-length windows, ``rlkit.experience.sequences``): any offsets
  below the window length; c_t = g_ar(z_1..z_t) over the window (left padding enters as zero features), one
  anchor t drawn per window and offset among the steps with t + k inside the episode.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import gymnasium as gym
import torch
from torch import nn

from rlkit.auxiliary.batches import encode_windows, future_anchors
from rlkit.auxiliary.infonce import info_nce
from rlkit.contract.auxiliary import AuxConfig, AuxModule
from rlkit.errors import ConfigError
from rlkit.experience.sequences import Sequences


def check_offsets(offsets: list[int], run: Any, experience: str, where: str) -> None:
    """Whether a run can supply observations ``offsets`` steps ahead (see the module docstring)."""
    if experience == "transitions":
        n_step = run.train.replay.n_step
        if len(offsets) != 1 or offsets[0] != n_step:
            raise ConfigError(f"{where}: on transition batches the only future observation is next_obs, "
                              f"train.replay.n_step={n_step} steps ahead; set offsets: [{n_step}] (or learn from "
                              f"sequences, e.g. agent decision_transformer, for offsets {offsets})")
    else:
        length = run.agent.sequence_length
        if max(offsets) >= length:
            raise ConfigError(f"{where}: offsets {offsets} reach past the {length}-step windows; keep them below "
                              f"{length} or lengthen the windows")


@dataclass
class CPCConfig(AuxConfig):
    name: str = "cpc"
    offsets: list[int] = field(default_factory=lambda: [1])
    """The k of W_k: steps ahead to predict (transitions: exactly [train.replay.n_step])."""
    context: str = "gru"
    """g_ar: ``gru`` (the paper) or ``none`` (c_t = z_t)."""
    temperature: float = 1.0

    module: ClassVar[type[AuxModule]]
    experience: ClassVar[tuple[str, ...]] = ("transitions", "sequences")

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.offsets or any(k < 1 for k in self.offsets) or len(set(self.offsets)) != len(self.offsets):
            raise ConfigError(f"offsets must be distinct steps >= 1, got {self.offsets}")
        if self.context not in ("gru", "none"):
            raise ConfigError(f"context must be gru or none, got {self.context!r}")
        if not 0.0 < self.temperature < math.inf:
            raise ConfigError(f"temperature must be > 0, got {self.temperature}")

    def check_run(self, run: Any, experience: str, where: str) -> None:
        check_offsets(self.offsets, run, experience, where)


class CPC(AuxModule):
    """g_ar: GRU ``F -> F``; W_k ``[F, F]`` per offset."""

    def __init__(self, cfg: CPCConfig, feature_dim: int, observation_space: gym.Space, action_space: gym.Space) -> None:
        super().__init__(cfg, feature_dim, observation_space, action_space)
        self.gru = nn.GRU(feature_dim, feature_dim, batch_first=True) if cfg.context == "gru" else None
        self.W = nn.ParameterList(nn.Parameter(torch.randn(feature_dim, feature_dim) / feature_dim)
                                  for _ in cfg.offsets)

    def _context(self, z: torch.Tensor) -> torch.Tensor:
        """``[B, L, F]`` -> ``[B, L, F]``: c_t over z_1..z_t."""
        return z if self.gru is None else self.gru(z)[0]

    def loss(self, batch: Any, agent: Any) -> torch.Tensor:
        cfg = self.cfg
        if not isinstance(batch, Sequences):  # transitions: the one offset is next_obs
            z, z_next = agent.encode(batch.obs, self.part), agent.encode(batch.next_obs, self.part)   # [B, F]
            c = self._context(z[:, None])[:, 0]                                                       # [B, F]
            return info_nce(c, z_next, cfg.temperature, self.W[0])
        z = encode_windows(agent, self.part, batch.obs) * batch.mask[..., None]                       # [B, L, F]
        c = self._context(z)                                                                          # [B, L, F]
        losses = []
        for k, W in zip(cfg.offsets, self.W):
            rows, t = future_anchors(batch.mask, k)
            if len(rows) > 1:  # a contrast needs a negative
                losses.append(info_nce(c[rows, t], z[rows, t + k], cfg.temperature, W))
        return torch.stack(losses).mean() if losses else z.sum() * 0.0


CPCConfig.module = CPC

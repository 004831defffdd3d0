"""Behaviour cloning (BC): supervised learning of the dataset's actions from its observations.

Papers and designs:
  - Pomerleau (1991), "Efficient Training of Artificial Neural Networks for Autonomous Navigation"
    (ALVINN): a network trained by regression on a driver's actions.
  - Bain & Sammut (1995), "A Framework for Behavioural Cloning": the name and the framing (imitate the
    demonstrator's state -> action map; no rewards, no bootstrapping).
  - d3rlpy's ``BC`` / ``DiscreteBC`` (``d3rlpy/algos/qlearning/bc.py``, ``torch/bc_impl.py``): the design
    here — a deterministic policy trained with MSE or a Gaussian policy trained by maximum likelihood for
    continuous actions, a categorical policy trained with cross-entropy for discrete ones, Adam at 1e-3,
    256-256 MLPs — and BC as the offline baseline trained by the same ``update(batch)`` as every agent.

Notation: (s_b, a_b) = (``batch.obs``, ``batch.actions``); rewards, next observations and discounts are
ignored. For Box actions the dataset action is normalised to [-1, 1] by the Box bounds,
    a~ = (a - c) / h,     c = (high + low) / 2,  h = (high - low) / 2,
so one learning rate fits every action scale; the policy outputs mu(s) in those units (no tanh: a
saturated demonstrator's +-1 is reached exactly) and ``act`` clips mu to [-1, 1] and rescales.

Losses (per sample, averaged over the batch with the batch's weights, all ones for uniform sampling):
  mse       (Box, ``loss: mse``):        L = 1/A sum_j (mu_j(s) - a~_j)^2
  gaussian  (Box, ``loss: gaussian``):   L = -log N(a~; mu(s), diag sigma(s)^2)
                                           = sum_j [ (a~_j - mu_j)^2 / (2 sigma_j^2) + log sigma_j + 1/2 log 2 pi ]
            with a state-dependent log sigma(s) from the same head, clamped to [log_std_min, log_std_max];
            no tanh squashing (the likelihood of a~ on the boundary is finite). The evaluation policy is mu.
  discrete  (Discrete, automatic):       L = -log softmax(logits(s))[a - start]            (cross-entropy)
            The evaluation policy is the argmax.

Filtered BC (``top_fraction`` < 1, the Decision Transformer paper's "%BC" baseline) is the same loss on the
dataset's best episodes by return only (:func:`top_episodes`).

``act(explore=True)`` samples the learned distribution (gaussian: mu + sigma * eps, clipped; discrete: the
categorical); ``mse`` has no distribution, so exploring acts as evaluating. ``epsilon`` mixes in uniform
actions (:func:`rlkit.contract.agent.epsilon_mix`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar, Literal

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rlkit.contract.agent import Agent, AgentConfig, BoxActions, Capabilities, StepRecord, epsilon_mix
from rlkit.contract.networks import EncoderConfig, ObservationStandardizer, make_encoder, mlp
from rlkit.contract.parts import acting, trains
from rlkit.errors import ConfigError
from rlkit.experience.replay import Transitions

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


@dataclass
class BCConfig(AgentConfig):
    name: str = "bc"
    loss: Literal["mse", "gaussian"] = "mse"
    """Loss for Box actions: ``mse`` (deterministic policy, squared error in normalised units) or ``gaussian``
    (diagonal Gaussian with a learned state-dependent std, negative log-likelihood; acts with the mean).
    Discrete actions always use cross-entropy."""
    lr: float = 1e-3
    """Adam learning rate (d3rlpy BC: 1e-3)."""
    hidden: list[int] = field(default_factory=lambda: [256, 256])
    """Hidden widths of the policy MLP after the encoder (d3rlpy's default encoder: 256, 256)."""
    weight_decay: float = 0.0
    """L2 penalty of Adam (``torch.optim.Adam(weight_decay=)``); 0: none."""
    max_grad_norm: float | None = None
    """Clip the global gradient norm (None: no clipping)."""
    log_std_min: float = -5.0
    """Lower clamp of the Gaussian policy's log std (``loss: gaussian``)."""
    log_std_max: float = 2.0
    """Upper clamp of the Gaussian policy's log std (``loss: gaussian``)."""
    normalize_obs: bool = False
    """Standardise vector observations by the dataset's per-dimension mean and std (CORL's BC and the Decision
    Transformer do; kept in the policy's weights, so exports act without the data). False: raw observations."""
    top_fraction: float = 1.0
    """Filtered (or %) BC, the Decision Transformer paper's second baseline: train on the episodes with the
    highest returns only, best first, as long as they hold at most this share of the dataset's steps (at least
    one episode); 1.0: all of them (plain BC). The DT reference code's ``pct_traj`` rule (0.1: "10% BC")."""

    resumable: ClassVar[frozenset[str]] = frozenset({"max_grad_norm", "log_std_min", "log_std_max"})
    optimizer_settings: ClassVar[Mapping[str, tuple[tuple[str, str], ...]]] = {
        "lr": (("optimizer", "lr"),), "weight_decay": (("optimizer", "weight_decay"),)}

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.loss not in ("mse", "gaussian"):
            raise ConfigError(f"agent.loss must be 'mse' or 'gaussian', got {self.loss!r}")
        self.check_positive("lr", "max_grad_norm")
        self.check_unit_interval("top_fraction", open_low=True)
        self.check_widths("hidden")
        if not (0.0 <= self.weight_decay < math.inf):
            raise ConfigError(f"agent.weight_decay must be a finite number >= 0, got {self.weight_decay}")
        if not (math.isfinite(self.log_std_min) and math.isfinite(self.log_std_max)
                and self.log_std_min < self.log_std_max):
            raise ConfigError(f"agent.log_std_min ({self.log_std_min}) must be < agent.log_std_max "
                              f"({self.log_std_max}), both finite")


    def select_episodes(self, episodes: list) -> list:
        """The top ``top_fraction`` of the data by episode return (:func:`top_episodes`)."""
        return episodes if self.top_fraction >= 1.0 else top_episodes(episodes, self.top_fraction)


def top_episodes(episodes: list, fraction: float) -> list:
    """The episodes with the highest returns, best first, while their steps add up to at most ``fraction`` of
    all steps; always the best one (the reference code's ``pct_traj``). Ties keep dataset order."""
    returns = np.array([float(np.sum(e.rewards)) for e in episodes])
    lengths = np.array([len(e.actions) for e in episodes])
    budget = fraction * lengths.sum()
    order = np.argsort(-returns, kind="stable")
    kept, steps = [order[0]], lengths[order[0]]
    for i in order[1:]:
        if steps + lengths[i] > budget:
            break
        kept.append(i)
        steps += lengths[i]
    return [episodes[i] for i in sorted(kept)]


# --------------------------------------------------------------------------------------
# Losses (pure functions: the tests check them against hand computations and torch.distributions)
# --------------------------------------------------------------------------------------


def mse_loss(mean: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1/A sum_j (mean_j - target_j)^2: ``[B, A]`` each -> ``[B]``."""
    return (mean - target).square().mean(dim=-1)


def gaussian_nll(mean: torch.Tensor, log_std: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """-log N(target; mean, diag exp(log_std)^2) summed over the action dimension: ``[B, A]`` each -> ``[B]``."""
    z = (target - mean) * torch.exp(-log_std)
    return (0.5 * z.square() + log_std + _HALF_LOG_2PI).sum(dim=-1)


def cross_entropy(logits: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """-log softmax(logits)[action]: logits ``[B, n]``, action indices ``[B]`` -> ``[B]``."""
    return F.cross_entropy(logits, actions, reduction="none")


# --------------------------------------------------------------------------------------
# Network
# --------------------------------------------------------------------------------------


class Policy(nn.Module):
    """obs ``[B, *obs_shape]`` (or a dict of such) -> ``[B, out_dim]``: the mean (mse), mean and log std
    (gaussian, ``2A``) or the logits (discrete, ``n``)."""

    def __init__(self, observation_space: gym.Space, out_dim: int, hidden: list[int],
                 encoder_hidden: list[int] = (), normalize_obs: bool = False,
                 encoder_kind: str | EncoderConfig = "auto") -> None:
        super().__init__()
        self.standardize = ObservationStandardizer(observation_space, normalize_obs)  # identity unless enabled
        self.encoder = make_encoder(observation_space, encoder_hidden, encoder_kind)  # [B, D]
        self.net = mlp(self.encoder.out_dim, hidden, out_dim)     # [B, out_dim]

    def forward(self, obs: torch.Tensor | dict[str, torch.Tensor]) -> torch.Tensor:
        return self.net(self.encoder(self.standardize(obs)))


# --------------------------------------------------------------------------------------
# Agent
# --------------------------------------------------------------------------------------


class BC(Agent):
    """Behaviour cloning: ``act`` is the cloned policy, ``update`` one supervised step on a batch."""

    capabilities = Capabilities(online=False)  # it clones a dataset's actions: cloning its own would teach nothing

    def __init__(self, cfg: BCConfig, observation_space: gym.Space, action_space: gym.Space,
                 device: torch.device | str = "cpu", seed: int = 0) -> None:
        super().__init__(cfg, observation_space, action_space, device)
        self.discrete = isinstance(action_space, gym.spaces.Discrete)
        if self.discrete:
            self.n_actions, self.action_start = int(action_space.n), int(action_space.start)
            out_dim = self.n_actions
        elif isinstance(action_space, gym.spaces.Box):
            if not (np.all(np.isfinite(action_space.low)) and np.all(np.isfinite(action_space.high))):
                raise ConfigError(f"BC normalises Box actions by their bounds, which must be finite: {action_space}")
            self.actions = BoxActions(action_space, self.device)
            out_dim = 2 * self.actions.dim if cfg.loss == "gaussian" else self.actions.dim
        else:
            raise ConfigError(f"BC needs a Box or Discrete action space, the data has {action_space}")

        self.policy = Policy(observation_space, out_dim, cfg.hidden, cfg.encoder_hidden,
                             cfg.normalize_obs, cfg.encoder).to(self.device)
        # fused Adam: one kernel for all parameters instead of ~6 ops per tensor
        fused = self.device.type in ("cpu", "cuda")
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                                          fused=fused)
        self.rng = np.random.default_rng(seed)  # sampled actions and epsilon in act()
        self.declare(parts={"policy": acting(self.policy)}, optimizers={"optimizer": trains(self.optimizer, "policy")},
                     generators={"rng": self.rng}, encoder="policy.encoder",
                     encoder_inputs=self.policy.standardize if cfg.normalize_obs else None)

    def observe_dataset(self, dataset) -> None:
        """``normalize_obs``: the dataset's observation mean and std into the policy's buffers."""
        self.policy.standardize.fit(dataset.episodes)

    @property
    def gaussian(self) -> bool:
        return not self.discrete and self.cfg.loss == "gaussian"

    def _heads(self, obs) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Box: mean ``[B, A]`` and clamped log std ``[B, A]`` (gaussian) or None (mse)."""
        out = self.policy(obs)
        if not self.gaussian:
            return out, None
        mean, log_std = out.chunk(2, dim=-1)
        return mean, log_std.clamp(self.cfg.log_std_min, self.cfg.log_std_max)

    # ------------------------------------------------------------------ acting
    @torch.no_grad()
    def act(self, step: StepRecord, explore: bool, epsilon: float | None = None) -> np.ndarray:
        """Actions for a batch: the mean clipped to the Box (argmax for Discrete); ``explore`` samples the
        learned distribution (gaussian, discrete); with probability ``epsilon`` a uniform action."""
        obs = step.obs
        if self.discrete:
            logits = self.policy(obs)                                             # [n, n_actions]
            if explore:
                probs = torch.softmax(logits.double(), dim=-1).cpu().numpy()
                index = np.array([self.rng.choice(self.n_actions, p=p / p.sum()) for p in probs])
            else:
                index = logits.argmax(dim=-1).cpu().numpy()
            actions = (index + self.action_start).astype(np.int64)
        else:
            mean, log_std = self._heads(obs)                                     # [n, A]
            if explore and log_std is not None:
                noise = torch.from_numpy(self.rng.standard_normal(mean.shape, dtype=np.float32)).to(self.device)
                mean = mean + log_std.exp() * noise
            actions = self.actions.to_env(mean.clamp(-1.0, 1.0))
        return epsilon_mix(actions, epsilon, self.action_space, self.rng)

    # ------------------------------------------------------------------ learning
    def update(self, batch: Transitions) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        metrics: dict[str, torch.Tensor] = {}

        # loss: cross-entropy (Discrete), squared error or Gaussian NLL in normalised units (Box)
        if self.discrete:
            logits = self.policy(batch.obs)                                       # [B, n]
            index = batch.actions.reshape(-1).long() - self.action_start          # [B]
            per_sample = cross_entropy(logits, index)                             # [B]
            metrics["accuracy"] = (logits.detach().argmax(dim=-1) == index).float().mean()
        else:
            target = self.actions.normalize(batch.actions)                             # [B, A] in [-1, 1]
            mean, log_std = self._heads(batch.obs)                                # [B, A] each
            if log_std is None:
                per_sample = mse_loss(mean, target)                               # [B]
            else:
                per_sample = gaussian_nll(mean, log_std, target)                  # [B]
                metrics["std"] = log_std.detach().exp().mean()
            metrics["action_error"] = (mean.detach() - target).abs().mean()       # mean |mu - a~|
        loss = (batch.weights * per_sample).mean()

        # step
        grad_norm = self.optimize("optimizer", loss, batch, max_grad_norm=cfg.max_grad_norm)
        if grad_norm is not None:
            metrics["grad_norm"] = grad_norm.detach()
        self.updates += 1
        return {"loss": loss.detach(), **metrics, **self.aux_metrics}  # 0-dim tensors, read at log time

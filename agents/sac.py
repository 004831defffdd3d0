"""Soft Actor-Critic (SAC) for continuous actions, with twin critics and automatic entropy tuning.

Papers:
  - Haarnoja et al. (2018a), "Soft Actor-Critic: Off-Policy Maximum Entropy Deep RL with a Stochastic
    Actor" (arXiv:1801.01290).
  - Haarnoja et al. (2018b), "Soft Actor-Critic Algorithms and Applications" (arXiv:1812.05905): the
    version here (no separate V network, twin Q with the min, learned temperature). Equation numbers below
    are those of 2018b.
  - Fujimoto et al. (2018), "Addressing Function Approximation Error in Actor-Critic Methods": the
    clipped double-Q target (min over two critics) that 2018b adopts.

Notation: s' = ``batch.next_obs``; pi = tanh-squashed Gaussian policy a = tanh(u), u ~ N(mu(s), sigma(s)^2);
Q_1, Q_2 the twin critics, Qbar_i their Polyak-averaged targets; alpha the temperature.

Critic (eqs. 5-6, with the min of Fujimoto et al.). The replay buffer already returns n-step sums
R = sum_{i<k} gamma^i r_{t+i} and discounts d = gamma^k (0 at terminals), so gamma is never applied here again:
    y    = R + d * ( min_i Qbar_i(s', a') - alpha * log pi(a'|s') ),    a' ~ pi(.|s')
    L_Q  = sum_i 1/2 mean_b w_b (Q_i(s_b, a_b) - y_b)^2

Policy (eq. 7 with the reparameterisation a = tanh(mu + sigma * eps), eps ~ N(0, I), eq. 11):
    L_pi = mean_b ( alpha * log pi(a_b|s_b) - min_i Q_i(s_b, a_b) ),     a_b ~ pi(.|s_b)
The squashed log-density is the change of variables of eq. 26 (Appendix C),
    log pi(a|s) = sum_j [ log N(u_j; mu_j, sigma_j^2) - log(1 - tanh(u_j)^2) ],
with log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)), exact and stable for large |u|.

Temperature (eq. 18, on log alpha as softlearning and SB3 do; target entropy Hbar = -|A|):
    L_alpha = - mean_b log alpha * (log pi(a_b|s_b) + Hbar)
so alpha grows while the policy's entropy -E[log pi] is below Hbar and shrinks while above.

DrQ (Kostrikov, Yarats, Fergus 2020, "Image Augmentation Is All You Need", eqs. 3-5 / Algorithm 1), for pixel
observations with ``drq_k``, ``drq_m`` > 0: f(s, nu) a random shift of up to +-``drq_pad`` pixels
(rlkit.auxiliary.augment), K augmentations of s' averaged in the target and M of s in the loss:
    y    = R + d * 1/K sum_k ( min_i Qbar_i(f(s', nu'_k), a'_k) - alpha * log pi(a'_k|f(s', nu'_k)) ),
           a'_k ~ pi(.|f(s', nu'_k))
    L_Q  = 1/M sum_m sum_i 1/2 mean_b w_b (Q_i(f(s_b, nu_m), a_b) - y_b)^2
and the policy and temperature losses on the first augmentation f(s, nu_1) (the paper's K = M = 2).

Targets: Qbar_i <- tau Q_i + (1 - tau) Qbar_i every ``target_update_every`` updates (tau = 0.005). There is
no target policy (a' comes from the current policy).

Speed (the network math dominates on CPU; what is left is Python and dispatch overhead): both critics are
ONE module whose layers hold stacked weights ``[2, in, out]``, so each layer of the twin evaluation is one
``baddbmm``; ReLUs in place; fused Adam; the critic's weights are frozen (no weight gradients computed) while the policy
loss backpropagates through it; the targets are averaged with one ``_foreach_lerp_``; metrics stay tensors.

Actions: the policy lives in [-1, 1]^A; ``act`` rescales to the env's Box bounds. Replay holds env-scale
actions; the critic sees them normalised to [-1, 1].
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rlkit.auxiliary.augment import drq_views, has_image
from rlkit.contract.agent import Agent, AgentConfig, BoxActions, Capabilities, StepRecord, check_bounded_box_actions, epsilon_mix
from rlkit.contract.networks import EncoderConfig, EnsembleLinear, index_obs, make_encoder, mlp
from rlkit.contract.parts import acting, free_tensor, target_of, trained, trains
from rlkit.errors import ConfigError
from rlkit.experience.replay import Transitions

_LOG_2 = math.log(2.0)
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


@dataclass
class SACConfig(AgentConfig):
    name: str = "sac"
    gamma: float = 0.99
    """Discount; the replay buffer applies it to n-step sums, the bootstrap uses the batch's gamma^k."""
    actor_lr: float = 3e-4
    """Adam learning rate of the policy (2018b and SB3: 3e-4)."""
    critic_lr: float = 3e-4
    """Adam learning rate of the twin critic (2018b and SB3: 3e-4)."""
    alpha_lr: float = 3e-4
    """Adam learning rate of log alpha (2018b and SB3: 3e-4)."""
    actor_hidden: list[int] = field(default_factory=lambda: [256, 256])
    """Hidden widths of the policy MLP after the encoder (2018b: 256, 256)."""
    critic_hidden: list[int] = field(default_factory=lambda: [256, 256])
    """Hidden widths of each Q-function's MLP on [features, action] (2018b: 256, 256)."""
    tau: float = 0.005
    """Polyak factor of the target critics (2018b: 0.005)."""
    target_update_every: int = 1
    """Updates between Polyak updates of the target critics (2018b: 1)."""
    init_alpha: float = 1.0
    """Initial temperature alpha (softlearning and SB3 'auto': 1.0)."""
    autotune_alpha: bool = True
    """Learn alpha toward the target entropy (eq. 18); false keeps alpha at its current value."""
    target_entropy: float | None = None
    """Target entropy Hbar of the temperature loss; None is -|A| (2018b, Table 1)."""
    log_std_min: float = -20.0
    """Lower clamp of the policy's log standard deviation (softlearning, SB3: -20)."""
    log_std_max: float = 2.0
    """Upper clamp of the policy's log standard deviation (softlearning, SB3: 2)."""
    random_steps: int = 0
    """Exploring env steps at the start that take uniformly random actions instead of the policy's (SB3 does
    this during ``learning_starts``; the configs set it to ``train.learning_starts``)."""
    drq_k: int = 0
    """DrQ: augmentations of s' averaged in the target (the paper: 2); 0 with ``drq_m: 0``: DrQ off. Pixels only."""
    drq_m: int = 0
    """DrQ: augmentations of s averaged in the critic loss (the paper: 2)."""
    drq_pad: int = 4
    """DrQ: the random shift's padding in pixels (the paper: 4 on 84 x 84)."""

    resumable: ClassVar[frozenset[str]] = frozenset({"tau", "target_update_every", "autotune_alpha", "target_entropy",
                                                    "log_std_min", "log_std_max", "random_steps"})
    optimizer_settings: ClassVar[Mapping[str, tuple[tuple[str, str], ...]]] = {
        "actor_lr": (("actor_optimizer", "lr"),), "critic_lr": (("critic_optimizer", "lr"),),
        "alpha_lr": (("alpha_optimizer", "lr"),)}

    def __post_init__(self) -> None:
        super().__post_init__()
        self.check_positive("actor_lr", "critic_lr", "alpha_lr", "init_alpha")
        self.check_unit_interval("tau", open_low=True)
        self.check_at_least(1, "target_update_every")
        self.check_at_least(0, "random_steps", "drq_k", "drq_m", "drq_pad")
        if (self.drq_k == 0) != (self.drq_m == 0):
            raise ConfigError(f"agent.drq_k and agent.drq_m turn DrQ on together (both >= 1, the paper: 2) or off "
                              f"(both 0), got {self.drq_k} and {self.drq_m}")
        self.check_widths("actor_hidden", "critic_hidden")
        if not self.log_std_min < self.log_std_max:
            raise ConfigError(f"agent.log_std_min ({self.log_std_min}) must be < agent.log_std_max "
                              f"({self.log_std_max})")
        if self.target_entropy is not None and not math.isfinite(self.target_entropy):
            raise ConfigError(f"agent.target_entropy must be a finite number or null, got {self.target_entropy}")


# --------------------------------------------------------------------------------------
# The squashed Gaussian (pure functions: the tests call them directly)
# --------------------------------------------------------------------------------------


def tanh_log_det_jacobian(pre_tanh: torch.Tensor) -> torch.Tensor:
    """log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)), elementwise (2018b eq. 26, stable form)."""
    return 2.0 * (_LOG_2 - pre_tanh - F.softplus(-2.0 * pre_tanh))


def squashed_gaussian_sample(mean: torch.Tensor, log_std: torch.Tensor, noise: torch.Tensor
                             ) -> tuple[torch.Tensor, torch.Tensor]:
    """a = tanh(mean + exp(log_std) * noise) and log pi(a) summed over the last (action) dimension.

    ``mean``, ``log_std``, ``noise`` ``[..., A]`` -> (actions ``[..., A]``, log-probs ``[...]``).
    The Gaussian term uses ``noise`` directly: (u - mean) / std = noise.
    """
    pre_tanh = mean + log_std.exp() * noise
    gaussian = -0.5 * noise.square() - log_std - _HALF_LOG_2PI
    log_prob = (gaussian - tanh_log_det_jacobian(pre_tanh)).sum(dim=-1)
    return torch.tanh(pre_tanh), log_prob


def soft_td_target(rewards: torch.Tensor, discounts: torch.Tensor, next_q: torch.Tensor,
                   next_log_prob: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """y = R + gamma^k (min_i Qbar_i(s', a') - alpha log pi(a'|s')): ``next_q [2, B]``, the rest ``[B]`` -> ``[B]``.

    ``discounts`` is the batch's gamma^k (0 at terminals): gamma is never applied again here.
    """
    return rewards + discounts * (next_q.min(dim=0).values - alpha * next_log_prob)


# --------------------------------------------------------------------------------------
# Networks
# --------------------------------------------------------------------------------------


class Actor(nn.Module):
    """obs ``[B, *obs_shape]`` (or a dict of such) -> mean ``[B, A]`` and log std ``[B, A]`` (unclamped)."""

    def __init__(self, observation_space: gym.Space, act_dim: int, hidden: list[int],
                 encoder_hidden: list[int] = (), encoder_kind: str | EncoderConfig = "auto") -> None:
        super().__init__()
        self.encoder = make_encoder(observation_space, encoder_hidden, encoder_kind)
        inplace_relu = functools.partial(nn.ReLU, inplace=True)  # saves an allocation per layer; same values
        self.torso = mlp(self.encoder.out_dim, hidden, None, activation=inplace_relu)  # [B, hidden[-1]]
        self.head = nn.Linear(hidden[-1], 2 * act_dim)           # [B, 2A]: mean and log std in one matmul

    def forward(self, obs: torch.Tensor | dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = self.head(self.torso(self.encoder(obs))).chunk(2, dim=-1)
        return mean, log_std


class TwinCritic(nn.Module):
    """Q_1 and Q_2 in one module: obs ``[B, ...]`` (or dict), normalised actions ``[B, A]`` -> ``[2, B]``.

    One encoder (no parameters for vector observations; a CNN for images) feeds both Q-functions, whose
    MLPs on [features, action] are independent (separate weights, separate initialisation) but share every
    kernel launch: each layer is an :class:`EnsembleLinear` over the ensemble dimension of 2.
    """

    members = 2

    def __init__(self, observation_space: gym.Space, act_dim: int, hidden: list[int],
                 encoder_hidden: list[int] = (), encoder_kind: str | EncoderConfig = "auto") -> None:
        super().__init__()
        self.encoder = make_encoder(observation_space, encoder_hidden, encoder_kind)
        dims = [self.encoder.out_dim + act_dim, *hidden, 1]
        self.layers = nn.ModuleList(EnsembleLinear(self.members, i, o) for i, o in zip(dims[:-1], dims[1:]))

    def forward(self, obs: torch.Tensor | dict[str, torch.Tensor], action: torch.Tensor) -> torch.Tensor:
        x = torch.cat([self.encoder(obs), action], dim=-1)       # [B, D + A]
        x = x.unsqueeze(0).expand(self.members, *x.shape)         # [2, B, D + A] (a view)
        for layer in self.layers[:-1]:
            x = F.relu(layer(x), inplace=True)                    # [2, B, H] (baddbmm's backward needs no output)
        return self.layers[-1](x).squeeze(-1)                    # [2, B]


# --------------------------------------------------------------------------------------
# Agent
# --------------------------------------------------------------------------------------


class SAC(Agent):
    """SAC agent: ``act`` samples the squashed Gaussian (or takes tanh(mean)); ``update`` is one step of
    critic, policy and temperature on a replay batch, then the Polyak target update."""

    capabilities = Capabilities(env_step_clock=True, discrete_actions=False)

    def __init__(self, cfg: SACConfig, observation_space: gym.Space, action_space: gym.Space,
                 device: torch.device | str = "cpu", seed: int = 0) -> None:
        check_bounded_box_actions("SAC", action_space)
        if cfg.drq_k and not has_image(observation_space):
            raise ConfigError(f"agent.drq_k/drq_m: DrQ shifts images, the env observes {observation_space}; "
                              "set agent.drq_k: 0 and agent.drq_m: 0 for vector observations")
        super().__init__(cfg, observation_space, action_space, device)
        self.actions = BoxActions(action_space, self.device)
        self.act_dim = act_dim = self.actions.dim

        self.policy = Actor(observation_space, act_dim, cfg.actor_hidden, cfg.encoder_hidden,
                            cfg.encoder).to(self.device)
        new_critic = lambda: TwinCritic(observation_space, act_dim, cfg.critic_hidden,  # noqa: E731
                                        cfg.encoder_hidden, cfg.encoder).to(self.device)
        self.critic, self.target_critic = new_critic(), new_critic()
        self.target_critic.load_state_dict(self.critic.state_dict())
        self.target_critic.requires_grad_(False)
        self.critic_params = list(self.critic.parameters())
        self.target_params = list(self.target_critic.parameters())
        self.log_alpha = torch.tensor(math.log(cfg.init_alpha), device=self.device, requires_grad=True)

        # fused Adam: one kernel for all parameters instead of ~6 ops per tensor
        fused = self.device.type in ("cpu", "cuda")
        self.actor_optimizer = torch.optim.Adam(self.policy.parameters(), lr=cfg.actor_lr, fused=fused)
        self.critic_optimizer = torch.optim.Adam(self.critic_params, lr=cfg.critic_lr, fused=fused)
        self.alpha_optimizer = torch.optim.Adam([self.log_alpha], lr=cfg.alpha_lr, fused=fused)

        self.rng = np.random.default_rng(seed)  # exploration noise and random actions in act()
        self.generator = torch.Generator(device=self.device)  # policy samples in update()
        self.generator.manual_seed(seed + 1)
        # the critic's encoder is the shared one (SAC-AE, CURL: the critic's loss trains it)
        self.declare(parts={"policy": acting(self.policy), "critic": trained(self.critic),
                            "target_critic": target_of("critic", self.target_critic),
                            "log_alpha": free_tensor(self.log_alpha)},
                     optimizers={"actor_optimizer": trains(self.actor_optimizer, "policy"),
                                 "critic_optimizer": trains(self.critic_optimizer, "critic"),
                                 "alpha_optimizer": trains(self.alpha_optimizer, "log_alpha")},
                     generators={"rng": self.rng, "generator": self.generator}, encoder="critic.encoder")

    @property
    def target_entropy(self) -> float:
        return -float(self.act_dim) if self.cfg.target_entropy is None else self.cfg.target_entropy

    @property
    def alpha(self) -> float:
        return float(self.log_alpha.detach().exp())

    # ------------------------------------------------------------------ acting
    def _sample(self, obs, noise: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Reparameterised actions ``[B, A]`` in [-1, 1] and their log-probs ``[B]`` under the policy."""
        mean, log_std = self.policy(obs)                                          # [B, A] each
        log_std = log_std.clamp(self.cfg.log_std_min, self.cfg.log_std_max)
        if noise is None:
            noise = torch.randn(mean.shape, generator=self.generator, device=self.device)
        return squashed_gaussian_sample(mean, log_std, noise)

    @torch.no_grad()
    def act(self, step: StepRecord, explore: bool, epsilon: float | None = None) -> np.ndarray:
        """Env-scale actions ``[n, *action_shape]``: tanh(u), u ~ N(mu, sigma^2) if ``explore`` else
        tanh(mu), rescaled to the Box bounds; uniform ones while exploring before ``random_steps`` env steps
        (the loop's clock, :meth:`set_env_steps`); with probability ``epsilon`` a uniform one."""
        if explore and self.env_steps < self.cfg.random_steps:
            return self.actions.uniform(step.size, self.rng)
        mean, log_std = self.policy(step.obs)
        if explore:
            std = log_std.clamp(self.cfg.log_std_min, self.cfg.log_std_max).exp()
            noise = torch.from_numpy(self.rng.standard_normal(mean.shape, dtype=np.float32)).to(self.device)
            mean = mean + std * noise
        actions = self.actions.to_env(torch.tanh(mean))
        return epsilon_mix(actions, epsilon, self.action_space, self.rng)

    # ------------------------------------------------------------------ learning
    def update(self, batch: Transitions) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        actions = self.actions.normalize(batch.actions)                               # [B, A] in [-1, 1]
        alpha = self.log_alpha.detach().exp()                                    # [] (this step's alpha)

        views = drq_views(batch.obs, cfg.drq_m, cfg.drq_pad)                     # [M * B, ...] (M = 1: s itself)
        next_views = drq_views(batch.next_obs, cfg.drq_k, cfg.drq_pad)            # [K * B, ...]
        B = len(actions)
        obs = index_obs(views, slice(0, B)) if cfg.drq_m else batch.obs          # s, or its first augmentation

        # policy samples on s (reparameterised; its graph is kept for the policy loss)
        actions_pi, log_prob = self._sample(obs)                                 # [B, A], [B]

        # temperature: L_alpha = -mean log alpha * (log pi + Hbar)   (eq. 18)
        if cfg.autotune_alpha:
            alpha_loss = -(self.log_alpha * (log_prob.detach() + self.target_entropy)).mean()
            self.optimize("alpha_optimizer", alpha_loss)

        # critic: y = R + gamma^k * (min_i Qbar_i(s', a') - alpha log pi(a'|s')),  a' ~ pi(.|s')
        #         (DrQ: averaged over K views of s'; the loss averaged over M views of s)
        with torch.no_grad():
            next_actions, next_log_prob = self._sample(next_views)               # [K * B, A], [K * B]
            next_q = self.target_critic(next_views, next_actions)               # [2, K * B]
            K = max(cfg.drq_k, 1)
            target = soft_td_target(batch.rewards, batch.discounts, next_q.view(2, K, B).mean(dim=1),
                                    next_log_prob.view(K, B).mean(dim=0), alpha)  # [B]
        M = max(cfg.drq_m, 1)
        q = self.critic(views, actions.repeat(M, 1)).view(2, M, B)               # [2, M, B]
        critic_loss = 0.5 * (batch.weights * (q - target).square()).mean(dim=2).sum(dim=0).mean()
        self.optimize("critic_optimizer", critic_loss, batch)

        # policy: L_pi = mean (alpha log pi(a|s) - min_i Q_i(s, a)), the critic frozen (no weight gradients)
        with self.without_weight_grads("critic"):
            q_pi = self.critic(obs, actions_pi).min(dim=0).values                # [B]
        actor_loss = (alpha * log_prob - q_pi).mean()
        self.optimize("actor_optimizer", actor_loss, batch)

        # targets: Qbar <- tau Q + (1 - tau) Qbar every target_update_every updates
        self.updates += 1
        if self.updates % cfg.target_update_every == 0:
            with torch.no_grad():
                torch._foreach_lerp_(self.target_params, self.critic_params, cfg.tau)

        return {  # 0-dim tensors, read at log time (no host sync per update)
            "critic_loss": critic_loss.detach(), "actor_loss": actor_loss.detach(), "alpha": alpha,
            "entropy": -log_prob.detach().mean(), "q_mean": q.detach().mean(), **self.aux_metrics,
        }

"""Neural probabilistic motor primitives (NPMP): a motor-skill module distilled from clip experts.

Papers and reference code:
  - Merel, Hasenclever, Galashov, Ahuja, Pham, Wayne, Teh, Heess (ICLR 2019), "Neural probabilistic motor
    primitives for humanoid control": the encoder / latent / decoder and the AR(1) prior, trained offline
    from expert rollouts.
  - Merel, Tunyasuvunakool, Ahuja, Tassa, Hasenclever, Pham, Erez, Wayne, Heess (2020), "Catch & Carry:
    Reusable Neural Controllers for Vision-Guided Whole-Body Tasks": the frozen decoder driven by a
    high-level policy whose action is z.
  - Wagener, Kolobov, Frujeri, Loynd, Cheng, Hausknecht (2022), "MoCapAct: A Multi-Task Dataset for
    Simulated Humanoid Control"; ``mocapact/distillation/model.py`` (``NpmpPolicy.run_batch``) and
    ``config.py`` (``'npmp'``: ``embed_size=60``, ``embedding_kl_weight=0.1``, ``embedding_correlation=0.95``,
    ``seq_steps=30``, encoder 2 x 1024, decoder 3 x 1024, ``layer_norm=True``, tanh, ``squash_output=True``;
    ``BasePolicy(std_dev=0.1)``): the values below are theirs unless said otherwise.

The model. With x_t the observation (proprioception s_t, then the reference frames t+1 … t+5) and z_t in
R^d (d = ``latent_dim``):
    encoder (posterior)  q(z_t | x_t, z_{t-1}) = N(mu_q(x_t, z_{t-1}), diag sigma_q(x_t, z_{t-1})^2)
    prior, AR(1)         p(z_t | z_{t-1})      = N(alpha z_{t-1}, (1 - alpha^2) I),   alpha = ``ar_coefficient``
    decoder              pi(a_t | s_t, z_t)    = N(mu_pi(s_t, z_t), sigma_a^2 I),     sigma_a = ``action_std``
The prior's stationary distribution is N(0, I) (Var z_t = alpha^2 Var z_{t-1} + 1 - alpha^2), so z_0 ~ N(0, I)
starts every training window (MoCapAct's ``initial_state``) and alpha sets how smoothly z may move:
z_t - alpha z_{t-1} has std sqrt(1 - alpha^2) = 0.31 at alpha = 0.95.

The loss over windows of T steps sampled from the expert dataset, z_t = mu_q + sigma_q * eps_t (the
reparameterised sample of the previous step's posterior feeds the next step), m_t the window mask:
    L = sum_t m_t [ -log pi(a*_t | s_t, z_t) + beta KL(q(z_t | x_t, z_{t-1}) || p(z_t | z_{t-1})) ] / sum_t m_t
    -log pi(a* | s, z) = sum_j (a*_j - mu_pi,j)^2 / (2 sigma_a^2) + A log sigma_a + A/2 log 2 pi
    KL(N(m_q, s_q^2) || N(m_p, s_p^2)) = sum_i [ log(s_p,i / s_q,i) + (s_q,i^2 + (m_q,i - m_p,i)^2) / (2 s_p,i^2) - 1/2 ]
a*_t is the expert's *clean* action (the dataset's ``infos/expert_actions``; the executed actions carry the
rollout noise). beta = ``kl_weight``. The behaviour-cloning term is the Gaussian log-likelihood with a fixed
std (MoCapAct's), not a plain MSE: it is the squared error scaled by 1 / (2 sigma_a^2) = 50, summed over the
A action dimensions, so beta = 0.1 weighs the KL (in nats, summed over the d latent dimensions) against the
actions exactly as in MoCapAct; a mean-over-dimensions MSE would shrink the BC term about 1,400-fold
relative to the KL and the same beta would drown the actions (the gradients of the two BC forms differ only
by that scale). Both terms are summed per step and averaged over the real (unpadded) steps.

Acting (``act``): closed loop with the module's own encoder, z_t = mu_q(x_t, z_{t-1}) (the posterior mean;
``explore`` samples it), z_0 = 0 at ``episode_start`` (one memory row per env row), a_t = mu_pi(s_t, z_t).

The skill. The decoder alone is the reusable low-level controller: ``load_skill(export_dir)`` returns it
frozen (``requires_grad`` False, eval mode) with its :class:`SkillSpec`. Its input layout is
    decoder(obs[..., :proprio_dim], z)  ->  a in [-1, 1]^A
with ``obs`` the HumanoidImitation observation layout (proprioception first: ``proprio_dim`` = 116 entries,
``rlkit.envs.humanoid_imitation``) and z ``[..., latent_dim]``; the proprioception is standardised inside
the decoder with the training data's statistics (buffers, exported with the weights). Actions are
``action_mode="pd"`` actions (absolute PD targets), whose Box is [-1, 1]^28, so a task env needs no
reference clip to execute them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from rlkit.contract.agent import Agent, AgentConfig, BoxActions, Capabilities, StepRecord, epsilon_mix
from rlkit.contract.networks import ObservationStandardizer
from rlkit.contract.parts import acting, trains
from rlkit.errors import ConfigError, DatasetError
from rlkit.experience.sequences import Sequences

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
_ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "elu": nn.ELU, "relu": nn.ReLU}


@dataclass
class NPMPConfig(AgentConfig):
    name: str = "npmp"
    latent_dim: int = 60
    """d, the size of the motor intention z (MoCapAct: 60)."""
    posterior_hidden: list[int] = field(default_factory=lambda: [1024, 1024])
    """Hidden widths of the encoder q(z_t | x_t, z_{t-1}) (MoCapAct: 2 x 1024)."""
    decoder_hidden: list[int] = field(default_factory=lambda: [1024, 1024, 1024])
    """Hidden widths of the decoder pi(a | s, z) (MoCapAct: 3 x 1024)."""
    layer_norm: bool = True
    """LayerNorm after every hidden linear layer (MoCapAct's ``layer_norm=True``)."""
    activation: str = "tanh"
    """Hidden nonlinearity: ``tanh`` (MoCapAct), ``elu`` or ``relu``."""
    squash: bool = True
    """tanh on the decoder's output, so actions stay in [-1, 1] (MoCapAct's ``squash_output=True``)."""
    kl_weight: float = 0.1
    """beta, the weight of KL(q || AR(1) prior) per step (MoCapAct ``embedding_kl_weight``: 0.1)."""
    ar_coefficient: float = 0.95
    """alpha of the prior p(z_t | z_{t-1}) = N(alpha z_{t-1}, (1 - alpha^2) I) (MoCapAct ``embedding_correlation``:
    0.95); 0 makes it the N(0, I) prior of a plain VAE per step."""
    action_std: float = 0.1
    """sigma_a, the fixed std of the decoder's Gaussian likelihood (MoCapAct ``std_dev``: 0.1)."""
    seq_steps: int = 30
    """T, the window length the sequence source samples (MoCapAct: 30)."""
    proprio_dim: int = 116
    """The decoder's input: the first ``proprio_dim`` observation entries (HumanoidImitation's proprioception)."""
    label_key: str = "expert_actions"
    """The dataset ``infos`` key holding the clean expert actions to learn (``rlkit dataset experts`` writes
    ``expert_actions``); empty: learn the dataset's ``actions`` themselves."""
    lr: float = 3e-4
    """Adam learning rate (rlkit's choice; not taken from MoCapAct)."""
    max_grad_norm: float | None = 1.0
    """Clip the global gradient norm (None: no clipping)."""
    normalize_obs: bool = True
    """Standardise observations (encoder) and proprioception (decoder) by the dataset's mean and std, kept as
    buffers of each module (MoCapAct trains with ``--normalize_obs``)."""
    log_std_min: float = -10.0
    """Lower clamp of the encoder's log sigma_q (MoCapAct clamps sigma_q at 1e-5 ~ exp(-11.5))."""
    log_std_max: float = 2.0
    """Upper clamp of the encoder's log sigma_q."""

    resumable: ClassVar[frozenset[str]] = frozenset({"kl_weight", "max_grad_norm"})
    optimizer_settings: ClassVar[Mapping[str, tuple[tuple[str, str], ...]]] = {"lr": (("optimizer", "lr"),)}

    @property
    def sequence_length(self) -> int:
        """The window length the sequence source samples (T)."""
        return self.seq_steps

    def __post_init__(self) -> None:
        super().__post_init__()
        self.check_at_least(1, "latent_dim", "seq_steps", "proprio_dim")
        self.check_widths("posterior_hidden", "decoder_hidden")
        self.check_positive("lr", "action_std", "max_grad_norm")
        if not (0.0 <= self.kl_weight < math.inf):
            raise ConfigError(f"agent.kl_weight must be a finite number >= 0, got {self.kl_weight}")
        if not (0.0 <= self.ar_coefficient < 1.0):
            raise ConfigError(f"agent.ar_coefficient must lie in [0, 1) (the prior's std sqrt(1 - alpha^2) must be "
                              f"> 0), got {self.ar_coefficient}")
        if self.activation not in _ACTIVATIONS:
            raise ConfigError(f"agent.activation must be one of {', '.join(_ACTIVATIONS)}, got {self.activation!r}")
        if not (math.isfinite(self.log_std_min) and math.isfinite(self.log_std_max)
                and self.log_std_min < self.log_std_max):
            raise ConfigError(f"agent.log_std_min ({self.log_std_min}) must be < agent.log_std_max "
                              f"({self.log_std_max}), both finite")

    def select_episodes(self, episodes: list) -> list:
        """The episodes with their ``actions`` replaced by the labels ``infos[label_key]`` (the clean expert
        actions); a dataset without them is refused in one line."""
        if not self.label_key:
            return episodes
        out = []
        for i, ep in enumerate(episodes):
            labels = (ep.infos or {}).get(self.label_key)
            if labels is None or np.shape(labels) != np.shape(ep.actions):
                have = ", ".join(sorted(ep.infos or {})) or "none"
                raise DatasetError(f"agent.label_key '{self.label_key}': episode {i} has no infos['{self.label_key}'] "
                                   f"shaped like its actions {np.shape(ep.actions)} (its infos: {have}); write the "
                                   "data with `rlkit dataset experts`, or set agent.label_key: '' to learn its actions")
            out.append(replace(ep, actions=np.asarray(labels, dtype=np.float32)))
        return out


# --------------------------------------------------------------------------------------
# The loss terms (pure functions: tests/test_npmp.py checks them against hand computations)
# --------------------------------------------------------------------------------------


def ar1_prior(z_prev: torch.Tensor, alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std of p(z_t | z_{t-1}) = N(alpha z_{t-1}, (1 - alpha^2) I): ``[B, d]`` -> ``[B, d]``, ``[B, d]``."""
    return alpha * z_prev, torch.full_like(z_prev, math.sqrt(1.0 - alpha * alpha))


def gaussian_kl(mean_q: torch.Tensor, std_q: torch.Tensor, mean_p: torch.Tensor, std_p: torch.Tensor) -> torch.Tensor:
    """KL(N(mean_q, diag std_q^2) || N(mean_p, diag std_p^2)) summed over the last dimension: ``[..., d]`` -> ``[...]``."""
    var_q, var_p = std_q.square(), std_p.square()
    return (torch.log(std_p / std_q) + (var_q + (mean_q - mean_p).square()) / (2.0 * var_p) - 0.5).sum(dim=-1)


def gaussian_nll(mean: torch.Tensor, target: torch.Tensor, std: float) -> torch.Tensor:
    """-log N(target; mean, std^2 I) summed over the last dimension (fixed scalar std): ``[..., A]`` -> ``[...]``."""
    return ((target - mean).square() / (2.0 * std * std) + math.log(std) + _HALF_LOG_2PI).sum(dim=-1)


# --------------------------------------------------------------------------------------
# Networks
# --------------------------------------------------------------------------------------


def _mlp(in_dim: int, hidden: list[int], activation: str, layer_norm: bool) -> nn.Sequential:
    """``in_dim -> hidden[0] -> ... -> hidden[-1]``: Linear, LayerNorm (optional), activation per layer."""
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(in_dim, width), *([nn.LayerNorm(width)] if layer_norm else []), _ACTIVATIONS[activation]()]
        in_dim = width
    return nn.Sequential(*layers)


class Posterior(nn.Module):
    """q(z_t | x_t, z_{t-1}): observation ``[B, D]`` (standardised inside) and z_{t-1} ``[B, d]`` -> mean, std ``[B, d]``."""

    def __init__(self, observation_space: gym.spaces.Box, cfg: NPMPConfig) -> None:
        super().__init__()
        self.standardize = ObservationStandardizer(observation_space, cfg.normalize_obs)
        obs_dim = int(np.prod(observation_space.shape))
        self.body = _mlp(obs_dim + cfg.latent_dim, cfg.posterior_hidden, cfg.activation, cfg.layer_norm)
        self.out = nn.Linear(cfg.posterior_hidden[-1], 2 * cfg.latent_dim)
        self.log_std_min, self.log_std_max = cfg.log_std_min, cfg.log_std_max

    def forward(self, obs: torch.Tensor, z_prev: torch.Tensor, standardized: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor]:
        x = obs if standardized else self.standardize(obs)
        mean, log_std = self.out(self.body(torch.cat([x, z_prev], dim=-1))).chunk(2, dim=-1)
        return mean, log_std.clamp(self.log_std_min, self.log_std_max).exp()


class Decoder(nn.Module):
    """pi(a | s, z): proprioception ``[..., P]`` (raw; standardised inside) and z ``[..., d]`` -> action mean
    ``[..., A]`` in the action Box's normalised units ([-1, 1] with ``squash``). The reusable skill."""

    def __init__(self, proprio_dim: int, latent_dim: int, action_dim: int, hidden: list[int], activation: str = "tanh",
                 layer_norm: bool = True, squash: bool = True) -> None:
        super().__init__()
        self.proprio_dim, self.latent_dim, self.action_dim, self.squash = proprio_dim, latent_dim, action_dim, squash
        self.register_buffer("proprio_mean", torch.zeros(proprio_dim))
        self.register_buffer("proprio_std", torch.ones(proprio_dim))
        self.body = _mlp(proprio_dim + latent_dim, hidden, activation, layer_norm)
        self.out = nn.Linear(hidden[-1], action_dim)

    def forward(self, proprio: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        x = (proprio.float() - self.proprio_mean) / self.proprio_std
        mean = self.out(self.body(torch.cat([x, z], dim=-1)))
        return torch.tanh(mean) if self.squash else mean

    def act(self, obs: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """The action mean from a whole observation (its first ``proprio_dim`` entries) and z."""
        return self(obs[..., : self.proprio_dim], z)


# --------------------------------------------------------------------------------------
# Agent
# --------------------------------------------------------------------------------------


class NPMP(Agent):
    """``update``: one step of the sequence ELBO above on a batch of windows; ``act``: encoder and decoder in
    closed loop, one z per env row, reset at ``episode_start``."""

    capabilities = Capabilities(experience="sequences", discrete_actions=False, online=False)  # distils a dataset

    def __init__(self, cfg: NPMPConfig, observation_space: gym.Space, action_space: gym.Space,
                 device: torch.device | str = "cpu", seed: int = 0) -> None:
        super().__init__(cfg, observation_space, action_space, device)
        if not (isinstance(observation_space, gym.spaces.Box) and len(observation_space.shape) == 1):
            raise ConfigError(f"NPMP needs flat Box observations (proprioception then reference frames), got "
                              f"{observation_space}")
        if observation_space.shape[0] <= cfg.proprio_dim:
            raise ConfigError(f"agent.proprio_dim ({cfg.proprio_dim}) must be smaller than the observation "
                              f"({observation_space.shape[0]} entries: proprioception, then the reference frames)")
        if not (isinstance(action_space, gym.spaces.Box) and np.all(np.isfinite(action_space.low))
                and np.all(np.isfinite(action_space.high))):
            raise ConfigError(f"NPMP needs a bounded Box action space, got {action_space}")
        self.actions = BoxActions(action_space, self.device)
        self.posterior = Posterior(observation_space, cfg).to(self.device)
        self.decoder = Decoder(cfg.proprio_dim, cfg.latent_dim, self.actions.dim, cfg.decoder_hidden, cfg.activation,
                               cfg.layer_norm, cfg.squash).to(self.device)
        fused = self.device.type in ("cpu", "cuda")
        self.optimizer = torch.optim.Adam([*self.posterior.parameters(), *self.decoder.parameters()], lr=cfg.lr,
                                          fused=fused)
        self.generator = torch.Generator(device=self.device).manual_seed(seed)  # z_0 and the reparameterised eps
        self.rng = np.random.default_rng(seed)  # epsilon in act()
        self._z: torch.Tensor | None = None  # acting memory: z_{t-1} per env row (not checkpointed)
        self.declare(parts={"encoder": acting(self.posterior), "decoder": acting(self.decoder)},
                     optimizers={"optimizer": trains(self.optimizer, "encoder", "decoder")},
                     generators={"generator": self.generator, "rng": self.rng})

    @torch.no_grad()
    def observe_dataset(self, dataset) -> None:
        """The dataset's observation mean and std into the encoder's standardiser, and the proprioception's
        part of them into the decoder's buffers (``normalize_obs``)."""
        if not self.cfg.normalize_obs:
            return
        self.posterior.standardize.fit(dataset.episodes)
        P = self.cfg.proprio_dim
        self.decoder.proprio_mean.copy_(self.posterior.standardize.mean[:P])
        self.decoder.proprio_std.copy_(self.posterior.standardize.std[:P])

    def _noise(self, shape: tuple[int, ...]) -> torch.Tensor:
        return torch.randn(shape, generator=self.generator, device=self.device)

    # ------------------------------------------------------------------ learning
    def update(self, batch: Sequences) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        obs, mask = batch.obs.float(), batch.mask                                         # [B, T, D], [B, T]
        B, T = mask.shape
        target = self.actions.normalize(batch.actions.flatten(0, 1)).view(B, T, -1)      # [B, T, A] in [-1, 1]
        x = self.posterior.standardize(obs)                                               # [B, T, D]

        # encoder over the window: z_t ~ q(. | x_t, z_{t-1}), KL to the AR(1) prior at z_{t-1}
        z = self._noise((B, cfg.latent_dim))                                              # z_0 ~ N(0, I)
        zs, kls, stds = [], [], []
        for t in range(T):
            mean_q, std_q = self.posterior(x[:, t], z, standardized=True)                 # [B, d] each
            mean_p, std_p = ar1_prior(z, cfg.ar_coefficient)
            kls.append(gaussian_kl(mean_q, std_q, mean_p, std_p))                         # [B]
            sample = mean_q + std_q * self._noise((B, cfg.latent_dim))
            z = torch.where(mask[:, t, None], sample, z)                                  # padding keeps z_{t-1}
            zs.append(z)
            stds.append(std_q)
        kl = torch.stack(kls, dim=1)                                                      # [B, T]

        # decoder: the clean expert action's Gaussian log-likelihood
        mean_a = self.decoder(obs[..., : cfg.proprio_dim], torch.stack(zs, dim=1))        # [B, T, A]
        nll = gaussian_nll(mean_a, target, cfg.action_std)                                # [B, T]

        weight = mask.float()
        count = weight.sum().clamp(min=1.0)
        bc, kl_mean = (nll * weight).sum() / count, (kl * weight).sum() / count
        loss = bc + cfg.kl_weight * kl_mean
        grad_norm = self.optimize("optimizer", loss, batch, max_grad_norm=cfg.max_grad_norm)
        self.updates += 1
        metrics = {"loss": loss.detach(), "bc_nll": bc.detach(), "kl": kl_mean.detach(),
                   "action_mse": (((mean_a.detach() - target).square().mean(-1)) * weight).sum() / count,
                   "posterior_std": (torch.stack(stds, 1).detach().mean(-1) * weight).sum() / count}
        if grad_norm is not None:
            metrics["grad_norm"] = grad_norm.detach()
        return {**metrics, **self.aux_metrics}

    # ------------------------------------------------------------------ acting
    @torch.no_grad()
    def act(self, step: StepRecord, explore: bool, epsilon: float | None = None) -> np.ndarray:
        """z_t = the posterior's mean given x_t and the row's z_{t-1} (z_0 = 0 where an episode starts; a
        sample when ``explore``), a_t = the decoder's mean, clipped to the Box and mapped to its units."""
        obs = step.obs.float()                                                            # [N, D]
        n = step.size
        if self._z is None or self._z.shape[0] != n:
            self._z = torch.zeros((n, self.cfg.latent_dim), device=self.device)
            starts = torch.ones(n, dtype=torch.bool, device=self.device)
        else:
            starts = step.episode_start.bool()
        z_prev = torch.where(starts[:, None], torch.zeros_like(self._z), self._z)
        mean_q, std_q = self.posterior(obs, z_prev)
        z = mean_q + std_q * self._noise(mean_q.shape) if explore else mean_q
        self._z = z
        actions = self.actions.to_env(self.decoder.act(obs, z).clamp(-1.0, 1.0))
        return epsilon_mix(actions, epsilon, self.action_space, self.rng)


# --------------------------------------------------------------------------------------
# The skill: the decoder as a frozen, loadable part
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SkillSpec:
    """What a high-level agent needs to drive a loaded decoder: its input layout and what it acts in."""

    latent_dim: int
    """The size of z, the high-level policy's action."""
    proprio_dim: int
    """The decoder reads ``obs[..., :proprio_dim]`` (HumanoidImitation's proprioception layout)."""
    action_dim: int
    """Actions out, in the Box's normalised units ([-1, 1]; ``action_mode: pd``: absolute PD targets)."""
    env_id: str | None
    env_kwargs: dict[str, Any]
    """The env the module was trained for (its ``config.yaml``)."""
    agent: dict[str, Any]
    """The module's ``agent:`` config section as written."""


def load_skill(path: str | Path, device: torch.device | str = "cpu") -> tuple[Decoder, SkillSpec]:
    """The decoder of an exported NPMP (``rlkit export RUN_DIR OUT_DIR``: ``model.safetensors`` +
    ``config.yaml``), frozen: every parameter's ``requires_grad`` is False and the module is in eval mode,
    so no optimizer of a high-level agent can move it. Returns the decoder and its :class:`SkillSpec`.
    Loading reads tensors and YAML only (no code runs from the files)."""
    import yaml
    from safetensors.torch import safe_open

    path = Path(path)
    weights, config = path / "model.safetensors", path / "config.yaml"
    if not (weights.is_file() and config.is_file()):
        hint = " (a training run: export it first, `rlkit export RUN_DIR OUT_DIR`)" if (path / "checkpoints").is_dir() \
            else ""
        raise ConfigError(f"'{path}' is not an exported NPMP: it needs model.safetensors and config.yaml{hint}")
    try:
        data = yaml.safe_load(config.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"'{config}' is not readable YAML ({' '.join(str(exc).split())[:120]})") from None
    agent = dict(data.get("agent") or {})
    if agent.get("name") != "npmp":
        raise ConfigError(f"'{path}' holds a {agent.get('name')!r} agent, not an npmp motor-skill module")
    known = {f.name for f in fields(NPMPConfig)} - {"aux", "encoder", "freeze", "name"}
    cfg = NPMPConfig(**{k: v for k, v in agent.items() if k in known})  # its own checks
    with safe_open(str(weights), framework="pt", device="cpu") as f:
        tensors = {k[len("decoder."):]: f.get_tensor(k) for k in f.keys() if k.startswith("decoder.")}
    if "out.weight" not in tensors:
        raise ConfigError(f"'{weights}' holds no decoder weights (keys decoder.*); export an npmp run")
    decoder = Decoder(cfg.proprio_dim, cfg.latent_dim, int(tensors["out.weight"].shape[0]), cfg.decoder_hidden,
                      cfg.activation, cfg.layer_norm, cfg.squash)
    try:
        decoder.load_state_dict(tensors)
    except RuntimeError as exc:
        raise ConfigError(f"'{weights}': the decoder weights do not fit its config.yaml "
                          f"({' '.join(str(exc).split())[:160]})") from None
    decoder.requires_grad_(False)
    decoder.eval()
    env = dict(data.get("env") or {})
    spec = SkillSpec(cfg.latent_dim, cfg.proprio_dim, decoder.action_dim, env.get("id"), dict(env.get("kwargs") or {}),
                     agent)
    return decoder.to(device), spec

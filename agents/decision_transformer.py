"""Decision Transformer (DT): offline RL as return-conditioned sequence modelling.

Paper and reference code:
  - Chen, Lu, Rajeswaran, Lee, Grover, Laskin, Abbeel, Srinivas, Mordatch (NeurIPS 2021), "Decision
    Transformer: Reinforcement Learning via Sequence Modeling"; the authors' ``gym/decision_transformer``
    (``models/decision_transformer.py``, ``training/seq_trainer.py``, ``evaluation/evaluate_episodes.py``).
  - The transformer is written like nanoGPT's ``model.py`` (Karpathy): pre-LayerNorm blocks, one fused
    ``F.scaled_dot_product_attention`` call, a config dataclass, shape comments.
  - CORL's ``algorithms/offline/dt.py`` (one file, D4RL numbers beside it) for the checks on the recipe.

The model. A trajectory is the token stream (R̂_1, s_1, a_1, R̂_2, s_2, a_2, ...) where the return-to-go
    R̂_t = sum_{t' >= t} r_t'                                           (undiscounted, as in the paper)
is what is still to be collected from step t. Each modality has its own linear embedding (the state's
through the agent's observation encoder: flattening for vectors, the Nature CNN for Atari frames), plus a
learned embedding of the episode timestep t (the same for the three tokens of a step; no position
embedding within the window), then a LayerNorm:
    e(R̂_t) = W_R (R̂_t / scale) + ω_t,   e(s_t) = W_s φ((s_t - μ_s) / σ_s) + ω_t,   e(a_t) = W_a a_t + ω_t.
A causal transformer over the last K steps (3K tokens) predicts a_t from the hidden state at s_t's token,
so the prediction sees R̂_≤t, s_≤t and a_<t (not a_t itself):
    â_t = tanh(W_π h(s_t))                 (Box actions, normalised to [-1, 1] by the Box bounds)
    logits_t = W_π h(s_t)                  (Discrete actions)
Loss over the real (unpadded) steps of a batch of windows, mask m_t:
    L = Σ_t m_t ||â_t - a_t||² / (A Σ_t m_t)       (continuous: mean squared error, the paper's)
    L = -Σ_t m_t log softmax(logits_t)[a_t] / Σ_t m_t   (discrete: cross-entropy)
AdamW, learning rate warmed up linearly over ``warmup_steps`` updates, gradient norm clipped (0.25).

Windows start at a uniformly drawn step and are left-padded at an episode's end
(:class:`rlkit.experience.sequences.SequenceBuffer`), so the newest real step is always at position K-1, as
when acting. Padded keys are masked out of attention; each token may attend to itself, so a padded query
(whose keys are all padding) stays finite instead of NaN.

Acting is conditioning: an evaluation episode starts from a target return R̂_1 = ``target_return`` and,
after each step, R̂_{t+1} = R̂_t - r_t, read from the step record's ``prev_reward``. The agent keeps the
last K (R̂, s, a, t) of each env row and clears a row where ``episode_start`` is set, so one forward pass
serves every env of a vector env. Its memory is not checkpointed: it only lives within evaluation
episodes, which always start fresh.

State normalisation uses the dataset's per-dimension mean and standard deviation (vector observations;
images are scaled by the CNN), computed when the run starts (:meth:`DecisionTransformer.observe_dataset`)
and kept as buffers of the model, so checkpoints and exports act without the dataset.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rlkit.contract.agent import Agent, AgentConfig, BoxActions, Capabilities, StepRecord, epsilon_mix
from rlkit.contract.networks import EncoderConfig, ObservationStandardizer, make_encoder
from rlkit.contract.parts import acting, trains
from rlkit.errors import ConfigError
from rlkit.experience.sequences import Sequences


@dataclass
class DecisionTransformerConfig(AgentConfig):
    name: str = "decision_transformer"
    context_length: int = 20
    """K: the steps of history the model sees (3K tokens). Paper: 20 for MuJoCo, 30 for Atari."""
    embed_dim: int = 128
    """Token width h (paper: 128)."""
    n_layers: int = 3
    """Transformer blocks (paper: 3 for MuJoCo, 6 for Atari)."""
    n_heads: int = 1
    """Attention heads; must divide embed_dim (paper: 1 for MuJoCo, 8 for Atari)."""
    dropout: float = 0.1
    """Dropout on embeddings, attention weights and residual branches (GPT-2's three; paper: 0.1)."""
    activation: str = "relu"
    """The MLP's nonlinearity: ``relu`` (the reference code's gym setting) or ``gelu`` (GPT-2's)."""
    lr: float = 1e-4
    """AdamW peak learning rate (paper: 1e-4; 6e-4 for Atari)."""
    weight_decay: float = 1e-4
    """AdamW decoupled weight decay on every parameter (the reference code's setting)."""
    warmup_steps: int = 10_000
    """Linear learning-rate warm-up over this many updates: lr_t = lr * min(1, (t + 1) / warmup_steps)."""
    max_grad_norm: float | None = 0.25
    """Clip the global gradient norm (paper: 0.25; None: no clipping)."""
    rtg_scale: float = 1000.0
    """Returns-to-go are divided by this before embedding (reference: 1000 for MuJoCo, 1 for Atari)."""
    target_return: float = 3600.0
    """R̂_1 of evaluation episodes: the return the policy is asked to collect (reference for Hopper: 3600,
    HalfCheetah: 12000, Walker2d: 5000, Pong: 20). ``rlkit eval --target-return`` overrides it."""
    max_timestep: int = 1000
    """Size of the timestep embedding: the longest episode (later steps reuse the last embedding)."""
    normalize_obs: bool = True
    """Standardise vector observations by the dataset's mean and std (the reference code does)."""

    resumable: ClassVar[frozenset[str]] = frozenset(
        {"lr", "warmup_steps", "max_grad_norm", "target_return"})  # read at every update / episode
    optimizer_settings: ClassVar[Mapping[str, tuple[tuple[str, str], ...]]] = {
        "weight_decay": (("optimizer", "weight_decay"),)}

    @property
    def sequence_length(self) -> int:
        """The window length the sequence source samples (K)."""
        return self.context_length

    def __post_init__(self) -> None:
        super().__post_init__()
        self.check_at_least(1, "context_length", "embed_dim", "n_layers", "n_heads", "max_timestep")
        self.check_at_least(0, "warmup_steps")
        self.check_positive("lr", "rtg_scale", "max_grad_norm")
        if self.embed_dim % self.n_heads:
            raise ConfigError(f"agent.n_heads ({self.n_heads}) must divide agent.embed_dim ({self.embed_dim})")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"agent.dropout must lie in [0, 1), got {self.dropout}")
        if self.activation not in ("relu", "gelu"):
            raise ConfigError(f"agent.activation must be 'relu' or 'gelu', got {self.activation!r}")
        if not (0.0 <= self.weight_decay < math.inf):
            raise ConfigError(f"agent.weight_decay must be a finite number >= 0, got {self.weight_decay}")
        if not math.isfinite(self.target_return):
            raise ConfigError(f"agent.target_return must be a finite number, got {self.target_return}")


# --------------------------------------------------------------------------------------
# The causal transformer (nanoGPT's shape: pre-LN blocks, fused attention)
# --------------------------------------------------------------------------------------


def attention_mask(valid: torch.Tensor) -> torch.Tensor:
    """Boolean attention mask ``[B, 1, T, T]`` (True = may attend) from ``valid`` ``[B, T]`` (False on padding):
    causal, padded keys hidden, and every token allowed to attend to itself (a padded query then sees only
    itself, which keeps its output finite; real queries never see padding)."""
    T = valid.shape[1]
    causal = torch.ones(T, T, dtype=torch.bool, device=valid.device).tril()          # [T, T]
    eye = torch.eye(T, dtype=torch.bool, device=valid.device)                         # [T, T]
    return (causal & (valid[:, None, :] | eye))[:, None]                              # [B, 1, T, T]


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: DecisionTransformerConfig) -> None:
        super().__init__()
        self.n_heads, self.dropout = cfg.n_heads, cfg.dropout
        self.qkv = nn.Linear(cfg.embed_dim, 3 * cfg.embed_dim)
        self.proj = nn.Linear(cfg.embed_dim, cfg.embed_dim)
        self.resid_drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, queries: slice | None = None) -> torch.Tensor:
        """x ``[B, T, C]`` -> ``[B, T, C]``, or ``[B, T', C]`` for the query positions ``queries`` only (every
        position still serves as a key and value)."""
        B, T, C = x.shape
        if queries is None:
            q, k, v = self.qkv(x).split(C, dim=2)                                      # [B, T, C] each
        else:  # the queries' rows of the fused projection only
            q = F.linear(x[:, queries], self.qkv.weight[:C], self.qkv.bias[:C])        # [B, T', C]
            k, v = F.linear(x, self.qkv.weight[C:], self.qkv.bias[C:]).split(C, dim=2)
            if mask is None:  # causal rows of the query positions
                mask = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()[None, None]
            mask = mask[:, :, queries]                                                 # [B|1, 1, T', T]
        Tq = q.shape[1]
        q = q.view(B, Tq, self.n_heads, C // self.n_heads).transpose(1, 2)             # [B, H, T', C/H]
        k, v = (t.view(B, T, self.n_heads, C // self.n_heads).transpose(1, 2) for t in (k, v))  # [B, H, T, C/H]
        p = self.dropout if self.training else 0.0
        if mask is None:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)  # [B, H, T', C/H]
        y = y.transpose(1, 2).reshape(B, Tq, C)
        return self.resid_drop(self.proj(y))


class Block(nn.Module):
    def __init__(self, cfg: DecisionTransformerConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.embed_dim)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.embed_dim)
        activation = nn.ReLU() if cfg.activation == "relu" else nn.GELU()
        self.mlp = nn.Sequential(nn.Linear(cfg.embed_dim, 4 * cfg.embed_dim), activation,
                                 nn.Linear(4 * cfg.embed_dim, cfg.embed_dim), nn.Dropout(cfg.dropout))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, queries: slice | None = None) -> torch.Tensor:
        """``queries``: compute the outputs of those positions only (the last block: only state tokens are read)."""
        attended = self.attn(self.ln_1(x), mask, queries)
        x = (x if queries is None else x[:, queries]) + attended
        return x + self.mlp(self.ln_2(x))


class StateEncoder(nn.Module):
    """obs ``[N, *obs_shape]`` -> ``[N, h]``: standardisation (vector observations, the dataset's statistics),
    the observation encoder (flatten / Nature CNN / Dict), a linear map to the token width. The agent's
    declared ``encoder``."""

    def __init__(self, observation_space: gym.Space, embed_dim: int, encoder_hidden: list[int],
                 normalize: bool, encoder_kind: str | EncoderConfig = "auto") -> None:
        super().__init__()
        self.standardize = ObservationStandardizer(observation_space, normalize)
        self.base = make_encoder(observation_space, encoder_hidden, encoder_kind)
        self.out_dim = embed_dim
        self.linear = nn.Linear(self.base.out_dim, embed_dim)

    def forward(self, obs: Any) -> torch.Tensor:
        return self.linear(self.base(self.standardize(obs)))


class DecisionTransformerModel(nn.Module):
    """(R̂, s, a, t) windows ``[B, K, ...]`` -> action predictions ``[B, K, A]`` (or logits ``[B, K, n]``)."""

    def __init__(self, cfg: DecisionTransformerConfig, observation_space: gym.Space, action_dim: int,
                 discrete: bool) -> None:
        super().__init__()
        h = cfg.embed_dim
        self.discrete, self.action_dim = discrete, action_dim
        self.state_encoder = StateEncoder(observation_space, h, cfg.encoder_hidden, cfg.normalize_obs,
                                          cfg.encoder)
        self.embed_return = nn.Linear(1, h)
        self.embed_action = nn.Embedding(action_dim, h) if discrete else nn.Linear(action_dim, h)
        self.embed_timestep = nn.Embedding(cfg.max_timestep, h)
        self.embed_ln = nn.LayerNorm(h)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(h)
        self.predict_action = nn.Linear(h, action_dim)
        self.max_timestep = cfg.max_timestep
        self.apply(_init_weights)

    def encode_states(self, obs: Any, B: int, K: int) -> torch.Tensor:
        """obs ``[B, K, *shape]`` (or a dict of such) -> ``[B, K, h]`` through the state encoder."""
        flat = ({k: v.reshape(B * K, *v.shape[2:]) for k, v in obs.items()} if isinstance(obs, dict)
                else obs.reshape(B * K, *obs.shape[2:]))
        return self.state_encoder(flat).view(B, K, -1)

    def forward(self, returns_to_go: torch.Tensor, obs: Any, actions: torch.Tensor, timesteps: torch.Tensor,
                valid: torch.Tensor | None, all_tokens: bool = False) -> torch.Tensor:
        """returns_to_go ``[B, K]`` (already scaled), actions ``[B, K, A]`` in [-1, 1] (or indices ``[B, K]``),
        timesteps ``[B, K]`` int64, valid ``[B, K]`` bool (None: no padding) -> ``[B, K, A or n]``.
        ``all_tokens``: run the last block over every token (the textbook computation; the same result, ~18% more
        arithmetic at 3 layers), for the test that checks the two agree."""
        B, K = timesteps.shape
        time = self.embed_timestep(timesteps.clamp(0, self.max_timestep - 1))            # [B, K, h]
        r = self.embed_return(returns_to_go.unsqueeze(-1)) + time                          # [B, K, h]
        s = self.encode_states(obs, B, K) + time                                           # [B, K, h]
        a = self.embed_action(actions) + time                                              # [B, K, h]
        x = torch.stack((r, s, a), dim=2).reshape(B, 3 * K, -1)                            # [B, 3K, h]: R1 s1 a1 R2 ..
        x = self.drop(self.embed_ln(x))
        mask = None if valid is None else attention_mask(valid.repeat_interleave(3, dim=1))  # [B, 1, 3K, 3K]
        last = len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            # the last block computes the state tokens' outputs only (1/3 of its queries, MLP and projection):
            # the action is predicted from them and nothing reads the others; the result is the same
            x = block(x, mask, queries=slice(1, None, 3) if i == last and not all_tokens else None)
        x = self.ln_f(x)
        states = x.view(B, K, 3, -1)[:, :, 1] if all_tokens else x                         # [B, K, h]: s_t's tokens
        out = self.predict_action(states)
        return out if self.discrete else torch.tanh(out)


def _init_weights(module: nn.Module) -> None:
    """N(0, 0.02) weights and zero biases for every Linear and Embedding (CORL's DT; GPT-2's for its blocks). The
    authors' gym code applies GPT-2's init inside the transformer only and leaves its embeddings and action head at
    PyTorch's defaults; the embedding LayerNorm that follows makes the difference small."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)


# --------------------------------------------------------------------------------------
# Agent
# --------------------------------------------------------------------------------------


class DecisionTransformer(Agent):
    """``update``: one supervised step on a batch of windows; ``act``: the next action of each env row from
    its last K steps, conditioned on the return still to collect."""

    capabilities = Capabilities(experience="sequences", online=False)  # an offline agent (no online DT here)

    def __init__(self, cfg: DecisionTransformerConfig, observation_space: gym.Space, action_space: gym.Space,
                 device: torch.device | str = "cpu", seed: int = 0) -> None:
        super().__init__(cfg, observation_space, action_space, device)
        self.discrete = isinstance(action_space, gym.spaces.Discrete)
        if self.discrete:
            self.n_actions, self.action_start = int(action_space.n), int(action_space.start)
            action_dim = self.n_actions
        elif isinstance(action_space, gym.spaces.Box):
            self.actions = BoxActions(action_space, self.device)  # [-1, 1] <-> env units (tanh output)
            action_dim = self.actions.dim
        else:
            raise ConfigError(f"the Decision Transformer needs a Discrete or Box action space, got {action_space}")
        self.model = DecisionTransformerModel(cfg, observation_space, action_dim, self.discrete).to(self.device)
        fused = self.device.type in ("cpu", "cuda")  # one kernel for all parameters
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                                           fused=fused)
        self.rng = np.random.default_rng(seed)  # epsilon in act()
        self._memory: dict[str, Any] | None = None  # per env row: the last K steps (acting only)
        self.declare(parts={"model": acting(self.model)}, optimizers={"optimizer": trains(self.optimizer, "model")},
                     generators={"rng": self.rng}, encoder="model.state_encoder")

    def observe_dataset(self, dataset) -> None:
        """The dataset's per-dimension state mean and std into the model's buffers (called by the offline loop
        before the first update; a resume then loads the saved ones)."""
        self.model.state_encoder.standardize.fit(dataset.episodes)

    # ------------------------------------------------------------------ learning
    def update(self, batch: Sequences) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        valid = batch.mask                                                              # [B, K] False on padding
        if self.discrete:
            actions_in = (batch.actions.long() - self.action_start).clamp(0, self.n_actions - 1)  # [B, K]
        else:
            B, K = valid.shape
            actions_in = self.actions.normalize(batch.actions.flatten(0, 1)).view(B, K, -1)  # [B, K, A] in [-1, 1]
        # the mask always goes in (asking whether a batch has padding would cost a host sync per update)
        out = self.model(batch.returns_to_go / cfg.rtg_scale, batch.obs, actions_in, batch.timesteps, valid)

        # loss on the real steps only
        weight = valid.float()
        count = weight.sum().clamp(min=1.0)
        metrics: dict[str, torch.Tensor] = {}
        if self.discrete:
            per_step = F.cross_entropy(out.flatten(0, 1), actions_in.flatten(), reduction="none")  # [B*K]
            loss = (per_step * weight.flatten()).sum() / count
            metrics["accuracy"] = ((out.detach().argmax(-1) == actions_in).float() * weight).sum() / count
        else:
            per_step = (out - actions_in).square().mean(dim=-1)                          # [B, K]
            loss = (per_step * weight).sum() / count
            metrics["action_error"] = (((out.detach() - actions_in).abs().mean(-1)) * weight).sum() / count

        # step, with the linear warm-up of the learning rate
        lr = cfg.lr * min(1.0, (self.updates + 1) / cfg.warmup_steps) if cfg.warmup_steps else cfg.lr
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        grad_norm = self.optimize("optimizer", loss, batch, max_grad_norm=cfg.max_grad_norm)
        if grad_norm is not None:
            metrics["grad_norm"] = grad_norm.detach()
        self.updates += 1
        return {"loss": loss.detach(), "lr": lr, **metrics, **self.aux_metrics}

    # ------------------------------------------------------------------ acting
    def _reset_memory(self, n: int, step: StepRecord) -> None:
        K, dev = self.cfg.context_length, self.device
        obs = step.obs
        self._memory = {
            "obs": ({k: torch.zeros((n, K, *v.shape[1:]), dtype=v.dtype, device=dev) for k, v in obs.items()}
                    if isinstance(obs, dict) else torch.zeros((n, K, *obs.shape[1:]), dtype=obs.dtype, device=dev)),
            "actions": (torch.zeros((n, K), dtype=torch.long, device=dev) if self.discrete
                        else torch.zeros((n, K, self.actions.dim), device=dev)),
            "rtg": torch.zeros((n, K), device=dev), "timesteps": torch.zeros((n, K), dtype=torch.long, device=dev),
            "valid": torch.zeros((n, K), dtype=torch.bool, device=dev),
        }

    @torch.no_grad()
    def act(self, step: StepRecord, explore: bool, epsilon: float | None = None) -> np.ndarray:
        """The next action of each row: shift each row's window by one step, write (R̂_t, s_t, t) at the end
        (R̂_t = target at an episode start, else R̂_{t-1} - r_{t-1}), predict a_t from s_t's token.
        The policy is deterministic (``explore`` changes nothing; ``epsilon`` mixes in uniform actions)."""
        n = step.size
        memory = self._memory
        if memory is None or memory["valid"].shape[0] != n:
            self._reset_memory(n, step)
            memory = self._memory
            starts = torch.ones(n, dtype=torch.bool, device=self.device)
        else:
            starts = step.episode_start
        prev_rtg, prev_t = memory["rtg"][:, -1], memory["timesteps"][:, -1]
        rtg = torch.where(starts, torch.full_like(prev_rtg, self.cfg.target_return / self.cfg.rtg_scale),
                          prev_rtg - step.prev_reward / self.cfg.rtg_scale)                # [N]
        t = torch.where(starts, torch.zeros_like(prev_t), prev_t + 1)                        # [N]

        def push(name: str, value: torch.Tensor, store: dict = memory) -> None:
            old = store[name]
            rolled = torch.roll(old, -1, dims=1)                                           # oldest step leaves
            rolled[:, -1] = value
            store[name] = torch.where(starts.view(-1, *([1] * (old.dim() - 1))), _fresh(old, value), rolled)

        obs = step.obs
        if isinstance(obs, dict):
            for key in obs:
                push(key, obs[key], memory["obs"])
        else:
            push("obs", obs)
        push("rtg", rtg)
        push("timesteps", t)
        push("valid", torch.ones(n, dtype=torch.bool, device=self.device))
        push("actions", torch.zeros_like(memory["actions"][:, -1]))                         # a_t: not seen by s_t
        valid = memory["valid"]
        self.model.eval()
        out = self.model(memory["rtg"], memory["obs"], memory["actions"], memory["timesteps"],
                         None if bool(valid.all()) else valid)[:, -1]                      # [N, A or n]
        self.model.train()
        if self.discrete:
            index = out.argmax(dim=-1)
            actions = (index + self.action_start).cpu().numpy().astype(np.int64)
        else:
            actions = self.actions.to_env(out.clamp(-1.0, 1.0))
        actions = epsilon_mix(actions, epsilon, self.action_space, self.rng)
        taken = (torch.as_tensor(np.asarray(actions) - self.action_start, device=self.device).long()
                 if self.discrete else self.actions.normalize(torch.as_tensor(actions, device=self.device).float()))
        memory["actions"][:, -1] = taken                                                     # the action really taken
        return actions


def _fresh(old: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """A row's window at an episode start: empty except its newest entry, ``value``."""
    fresh = torch.zeros_like(old)
    fresh[:, -1] = value
    return fresh

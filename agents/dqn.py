"""Deep Q-Network with the Rainbow-era variants as flags.

Papers:
  - Mnih et al. (2015), "Human-level control through deep reinforcement learning" (Nature DQN):
    target network, replay, Huber loss, epsilon-greedy with linear annealing.
  - van Hasselt et al. (2016), "Deep RL with Double Q-learning": eq. (4), the online network
    selects the argmax action and the target network evaluates it.
  - Wang et al. (2016), "Dueling Network Architectures": eq. (9),
    Q(s,a) = V(s) + A(s,a) - mean_a' A(s,a').
  - Schaul et al. (2016), "Prioritized Experience Replay": importance weights scale the loss,
    |TD error| becomes the new priority (handled by rlkit.experience.replay; this file returns the priorities).
  - n-step returns (Sutton & Barto §7.1; Hessel et al. 2018) are computed by the replay buffer:
    a batch carries R = sum_{i<k} gamma^i r_{t+i} and the bootstrap discount gamma^k (0 at terminals).

The loss (eq. 1 of the Nature paper, with the n-step and double variants):
    y = R + discount * Q_target(s', argmax_a Q_select(s', a)),   Q_select = Q_online if double else Q_target
    L = mean_i  w_i * Huber(Q_online(s, a) - y)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rlkit.contract.agent import AgentConfig
from rlkit.errors import ConfigError
from rlkit.contract.networks import NatureCNN, index_obs, make_encoder, mlp, obs_batch_size, obs_to_tensor, polyak_update
from rlkit.contract.schedules import linear_schedule
from rlkit.experience.replay import Transitions


@dataclass
class DQNConfig(AgentConfig):
    name: str = "dqn"
    lr: float = 1e-4
    """Adam learning rate."""
    adam_eps: float = 1e-8
    """Adam epsilon (1.5e-4 in Rainbow/Dopamine for Atari)."""
    gamma: float = 0.99
    hidden: list[int] = field(default_factory=lambda: [256, 256])
    """Hidden widths of the Q head (after the encoder: flat obs for vectors, Nature CNN for images)."""
    double: bool = False
    """Double DQN target (van Hasselt et al. 2016)."""
    dueling: bool = False
    """Dueling heads (Wang et al. 2016)."""
    target_update_every: int = 1_000
    """Gradient steps between target updates (Nature DQN: 10k env steps / train every 4 = 2,500)."""
    tau: float = 1.0
    """Polyak factor of each target update; 1.0 is a hard copy."""
    max_grad_norm: float | None = 10.0
    """Clip the global gradient norm (None: no clipping)."""
    huber_delta: float = 1.0
    """Huber loss threshold; the Nature paper clips the TD error to [-1, 1], which this equals."""
    eps_start: float = 1.0
    eps_end: float = 0.05
    eps_decay_steps: int = 10_000
    """Env steps over which epsilon decays linearly from eps_start to eps_end."""
    lr_end: float | None = None
    """Learning rate reached after ``lr_decay_steps`` env steps, decaying linearly from ``lr``; None keeps
    ``lr`` constant. Annealing the step size lets a solved task stay solved (configs/dqn_cartpole.yaml)."""
    lr_decay_steps: int = 0
    """Env steps over which the learning rate decays from ``lr`` to ``lr_end`` (same clock as epsilon)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.check_positive("lr", "adam_eps", "huber_delta", "max_grad_norm")
        self.check_at_least(0, "eps_decay_steps")
        self.check_unit_interval("tau", open_low=True)
        self.check_at_least(1, "target_update_every")
        self.check_unit_interval("eps_start", "eps_end")
        if any(w < 1 for w in self.hidden):
            raise ConfigError(f"agent.hidden widths must be >= 1, got {self.hidden}")
        if self.lr_end is not None and not 0.0 <= self.lr_end <= self.lr:
            raise ConfigError(f"agent.lr_end must lie in [0, agent.lr={self.lr}] or be null, got {self.lr_end}")
        if self.lr_decay_steps < 0:
            raise ConfigError(f"agent.lr_decay_steps must be >= 0, got {self.lr_decay_steps}")


class QNetwork(nn.Module):
    """obs ``[B, *obs_shape]`` (or a dict of such) -> Q-values ``[B, n_actions]``; dueling heads as an option."""

    def __init__(self, observation_space: gym.Space, n_actions: int, hidden: list[int], dueling: bool) -> None:
        super().__init__()
        self.encoder = make_encoder(observation_space)
        # the Nature CNN already ends in its 512-unit layer: no hidden layers after it
        head_hidden = [] if isinstance(self.encoder, NatureCNN) else list(hidden)
        features = self.encoder.out_dim
        self.dueling = dueling
        if dueling:
            self.value = mlp(features, head_hidden, 1)           # [B, 1]
            self.advantage = mlp(features, head_hidden, n_actions)  # [B, A]
        else:
            self.q = mlp(features, head_hidden, n_actions)        # [B, A]

    def forward(self, obs: torch.Tensor | dict[str, torch.Tensor]) -> torch.Tensor:
        z = self.encoder(obs)
        if self.dueling:
            advantage = self.advantage(z)
            return self.value(z) + advantage - advantage.mean(dim=1, keepdim=True)  # Wang et al. eq. (9)
        return self.q(z)


class DQN:
    """DQN agent: ``act`` is epsilon-greedy, ``update`` is one gradient step on a replay batch."""

    supports_prioritized_replay = True
    """``update`` reports new priorities (|TD error|) through ``update_priorities`` for prioritized replay."""
    acting_modules = ("q_net",)
    """The modules ``act`` needs: what ``rlkit export`` writes to safetensors (no optimizer, no target)."""
    resumable_keys = frozenset({"double", "target_update_every", "tau", "max_grad_norm", "huber_delta",
                                "eps_start", "eps_end", "eps_decay_steps", "lr_end", "lr_decay_steps"})
    """Config fields read at use time, so ``rlkit train --resume RUN agent.tau=...`` takes effect."""
    optimizer_keys = {"lr": (("optimizer", "lr"),), "adam_eps": (("optimizer", "eps"),)}
    """Config fields written into the optimizers' param groups on resume: (optimizer attribute, key)."""

    def __init__(self, cfg: DQNConfig, observation_space: gym.Space, action_space: gym.Space,
                 device: torch.device | str = "cpu", seed: int = 0) -> None:
        if not isinstance(action_space, gym.spaces.Discrete):
            raise ConfigError(f"DQN needs a Discrete action space, the env has {action_space}; "
                              "use an agent for continuous actions (e.g. MPO, SAC)")
        self.cfg = cfg
        self.device = torch.device(device)
        self.n_actions = int(action_space.n)
        self.q_net = QNetwork(observation_space, self.n_actions, cfg.hidden, cfg.dueling).to(self.device)
        self.target_net = QNetwork(observation_space, self.n_actions, cfg.hidden, cfg.dueling).to(self.device)
        self.target_net.load_state_dict(self.q_net.state_dict())
        self.target_net.requires_grad_(False)
        # fused Adam: one kernel for all parameters instead of ~6 ops per tensor (10% of a CartPole update)
        fused = self.device.type in ("cpu", "cuda")
        self.optimizer = torch.optim.Adam(self.q_net.parameters(), lr=cfg.lr, eps=cfg.adam_eps, fused=fused)
        self.rng = np.random.default_rng(seed)
        self.env_steps = 0  # the loop's clock of real env transitions (set_env_steps): drives epsilon and lr
        self.updates = 0

    def set_env_steps(self, env_steps: int) -> None:
        """The loop's count of real env transitions so far (SB3's ``num_timesteps``); the epsilon and
        learning-rate schedules read it. A hand-written loop calls it after each env step."""
        self.env_steps = int(env_steps)

    @property
    def epsilon(self) -> float:
        return linear_schedule(self.cfg.eps_start, self.cfg.eps_end, self.cfg.eps_decay_steps, self.env_steps)

    @property
    def lr(self) -> float:
        if self.cfg.lr_end is None:
            return self.cfg.lr
        return linear_schedule(self.cfg.lr, self.cfg.lr_end, self.cfg.lr_decay_steps, self.env_steps)

    @torch.no_grad()
    def greedy(self, obs: np.ndarray) -> np.ndarray:
        q = self.q_net(obs_to_tensor(obs, self.device))
        return q.argmax(dim=1).cpu().numpy()

    def act(self, obs: np.ndarray, explore: bool, episode_start: np.ndarray | None = None,
            epsilon: float | None = None) -> np.ndarray:
        """Epsilon-greedy over a batch; ``explore`` uses the schedule, else ``epsilon`` (default 0).

        The schedule follows the loop's clock of real env transitions (:meth:`set_env_steps`), so steps
        that gymnasium's NEXT_STEP autoreset ignores are not counted, and a resumed run continues it.

        The network runs only on the observations that act greedily: early in training, when epsilon
        is near 1, collection costs no forward pass at all (the dominant cost of CPU Atari collection).
        """
        n = obs_batch_size(obs)
        eps = self.epsilon if explore else (epsilon or 0.0)
        if eps <= 0.0:
            return self.greedy(obs)
        random_mask = self.rng.random(n) < eps
        actions = self.rng.integers(self.n_actions, size=n)
        if not random_mask.all():
            greedy_mask = ~random_mask
            actions[greedy_mask] = self.greedy(index_obs(obs, greedy_mask))
        return actions

    def update(self, batch: Transitions, update_priorities=None) -> dict[str, torch.Tensor | float]:
        # targets: y = R + gamma^k * Q_target(s', argmax_a Q_select(s', a))
        with torch.no_grad():
            next_q_target = self.target_net(batch.next_obs)                       # [B, A]
            select_q = self.q_net(batch.next_obs) if self.cfg.double else next_q_target
            next_actions = select_q.argmax(dim=1, keepdim=True)                    # [B, 1]
            next_q = next_q_target.gather(1, next_actions).squeeze(1)              # [B]
            target = batch.rewards + batch.discounts * next_q

        # online Q and importance-weighted Huber loss
        q = self.q_net(batch.obs).gather(1, batch.actions.long().view(-1, 1)).squeeze(1)  # [B]
        td_error = q - target
        loss = (batch.weights * F.huber_loss(q, target, reduction="none", delta=self.cfg.huber_delta)).mean()

        self.optimizer.zero_grad(set_to_none=True)
        if self.cfg.lr_end is not None:
            for group in self.optimizer.param_groups:
                group["lr"] = self.lr
        loss.backward()
        if self.cfg.max_grad_norm is not None:
            grad_norm = nn.utils.clip_grad_norm_(self.q_net.parameters(), self.cfg.max_grad_norm)
        else:
            grad_norm = torch.zeros((), device=self.device)
        self.optimizer.step()

        # target network
        self.updates += 1
        if self.updates % self.cfg.target_update_every == 0:
            polyak_update(self.q_net, self.target_net, self.cfg.tau)

        if update_priorities is not None:
            update_priorities(batch.indices, td_error.detach().abs())
        return {"loss": loss.detach(), "q_mean": q.detach().mean(), "grad_norm": grad_norm.detach(),
                "epsilon": self.epsilon, **({"lr": self.lr} if self.cfg.lr_end is not None else {})}

    def state_dict(self) -> dict:
        return {
            "q_net": self.q_net.state_dict(),
            "target_net": self.target_net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "env_steps": self.env_steps,
            "updates": self.updates,
            "rng": json.dumps(self.rng.bit_generator.state),
        }

    def load_state_dict(self, state: dict) -> None:
        self.q_net.load_state_dict(state["q_net"])
        self.target_net.load_state_dict(state["target_net"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.env_steps = int(state["env_steps"])
        self.updates = int(state["updates"])
        self.rng.bit_generator.state = json.loads(state["rng"])

"""Deep Q-Network with the Rainbow-era variants as flags.

Papers:
  - Mnih et al. (2015), "Human-level control through deep reinforcement learning" (Nature DQN):
    target network, replay, Huber loss, epsilon-greedy with linear annealing.
  - van Hasselt et al. (2016), "Deep RL with Double Q-learning": eq. (4), the online network
    selects the argmax action and the target network evaluates it.
  - Wang et al. (2016), "Dueling Network Architectures": eq. (9),
    Q(s,a) = V(s) + A(s,a) - mean_a' A(s,a').
  - Schaul et al. (2016), "Prioritized Experience Replay": importance weights scale the loss,
    |TD error| becomes the new priority (handled by rlkit.replay; this file returns the priorities).
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

from rlkit.config import ConfigError
from rlkit.networks import FlatEncoder, NatureCNN, is_image_space, linear_schedule, mlp, polyak_update
from rlkit.replay import Transitions


@dataclass
class DQNConfig:
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
        for name in ("lr", "adam_eps", "huber_delta"):  # `not 0 < x < inf` also rejects NaN
            if not 0.0 < getattr(self, name) < float("inf"):
                raise ConfigError(f"agent.{name} must be a finite number > 0, got {getattr(self, name)}")
        if self.max_grad_norm is not None and not 0.0 < self.max_grad_norm < float("inf"):
            raise ConfigError(f"agent.max_grad_norm must be a finite number > 0 or null, got {self.max_grad_norm}")
        if self.eps_decay_steps < 0:
            raise ConfigError(f"agent.eps_decay_steps must be >= 0, got {self.eps_decay_steps}")
        if not 0.0 < self.gamma <= 1.0:
            raise ConfigError(f"agent.gamma must lie in (0, 1], got {self.gamma}")
        if not 0.0 < self.tau <= 1.0:
            raise ConfigError(f"agent.tau must lie in (0, 1], got {self.tau}")
        if self.target_update_every < 1:
            raise ConfigError(f"agent.target_update_every must be >= 1, got {self.target_update_every}")
        for name in ("eps_start", "eps_end"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"agent.{name} must lie in [0, 1], got {getattr(self, name)}")
        if any(w < 1 for w in self.hidden):
            raise ConfigError(f"agent.hidden widths must be >= 1, got {self.hidden}")
        if self.lr_end is not None and not 0.0 <= self.lr_end <= self.lr:
            raise ConfigError(f"agent.lr_end must lie in [0, agent.lr={self.lr}] or be null, got {self.lr_end}")
        if self.lr_decay_steps < 0:
            raise ConfigError(f"agent.lr_decay_steps must be >= 0, got {self.lr_decay_steps}")


class QNetwork(nn.Module):
    """obs ``[B, *obs_shape]`` -> Q-values ``[B, n_actions]``; dueling heads as an option."""

    def __init__(self, obs_shape: tuple[int, ...], obs_dtype, n_actions: int, hidden: list[int], dueling: bool) -> None:
        super().__init__()
        if is_image_space(obs_shape, obs_dtype):
            self.encoder: nn.Module = NatureCNN(obs_shape[0], obs_shape[1], obs_shape[2])
            head_hidden: list[int] = []  # the Nature CNN already ends in its 512-unit layer
        else:
            self.encoder = FlatEncoder(obs_shape)
            head_hidden = list(hidden)
        features = self.encoder.out_dim
        self.dueling = dueling
        if dueling:
            self.value = mlp(features, head_hidden, 1)           # [B, 1]
            self.advantage = mlp(features, head_hidden, n_actions)  # [B, A]
        else:
            self.q = mlp(features, head_hidden, n_actions)        # [B, A]

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        z = self.encoder(obs)
        if self.dueling:
            advantage = self.advantage(z)
            return self.value(z) + advantage - advantage.mean(dim=1, keepdim=True)  # Wang et al. eq. (9)
        return self.q(z)


class DQN:
    """DQN agent: ``act`` is epsilon-greedy, ``update`` is one gradient step on a replay batch."""

    supports_prioritized_replay = True
    """``update`` returns new priorities (|TD error|) for prioritized replay."""
    acting_modules = ("q_net",)
    """The modules ``act`` needs: what ``rlkit export`` writes to safetensors (no optimizer, no target)."""

    def __init__(self, cfg: DQNConfig, observation_space: gym.Space, action_space: gym.Space,
                 device: torch.device | str = "cpu", seed: int = 0) -> None:
        if not isinstance(action_space, gym.spaces.Discrete):
            raise ConfigError(f"DQN needs a Discrete action space, the env has {action_space}; "
                              "use an agent for continuous actions (e.g. MPO, SAC)")
        self.cfg = cfg
        self.device = torch.device(device)
        self.n_actions = int(action_space.n)
        obs_shape = tuple(observation_space.shape)
        self.q_net = QNetwork(obs_shape, observation_space.dtype, self.n_actions, cfg.hidden, cfg.dueling).to(self.device)
        self.target_net = QNetwork(obs_shape, observation_space.dtype, self.n_actions, cfg.hidden, cfg.dueling).to(self.device)
        self.target_net.load_state_dict(self.q_net.state_dict())
        self.target_net.requires_grad_(False)
        # fused Adam: one kernel for all parameters instead of ~6 ops per tensor (10% of a CartPole update)
        fused = self.device.type in ("cpu", "cuda")
        self.optimizer = torch.optim.Adam(self.q_net.parameters(), lr=cfg.lr, eps=cfg.adam_eps, fused=fused)
        self.rng = np.random.default_rng(seed)
        self.env_steps = 0  # real env transitions taken while exploring: drives the epsilon schedule
        self.updates = 0

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
        q = self.q_net(torch.as_tensor(obs, device=self.device))
        return q.argmax(dim=1).cpu().numpy()

    def act(self, obs: np.ndarray, explore: bool, epsilon: float | None = None,
            autoreset: np.ndarray | None = None) -> np.ndarray:
        """Epsilon-greedy over a batch; ``explore`` uses the schedule, else ``epsilon`` (default 0).

        ``autoreset`` (bool ``[N]``, optional): the sub-envs whose next step is gymnasium's NEXT_STEP
        autoreset, which ignores the action. Those steps are not transitions, so they do not advance
        the epsilon schedule: it counts env steps as the loop does (real transitions only).

        The network runs only on the observations that act greedily: early in training, when epsilon
        is near 1, collection costs no forward pass at all (the dominant cost of CPU Atari collection).
        """
        n = len(obs)
        eps = self.epsilon if explore else (epsilon or 0.0)
        if explore:
            self.env_steps += n if autoreset is None else n - int(np.count_nonzero(autoreset))
        if eps <= 0.0:
            return self.greedy(obs)
        random_mask = self.rng.random(n) < eps
        actions = self.rng.integers(self.n_actions, size=n)
        if not random_mask.all():
            greedy_mask = ~random_mask
            actions[greedy_mask] = self.greedy(obs[greedy_mask])
        return actions

    def update(self, batch: Transitions) -> tuple[dict[str, float], torch.Tensor]:
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
            grad_norm = torch.zeros(())
        self.optimizer.step()

        # target network
        self.updates += 1
        if self.updates % self.cfg.target_update_every == 0:
            polyak_update(self.q_net, self.target_net, self.cfg.tau)

        metrics = {"loss": loss.item(), "q_mean": q.mean().item(), "grad_norm": float(grad_norm),
                   "epsilon": self.epsilon, **({"lr": self.lr} if self.cfg.lr_end is not None else {})}
        return metrics, td_error.detach().abs()

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

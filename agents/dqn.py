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

Multi-agent rows (PettingZoo games, rlkit.envs.multiagent): ``policies: shared`` is one Q-network for every agent
(the env appends the agent id to its input); ``per_agent`` or ``{team: [agents]}`` gives each agent or team its own
copy (rlkit.contract.policy_groups), each row of a batch going through its agent's copy in act and in update.

DrQ (Kostrikov, Yarats, Fergus 2020, sec. 4; ``drq_k``, ``drq_m`` > 0, pixels only): f(s, nu) a random shift of up
to +-``drq_pad`` pixels; K shifts of s' averaged in the target, M of s in the loss (the paper's Atari 100k: K = M = 1):
    y = R + discount * 1/K sum_k Q_target(f(s', nu'_k), argmax_a Q_select(f(s', nu'_k), a))
    L = 1/M sum_m mean_i w_i * Huber(Q_online(f(s, nu_m), a) - y)

Action masks (board games; the step record's ``action_mask``, and ``obs["action_mask"]`` of Dict observations in
a batch): epsilon-greedy picks among the allowed actions only, and the argmax in y runs over the actions allowed
in s' (an illegal action's Q is never learnt, so maximising over it would bootstrap from noise).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rlkit.auxiliary.augment import drq_views, has_image
from rlkit.contract.agent import Agent, AgentConfig, Capabilities, StepRecord
from rlkit.contract.networks import EncoderConfig, NatureCNN, index_obs, make_encoder, mlp
from rlkit.contract.parts import acting, target_of, trains
from rlkit.contract.policy_groups import SHARED, PolicyGroups, check_policies, resolve_policies
from rlkit.contract.schedules import linear_schedule
from rlkit.errors import ConfigError
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
    drq_k: int = 0
    """DrQ: random shifts of s' averaged in the target (0 with ``drq_m: 0``: off). Image observations only."""
    drq_m: int = 0
    """DrQ: random shifts of s averaged in the loss."""
    drq_pad: int = 4
    """DrQ: the shift's padding in pixels (the paper: 4 on 84 x 84)."""
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
    eps_decay_start: int = 0
    """Env steps epsilon holds at eps_start before it decays (Dopamine holds it until learning starts: its
    ``linearly_decaying_epsilon`` warm-up, e.g. 1,600 in DrQ.gin)."""
    lr_end: float | None = None
    """Learning rate reached after ``lr_decay_steps`` env steps, decaying linearly from ``lr``; None keeps
    ``lr`` constant. Annealing the step size lets a solved task stay solved (configs/dqn_cartpole.yaml)."""
    lr_decay_steps: int = 0
    """Env steps over which the learning rate decays from ``lr`` to ``lr_end`` (same clock as epsilon)."""
    policies: Any = "shared"
    """Networks of a multi-agent game's agents (rows with agent ids): ``shared`` (one for all, the default),
    ``per_agent`` (one each) or ``{team: [agent names or ids]}`` (one per team, every agent in one team).
    Resolved against the env's agents when the run is built: config.yaml records ``{team: [ids]}``."""

    resumable: ClassVar[frozenset[str]] = frozenset({
        "double", "target_update_every", "tau", "max_grad_norm", "huber_delta", "eps_start", "eps_end",
        "eps_decay_steps", "eps_decay_start", "lr_end", "lr_decay_steps"})
    optimizer_settings: ClassVar[Mapping[str, tuple[tuple[str, str], ...]]] = {
        "lr": (("optimizer", "lr"),), "adam_eps": (("optimizer", "eps"),)}

    def env_step_schedules(self) -> list[str]:
        return ["lr_decay_steps"] if self.lr_end is not None and self.lr_decay_steps > 0 else []

    def __post_init__(self) -> None:
        super().__post_init__()
        self.check_positive("lr", "adam_eps", "huber_delta", "max_grad_norm")
        self.check_at_least(0, "eps_decay_steps", "eps_decay_start")
        self.check_unit_interval("tau", open_low=True)
        self.check_at_least(1, "target_update_every")
        self.check_unit_interval("eps_start", "eps_end")
        if any(w < 1 for w in self.hidden):
            raise ConfigError(f"agent.hidden widths must be >= 1, got {self.hidden}")
        if self.lr_end is not None and not 0.0 <= self.lr_end <= self.lr:
            raise ConfigError(f"agent.lr_end must lie in [0, agent.lr={self.lr}] or be null, got {self.lr_end}")
        if self.lr_decay_steps < 0:
            raise ConfigError(f"agent.lr_decay_steps must be >= 0, got {self.lr_decay_steps}")
        check_policies(self.policies)
        self.check_at_least(0, "drq_k", "drq_m", "drq_pad")
        if (self.drq_k == 0) != (self.drq_m == 0):
            raise ConfigError(f"agent.drq_k and agent.drq_m turn DrQ on together (both >= 1) or off (both 0), got "
                              f"{self.drq_k} and {self.drq_m}")

    def bind_agents(self, agent_names: list[str] | None) -> None:
        self.policies = resolve_policies(self.policies, agent_names)


def next_action_mask(obs: torch.Tensor | dict[str, torch.Tensor]) -> torch.Tensor | None:
    """The action mask of a batch of Dict observations (key ``action_mask``, nonzero = allowed), else None."""
    if isinstance(obs, Mapping) and "action_mask" in obs:
        return obs["action_mask"].bool()
    return None


class QNetwork(nn.Module):
    """obs ``[B, *obs_shape]`` (or a dict of such) -> Q-values ``[B, n_actions]``; dueling heads as an option."""

    def __init__(self, observation_space: gym.Space, n_actions: int, hidden: list[int], dueling: bool,
                 encoder_hidden: list[int] = (), encoder_kind: str | EncoderConfig = "auto") -> None:
        super().__init__()
        self.encoder = make_encoder(observation_space, encoder_hidden, encoder_kind)
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


class DQN(Agent):
    """DQN agent: ``act`` is epsilon-greedy, ``update`` is one gradient step on a replay batch."""

    capabilities = Capabilities(env_step_clock=True, priority_feedback=True, continuous_actions=False)

    def __init__(self, cfg: DQNConfig, observation_space: gym.Space, action_space: gym.Space,
                 device: torch.device | str = "cpu", seed: int = 0) -> None:
        if not isinstance(action_space, gym.spaces.Discrete):
            raise ConfigError(f"DQN needs a Discrete action space, the env has {action_space}; "
                              "use an agent for continuous actions (e.g. MPO, SAC)")
        if cfg.drq_k and not has_image(observation_space):
            raise ConfigError(f"agent.drq_k/drq_m: DrQ shifts images, the env observes {observation_space}; "
                              "set agent.drq_k: 0 and agent.drq_m: 0 for vector observations")
        super().__init__(cfg, observation_space, action_space, device)
        self.n_actions = int(action_space.n)
        one_q = lambda: QNetwork(observation_space, self.n_actions, cfg.hidden, cfg.dueling,  # noqa: E731
                                 cfg.encoder_hidden, cfg.encoder)
        self.grouped = cfg.policies != SHARED
        if self.grouped:  # one network per agent or team; unresolved names fail here, before any weights exist
            groups = resolve_policies(cfg.policies, None)
            new_q = lambda: PolicyGroups(one_q, groups).to(self.device)  # noqa: E731
        else:
            new_q = lambda: one_q().to(self.device)  # noqa: E731
        self.q_net, self.target_net = new_q(), new_q()
        self.target_net.load_state_dict(self.q_net.state_dict())
        self.target_net.requires_grad_(False)
        # fused Adam: one kernel for all parameters instead of ~6 ops per tensor (10% of a CartPole update)
        fused = self.device.type in ("cpu", "cuda")
        self.optimizer = torch.optim.Adam(self.q_net.parameters(), lr=cfg.lr, eps=cfg.adam_eps, fused=fused)
        self.rng = np.random.default_rng(seed)
        self.declare(parts={"q_net": acting(self.q_net), "target_net": target_of("q_net", self.target_net)},
                     optimizers={"optimizer": trains(self.optimizer, "q_net")},
                     generators={"rng": self.rng}, encoder=None if self.grouped else "q_net.encoder")

    @property
    def epsilon(self) -> float:
        return linear_schedule(self.cfg.eps_start, self.cfg.eps_end, self.cfg.eps_decay_steps,
                               self.env_steps - self.cfg.eps_decay_start)

    @property
    def lr(self) -> float:
        if self.cfg.lr_end is None:
            return self.cfg.lr
        return linear_schedule(self.cfg.lr, self.cfg.lr_end, self.cfg.lr_decay_steps, self.env_steps)

    def q_values(self, net: nn.Module, obs: torch.Tensor | dict[str, torch.Tensor],
                 agent_id: torch.Tensor | None) -> torch.Tensor:
        """Q(obs, .) ``[B, A]`` from ``net`` (the online or the target network); rows routed by agent id when
        each agent or team has its own network."""
        return net(obs, agent_id) if self.grouped else net(obs)

    @torch.no_grad()
    def greedy(self, obs: torch.Tensor | dict[str, torch.Tensor], mask: torch.Tensor | None = None,
               agent_id: torch.Tensor | None = None) -> np.ndarray:
        q = self.q_values(self.q_net, obs, agent_id)
        if mask is not None:  # masked actions are never chosen (rows with no legal action take action 0)
            q = q.masked_fill(~mask, -torch.inf)
        return q.argmax(dim=1).cpu().numpy()

    def _check_mask(self, mask: torch.Tensor | None, n: int) -> torch.Tensor | None:
        if mask is not None and tuple(mask.shape) != (n, self.n_actions):
            raise ValueError(f"the action mask has shape {tuple(mask.shape)}, expected ({n}, {self.n_actions}): one "
                             f"entry per action of the env's Discrete({self.n_actions})")
        return mask

    def act(self, step: StepRecord, explore: bool, epsilon: float | None = None) -> np.ndarray:
        """Epsilon-greedy over a batch; ``explore`` uses the schedule, else ``epsilon`` (default 0).

        The schedule follows the loop's clock of real env transitions (:meth:`set_env_steps`), so steps
        that gymnasium's NEXT_STEP autoreset ignores are not counted, and a resumed run continues it.

        The network runs only on the observations that act greedily: early in training, when epsilon
        is near 1, collection costs no forward pass at all (the dominant cost of CPU Atari collection).
        """
        n = step.size
        mask = self._check_mask(step.action_mask, n)
        eps = self.epsilon if explore else (epsilon or 0.0)
        if eps <= 0.0:
            return self.greedy(step.obs, mask, step.agent_id)
        random_mask = self.rng.random(n) < eps
        if mask is None:
            actions = self.rng.integers(self.n_actions, size=n)
        else:  # uniform over each row's allowed actions: the argmax of uniform noise on them
            allowed = mask.cpu().numpy()
            actions = np.where(allowed, self.rng.random((n, self.n_actions)), -1.0).argmax(axis=1)
        greedy_rows = n - int(np.count_nonzero(random_mask))
        if greedy_rows == n:  # every row greedy (always so for one env): the record as it is, no row selection
            actions[:] = self.greedy(step.obs, mask, step.agent_id)
        elif greedy_rows:
            greedy_mask = ~random_mask
            rows = torch.from_numpy(greedy_mask).to(self.device)
            actions[greedy_mask] = self.greedy(index_obs(step.obs, rows), None if mask is None else mask[rows],
                                               None if step.agent_id is None else step.agent_id[rows])
        return actions

    @torch.no_grad()
    def td_target(self, batch: Transitions) -> torch.Tensor:
        """y = R + gamma^k * Q_target(s', argmax_a Q_select(s', a)) over the actions allowed in s' ``[B]``
        (DrQ: averaged over K random shifts of s')."""
        K, B = max(self.cfg.drq_k, 1), len(batch.rewards)
        next_obs = drq_views(batch.next_obs, self.cfg.drq_k, self.cfg.drq_pad)                 # [K * B, ...]
        next_ids = None if batch.next_agent_id is None else batch.next_agent_id.repeat(K)
        next_q_target = self.q_values(self.target_net, next_obs, next_ids)                    # [K * B, A]
        select_q = (self.q_values(self.q_net, next_obs, next_ids) if self.cfg.double
                    else next_q_target)
        next_mask = next_action_mask(next_obs)  # [K * B, A]: the views repeat every vector key, the mask too
        if next_mask is not None:  # the max runs over the actions allowed in s' only
            select_q = select_q.masked_fill(~next_mask, -torch.inf)
        next_actions = select_q.argmax(dim=1, keepdim=True)                    # [B, 1]
        next_q = next_q_target.gather(1, next_actions).squeeze(1)              # [B]
        if next_mask is not None:  # no allowed action (a finished game): nothing to bootstrap from
            next_q = torch.where(next_mask.any(dim=1), next_q, torch.zeros_like(next_q))
        return batch.rewards + batch.discounts * next_q.view(K, B).mean(dim=0)

    def update(self, batch: Transitions) -> dict[str, torch.Tensor | float]:
        target = self.td_target(batch)

        # online Q and importance-weighted Huber loss (DrQ: averaged over M random shifts of s)
        M = max(self.cfg.drq_m, 1)
        obs = drq_views(batch.obs, self.cfg.drq_m, self.cfg.drq_pad)                     # [M * B, ...]
        q = self.q_values(self.q_net, obs, None if batch.agent_id is None else batch.agent_id.repeat(M))
        q = q.gather(1, batch.actions.long().view(-1, 1).repeat(M, 1)).view(M, -1)       # [M, B]
        td_error = q.mean(dim=0) - target
        loss = (batch.weights * F.huber_loss(q, target.expand_as(q), reduction="none",
                                             delta=self.cfg.huber_delta)).mean()
        if self.cfg.lr_end is not None:
            for group in self.optimizer.param_groups:
                group["lr"] = self.lr
        grad_norm = self.optimize("optimizer", loss, batch, max_grad_norm=self.cfg.max_grad_norm)
        if grad_norm is None:
            grad_norm = torch.zeros((), device=self.device)

        # target network
        self.updates += 1
        if self.updates % self.cfg.target_update_every == 0:
            self.update_target("target_net", self.cfg.tau)

        self.report_priorities(batch.indices, td_error.detach().abs())
        return {"loss": loss.detach(), "q_mean": q.detach().mean(), "grad_norm": grad_norm.detach(),
                "epsilon": self.epsilon, **({"lr": self.lr} if self.cfg.lr_end is not None else {}),
                **self.aux_metrics}

"""RIS: Reinforcement learning with Imagined Subgoals, on SAC's machinery.

Paper: Chane-Sane, Schmid, Laptev (2021), "Goal-Conditioned Reinforcement Learning with Imagined Subgoals",
ICML 2021 (arXiv:2107.00541). Reference code: github.com/elliotchanesane31/RIS (``RIS.py``, ``Models.py``,
``HER.py``, ``train_ant.py``); "ref" below points there.

Notation: s the state, g the goal, s_g a subgoal (a state), a = tanh(u) the squashed action; Q_1, Q_2 the
twin critics Q(s, a, g), Qbar_i their Polyak targets; pi(.|s, g) the policy, pibar its Polyak-averaged copy
(ref ``actor_target``: the *prior* policy on subgoals); pi_H(s_g|s, g) the high-level (subgoal) policy.

States and goals. The reference's goals are full states (state_dim = goal_dim); rlkit's goal envs give
``observation``, ``achieved_goal`` (the position) and ``desired_goal`` (a goal in achieved_goal space). RIS
here uses the state vector s = [achieved_goal, observation] (rlkit/AntMazeU-v0's ``observation`` leaves out
the torso xy, which is ``achieved_goal``; on PointMaze the xy appears twice, harmlessly), subgoals are such
states, and a subgoal used as a goal is its ``achieved_goal`` part, goal(s_g) = s_g[:goal_dim]. So
V(s, s_g) = V(s, goal(s_g)) and V(s_g, g) reads s_g as a state.

Rewards (``distance_rewards``, ref ``train_ant.py: sample_and_preprocess_batch``): -1 every step, and the
transition is terminal when its next state reached the goal, so V(s, g) = -(discounted steps from s to g),
a distance. rlkit's sparse goal rewards (0 on success, -1 otherwise; HER recomputes them for relabelled
goals) mark success by r = 0: RIS's reward is then r' = -1 and its discount d' = 0 where r = 0, else the
batch's gamma. This reading holds for one-step transitions of the sparse 0/-1 reward only: an n-step sum
(-2.97 for three missed steps at gamma 0.99) would become -1 and a dense reward (-distance) would never
read as success, both silently wrong targets. So ``distance_rewards`` refuses ``train.replay.n_step > 1``
and an env whose ``reward_type`` is not ``sparse`` when the run is built (:meth:`RISConfig.check_run`), and
the first update checks that the batch's rewards are 0 or -1 (an env whose reward kind the config does not
name); ``distance_rewards: false`` trains on the batch's rewards and discounts as they are, any n.

Value (ref ``RIS.value``): V(s, g) = min_i Q_i(s, tanh(mu(s, g)), g), the policy's mean action.

Critic (ref ``RIS.train``; no entropy term: the KL below regularises the policy):
    y   = r' + d' * min_i Qbar_i(s', a', g),        a' ~ pi(.|s', g)
    L_Q = sum_i 1/2 mean_b w_b (Q_i(s_b, a_b, g_b) - y_b)^2

Subgoal cost (paper eq. 6; ref clamps values to [-100, 0]):
    C(s_g | s, g) = max( |V(s, s_g)|, |V(s_g, g)| )

High-level policy (paper eqs. 7-8, ref ``train_highlevel_policy``): advantage-weighted regression toward
candidate subgoals s_g^c drawn uniformly from the replay buffer's states, i.e. the paper's prior over subgoals
is the replay buffer's state distribution, p(s_g), and the fitted target is pi_H ~ p(s_g) exp(A / lambda):
    A(s_g^c)  = -( C(s_g^c | s, g) - C(mean of pi_H(.|s, g) | s, g) )          (baseline: pi_H's location)
    w         = softmax(A / lambda)           over all candidates of the batch (ref: ``softmax(adv/Lambda, dim=0)``)
    L_H       = - mean_c  w_c log pi_H(s_g^c | s, g)
pi_H is a Laplace distribution with a diagonal scale (ref ``LaplacePolicy``). The reference draws one
candidate per sample (``random_state_batch(batch_size)``); ``candidates_per_sample`` K > 1 draws K each.

Policy (paper eq. 5, ref ``sample_action_and_KL``): the prior on imagined subgoals is held fixed,
    pi_prior(a | s, g) = 1/n sum_k pibar(a | s, s_g^k),      s_g^k ~ pi_H(.|s, g), k = 1..n  (no gradient)
    KL        = log pi(u | s, g) - log( 1/n sum_k pibar(u | s, s_g^k) + epsilon )      (one-sample estimate)
    L_pi      = mean_b ( alpha * KL_b - min_i Q_i(s_b, tanh(u_b), g_b) ),       u_b = mu + sigma * xi (reparam.)
Both densities are those of the pre-tanh Gaussian u: the tanh Jacobian is the same for both and cancels in the
KL. The gradient flows through u into both log-densities; pibar's weights and the subgoals stay fixed.

Targets: Qbar <- tau Q + (1 - tau) Qbar and pibar <- tau pi + (1 - tau) pibar every ``target_update_every``.

Replay: each batch is a :class:`SubgoalTransitions`, the loop's ``Transitions`` with the candidates
as one more declared field, made by :meth:`RIS.make_sample_hook` (the replay's sample-time hook, run after HER).

Differences from the reference, all deliberate: evaluation acts with tanh(mu) (ref samples); the mixture's
log-density is computed in log space (``logaddexp``: the same value, no underflow of the density product);
the reference replaces every stored terminal flag by "the goal was reached" (``done = distance < threshold``),
rlkit does too except that a termination the env gave for another reason (a fall; none of the maze or Fetch
tasks has one) stays terminal, as HER keeps it (``rlkit.experience.her``).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rlkit.contract.agent import Agent, AgentConfig, BoxActions, Capabilities, StepRecord, check_bounded_box_actions, epsilon_mix
from rlkit.contract.networks import EnsembleLinear, mlp
from rlkit.contract.parts import acting, target_of, trained, trains
from rlkit.errors import ConfigError
from rlkit.experience.replay import SampleContext, Transitions

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


@dataclass
class RISConfig(AgentConfig):
    name: str = "ris"
    gamma: float = 0.99
    """Discount (paper, ref ``gamma=0.99``)."""
    actor_lr: float = 1e-3
    """Adam learning rate of the policy (ref ``train_ant.py --pi_lr 1e-3``; ``RIS.py``'s default is 1e-4)."""
    critic_lr: float = 1e-3
    """Adam learning rate of the twin critic (ref ``--q_lr 1e-3``)."""
    subgoal_lr: float = 1e-4
    """Adam learning rate of the high-level policy (ref ``--h_lr 1e-4``)."""
    alpha: float = 0.1
    """Weight of the KL to the subgoal prior in the policy loss (paper, ref ``--alpha 0.1``)."""
    awr_lambda: float = 0.1
    """Temperature lambda of the advantage weights softmax(A / lambda) (paper, ref ``--Lambda 0.1``)."""
    epsilon: float = 1e-16
    """Added to the prior mixture's density inside the log (ref ``epsilon=1e-16``, the Ant value)."""
    subgoal_samples: int = 10
    """Subgoals n drawn from pi_H for the prior mixture (ref ``n_ensemble=10``)."""
    candidates_per_sample: int = 1
    """Candidate subgoals K drawn from the replay buffer per sample for the AWR step (ref: 1, a second batch
    of ``batch_size`` states)."""
    tau: float = 0.005
    """Polyak factor of the target critic and the prior policy (ref ``tau=0.005``)."""
    target_update_every: int = 1
    """Updates between Polyak updates (ref ``target_update_interval=1``)."""
    value_clip: float = 100.0
    """Values enter the subgoal cost clamped to [-value_clip, 0] (ref ``clamp(min=-100.0, max=0.0)``)."""
    distance_rewards: bool = True
    """RIS's rewards: -1 every step and terminal where the (possibly relabelled) sparse reward says the goal
    was reached (r = 0), so values are distances (ref ``sample_and_preprocess_batch``). Needs the sparse 0/-1
    goal reward and ``train.replay.n_step: 1``. False: the batch's rewards and discounts as they are."""
    actor_hidden: list[int] = field(default_factory=lambda: [256, 256])
    """Hidden widths of the policy MLP on [s, g] (ref ``GaussianPolicy``: 256, 256)."""
    critic_hidden: list[int] = field(default_factory=lambda: [256, 256])
    """Hidden widths of each Q-function's MLP on [s, a, g] (ref ``Critic``: 256, 256)."""
    subgoal_hidden: list[int] = field(default_factory=lambda: [256, 256])
    """Hidden widths of the high-level policy MLP on [s, g] (ref ``LaplacePolicy``: 256, 256)."""
    log_std_min: float = -20.0
    """Lower clamp of the policy's log standard deviation (ref ``LOG_SIG_MIN``)."""
    log_std_max: float = 2.0
    """Upper clamp of the policy's log standard deviation (ref ``LOG_SIG_MAX``)."""
    log_scale_min: float = -20.0
    """Lower clamp of pi_H's log Laplace scale (ref ``LOG_SCALE_MIN``)."""
    log_scale_max: float = 2.0
    """Upper clamp of pi_H's log Laplace scale (ref ``LOG_SCALE_MAX``)."""
    random_steps: int = 0
    """Exploring env steps at the start with uniform random actions (ref ``--start_timesteps 1e4``; the configs
    set it to ``train.learning_starts``). Counted by the loop's clock (``set_env_steps``)."""
    observation_key: str = "observation"
    """Dict key of the state features besides the position."""
    achieved_key: str = "achieved_goal"
    """Dict key of the achieved goal (the position); a subgoal's goal is this part of the state."""
    desired_key: str = "desired_goal"
    """Dict key of the goal."""

    resumable: ClassVar[frozenset[str]] = frozenset({
        "tau", "target_update_every", "alpha", "awr_lambda", "epsilon", "subgoal_samples", "candidates_per_sample",
        "value_clip", "distance_rewards", "random_steps"})
    optimizer_settings: ClassVar[Mapping[str, tuple[tuple[str, str], ...]]] = {
        "actor_lr": (("actor_optimizer", "lr"),), "critic_lr": (("critic_optimizer", "lr"),),
        "subgoal_lr": (("subgoal_optimizer", "lr"),)}

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.encoder.kind not in ("auto", "flat"):
            raise ConfigError(f"agent.encoder.kind: RIS's subgoals are states, it takes vector observations flattened "
                              f"(kind: auto), got {self.encoder.kind!r}")
        if self.encoder_hidden:
            raise ConfigError("agent.encoder_hidden: RIS's subgoals are states, so a learned encoder would move the "
                              "space they live in; RIS takes none (auxiliary losses attach to its actor's torso)")
        self.check_positive("actor_lr", "critic_lr", "subgoal_lr", "awr_lambda", "value_clip")
        if not (0.0 <= self.alpha < math.inf) or not (0.0 <= self.epsilon < math.inf):
            raise ConfigError(f"agent.alpha and agent.epsilon must be finite numbers >= 0, got {self.alpha}, "
                              f"{self.epsilon}")
        self.check_unit_interval("tau", open_low=True)
        self.check_at_least(1, "target_update_every", "subgoal_samples", "candidates_per_sample")
        self.check_at_least(0, "random_steps")
        self.check_widths("actor_hidden", "critic_hidden", "subgoal_hidden")
        for low, high in (("log_std_min", "log_std_max"), ("log_scale_min", "log_scale_max")):
            if not getattr(self, low) < getattr(self, high):
                raise ConfigError(f"agent.{low} ({getattr(self, low)}) must be < agent.{high} ({getattr(self, high)})")

    def check_run(self, run) -> None:
        """``distance_rewards`` reads one-step transitions of the sparse 0/-1 goal reward (module docstring):
        a one-line ConfigError for ``train.replay.n_step > 1`` or an env whose ``reward_type`` is not sparse."""
        if not self.distance_rewards:
            return
        n_step = run.train.replay.n_step
        if n_step != 1:
            raise ConfigError(f"train.replay.n_step is {n_step}, but RIS's distance rewards (agent.distance_rewards) "
                              "turn each transition's reward into -1 and end it where the sparse reward is 0, which "
                              f"holds for one-step transitions only (an {n_step}-step reward sum would become -1); set "
                              "train.replay.n_step: 1")
        reward_type = env_reward_type(run.env)
        if reward_type not in (None, "sparse"):
            raise ConfigError(f"RIS's distance rewards (agent.distance_rewards) read success from the sparse 0/-1 "
                              f"goal reward (r = 0), but the env's reward_type is {reward_type!r} (its rewards would "
                              "never read as success); set env.kwargs.reward_type: sparse, or agent.distance_rewards: "
                              "false to train on the env's rewards as they are")


def env_reward_type(env_cfg) -> str | None:
    """The ``reward_type`` an env will be made with (``env.kwargs``, else the registered kwargs, else the entry
    point's default), or None when the env takes no such argument or is not registered."""
    if "reward_type" in env_cfg.kwargs:
        return env_cfg.kwargs["reward_type"]
    if env_cfg.id is None:
        return None
    if env_cfg.id.startswith("rlkit/"):
        import rlkit.envs  # noqa: F401  (registers rlkit's ids; the run imports it anyway)
    try:
        spec = gym.spec(env_cfg.id)
    except gym.error.Error:
        return None  # the run's env check names the unknown id
    if "reward_type" in spec.kwargs:
        return spec.kwargs["reward_type"]
    if not isinstance(spec.entry_point, str):
        return None if not callable(spec.entry_point) else _default_reward_type(spec.entry_point)
    try:
        creator = gym.envs.registration.load_env_creator(spec.entry_point)
    except Exception:  # noqa: BLE001 (an entry point that cannot load fails with its own message when made)
        return None
    return _default_reward_type(creator)


def _default_reward_type(creator) -> str | None:
    try:
        parameter = inspect.signature(creator).parameters.get("reward_type")
    except (TypeError, ValueError):
        return None
    return None if parameter is None or parameter.default is inspect.Parameter.empty else parameter.default


# --------------------------------------------------------------------------------------
# Losses as pure functions (the tests call them directly)
# --------------------------------------------------------------------------------------


def subgoal_cost(v_to_subgoal: torch.Tensor, v_from_subgoal: torch.Tensor, clip: float = 100.0) -> torch.Tensor:
    """C(s_g|s, g) = max(|V(s, s_g)|, |V(s_g, g)|), values clamped to [-clip, 0] first (paper eq. 6)."""
    return torch.maximum(v_to_subgoal.clamp(-clip, 0.0).abs(), v_from_subgoal.clamp(-clip, 0.0).abs())


def awr_weights(cost: torch.Tensor, baseline_cost: torch.Tensor, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Advantages A = -(cost - baseline_cost) and weights softmax(A / lambda) over *all* entries (the whole
    batch of candidates, as the reference's ``softmax(adv / Lambda, dim=0)``). ``cost`` ``[B, K]``,
    ``baseline_cost`` ``[B]`` -> (weights ``[B, K]`` summing to 1, advantages ``[B, K]``)."""
    adv = -(cost - baseline_cost.unsqueeze(-1))
    return F.softmax((adv / lam).flatten(), dim=0).view_as(adv), adv


def gaussian_log_prob(x: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """log N(x; mean, exp(log_std)^2) summed over the last dimension (broadcasting)."""
    return (-0.5 * ((x - mean) * torch.exp(-log_std)).square() - log_std - _HALF_LOG_2PI).sum(dim=-1)


def laplace_log_prob(x: torch.Tensor, loc: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """log Laplace(x; loc, exp(log_scale)) summed over the last dimension (broadcasting)."""
    return (-(x - loc).abs() * torch.exp(-log_scale) - log_scale - math.log(2.0)).sum(dim=-1)


def mixture_kl(log_prob: torch.Tensor, prior_log_probs: torch.Tensor, epsilon: float) -> torch.Tensor:
    """One-sample KL estimate log pi(u) - log(1/n sum_k pibar_k(u) + epsilon): ``log_prob`` ``[B]``,
    ``prior_log_probs`` ``[B, n]`` (log pibar_k(u) of the same sample u) -> ``[B]``. Computed in log space
    (``logaddexp`` of the mixture's log-density and log epsilon): the reference's value without underflow."""
    n = prior_log_probs.shape[-1]
    mixture = torch.logsumexp(prior_log_probs, dim=-1) - math.log(n)
    if epsilon > 0:
        mixture = torch.logaddexp(mixture, torch.tensor(math.log(epsilon), dtype=mixture.dtype, device=mixture.device))
    return log_prob - mixture


# --------------------------------------------------------------------------------------
# The batch with candidate subgoals, and the sample-time hook that makes it
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SubgoalTransitions(Transitions):
    """``Transitions`` plus RIS's candidate subgoals.

    Attributes:
        subgoal_candidates: ``[B, K, state_dim]`` float32 on the buffer's device: K states per sample drawn
            uniformly (with replacement) from every stored row of every sub-env stream, as state vectors
            [achieved_goal, observation] (ref ``HERReplayBuffer.random_state_batch``: uniform over stored
            observations).
    """

    subgoal_candidates: torch.Tensor


def state_vector(obs: dict[str, torch.Tensor], achieved_key: str, observation_key: str) -> torch.Tensor:
    """s = [achieved_goal, observation] ``[..., goal_dim + obs_dim]`` float32 (module docstring)."""
    return torch.cat([obs[achieved_key].float(), obs[observation_key].float()], dim=-1)


class SubgoalCandidateSampler:
    """``sample_hook(batch, ctx) -> SubgoalTransitions``: draws ``per_sample`` stored rows per sample with
    ``ctx.generator`` (the buffer's: seeded, saved with the buffer, so resumed runs draw the same) and reads
    their states with ``ctx.buffer.obs_at``. Rows ``[0, written)`` of every stream are exactly the rows
    written so far (before and after the ring wraps), final-observation rows included (real states too)."""

    def __init__(self, per_sample: int, achieved_key: str = "achieved_goal",
                 observation_key: str = "observation") -> None:
        self.per_sample, self.achieved_key, self.observation_key = int(per_sample), achieved_key, observation_key

    def __call__(self, batch: Transitions, ctx: SampleContext) -> SubgoalTransitions:
        buffer, g = ctx.buffer, ctx.generator
        count = len(ctx.rows) * self.per_sample
        written = len(buffer) // buffer.num_envs
        rows = torch.randint(0, written, (count,), generator=g)                   # [B*K]
        envs = torch.randint(0, buffer.num_envs, (count,), generator=g)           # [B*K]
        states = state_vector(buffer.obs_at(rows, envs), self.achieved_key, self.observation_key)
        fields = {f.name: getattr(batch, f.name) for f in dataclasses.fields(Transitions)}
        return SubgoalTransitions(**fields, subgoal_candidates=states.view(len(ctx.rows), self.per_sample, -1))


# --------------------------------------------------------------------------------------
# Networks: flat (state, goal) inputs, any leading batch shape
# --------------------------------------------------------------------------------------


class GoalActor(nn.Module):
    """(s ``[..., S]``, g ``[..., G]``) -> mean ``[..., A]``, clamped log std ``[..., A]`` of u (a = tanh u)."""

    def __init__(self, state_dim: int, goal_dim: int, act_dim: int, hidden: list[int],
                 log_std_range: tuple[float, float]) -> None:
        super().__init__()
        self.torso = mlp(state_dim + goal_dim, hidden, None, activation=functools.partial(nn.ReLU, inplace=True))
        self.head = nn.Linear(hidden[-1], 2 * act_dim)
        self.log_std_range = log_std_range

    def forward(self, state: torch.Tensor, goal: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = self.head(self.torso(torch.cat([state, goal], dim=-1))).chunk(2, dim=-1)
        return mean, log_std.clamp(*self.log_std_range)


class SubgoalPolicy(nn.Module):
    """pi_H: (s ``[B, S]``, g ``[B, G]``) -> Laplace location ``[B, S]`` and clamped log scale ``[B, S]``."""

    def __init__(self, state_dim: int, goal_dim: int, hidden: list[int], log_scale_range: tuple[float, float]) -> None:
        super().__init__()
        self.torso = mlp(state_dim + goal_dim, hidden, None, activation=functools.partial(nn.ReLU, inplace=True))
        self.head = nn.Linear(hidden[-1], 2 * state_dim)
        self.log_scale_range = log_scale_range

    def forward(self, state: torch.Tensor, goal: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        loc, log_scale = self.head(self.torso(torch.cat([state, goal], dim=-1))).chunk(2, dim=-1)
        return loc, log_scale.clamp(*self.log_scale_range)


class TwinGoalCritic(nn.Module):
    """Q_1, Q_2 (s ``[N, S]``, normalised a ``[N, A]``, g ``[N, G]``) -> ``[2, N]``, both in one batched matmul
    per layer (:class:`~rlkit.contract.networks.EnsembleLinear`)."""

    members = 2

    def __init__(self, state_dim: int, goal_dim: int, act_dim: int, hidden: list[int]) -> None:
        super().__init__()
        dims = [state_dim + act_dim + goal_dim, *hidden, 1]
        self.layers = nn.ModuleList(EnsembleLinear(self.members, i, o) for i, o in zip(dims[:-1], dims[1:]))

    def forward(self, state: torch.Tensor, action: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        x = torch.cat([state, action, goal], dim=-1)                  # [N, S + A + G]
        x = x.unsqueeze(0).expand(self.members, *x.shape)             # [2, N, S + A + G]
        for layer in self.layers[:-1]:
            x = F.relu(layer(x), inplace=True)
        return self.layers[-1](x).squeeze(-1)                        # [2, N]


# --------------------------------------------------------------------------------------
# Agent
# --------------------------------------------------------------------------------------


class RIS(Agent):
    """RIS agent: ``act`` samples the squashed Gaussian pi(.|s, g) (or takes tanh(mu)); ``update`` is one step
    of critic, high-level policy and policy on a :class:`SubgoalTransitions` batch, then the Polyak targets."""

    capabilities = Capabilities(sample_hook=True, env_step_clock=True, discrete_actions=False)

    def __init__(self, cfg: RISConfig, observation_space: gym.Space, action_space: gym.Space,
                 device: torch.device | str = "cpu", seed: int = 0) -> None:
        keys = (cfg.observation_key, cfg.achieved_key, cfg.desired_key)
        if not isinstance(observation_space, gym.spaces.Dict) or not set(keys) <= set(observation_space.spaces):
            raise ConfigError(f"RIS needs Dict observations with keys {list(keys)} (a goal env), the env has "
                              f"{observation_space}")
        if any(len(observation_space[k].shape) != 1 for k in keys):
            raise ConfigError(f"RIS needs flat (1-D) {list(keys)}, got shapes "
                              f"{[observation_space[k].shape for k in keys]}")
        if observation_space[cfg.achieved_key].shape != observation_space[cfg.desired_key].shape:
            raise ConfigError(f"RIS: '{cfg.achieved_key}' and '{cfg.desired_key}' must have the same shape")
        check_bounded_box_actions("RIS", action_space)
        super().__init__(cfg, observation_space, action_space, device)
        self.goal_dim = goal_dim = int(observation_space[cfg.achieved_key].shape[0])
        self.state_dim = state_dim = goal_dim + int(observation_space[cfg.observation_key].shape[0])
        self.actions = BoxActions(action_space, self.device)
        self.act_dim = act_dim = self.actions.dim

        std_range, scale_range = (cfg.log_std_min, cfg.log_std_max), (cfg.log_scale_min, cfg.log_scale_max)
        self.actor = GoalActor(state_dim, goal_dim, act_dim, cfg.actor_hidden, std_range).to(self.device)
        self.actor_target = GoalActor(state_dim, goal_dim, act_dim, cfg.actor_hidden, std_range).to(self.device)
        self.actor_target.load_state_dict(self.actor.state_dict())
        self.actor_target.requires_grad_(False)
        self.critic = TwinGoalCritic(state_dim, goal_dim, act_dim, cfg.critic_hidden).to(self.device)
        self.critic_target = TwinGoalCritic(state_dim, goal_dim, act_dim, cfg.critic_hidden).to(self.device)
        self.critic_target.load_state_dict(self.critic.state_dict())
        self.critic_target.requires_grad_(False)
        self.subgoal_net = SubgoalPolicy(state_dim, goal_dim, cfg.subgoal_hidden, scale_range).to(self.device)
        self.online_params = list(self.critic.parameters()) + list(self.actor.parameters())
        self.target_params = list(self.critic_target.parameters()) + list(self.actor_target.parameters())

        fused = self.device.type in ("cpu", "cuda")
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=cfg.actor_lr, fused=fused)
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=cfg.critic_lr, fused=fused)
        self.subgoal_optimizer = torch.optim.Adam(self.subgoal_net.parameters(), lr=cfg.subgoal_lr, fused=fused)

        self.rng = np.random.default_rng(seed)                     # exploration noise, random actions
        self.generator = torch.Generator(device=self.device)       # samples in update()
        self.generator.manual_seed(seed + 1)
        self.rewards_checked = False                               # the first update checks the reward kind
        # no separate observation encoder (subgoals are states): auxiliary losses shape the actor's torso on [s, g]
        self.declare(parts={"actor": acting(self.actor), "actor_target": target_of("actor", self.actor_target),
                            "critic": trained(self.critic), "critic_target": target_of("critic", self.critic_target),
                            "subgoal_net": trained(self.subgoal_net)},
                     optimizers={"actor_optimizer": trains(self.actor_optimizer, "actor"),
                                 "critic_optimizer": trains(self.critic_optimizer, "critic"),
                                 "subgoal_optimizer": trains(self.subgoal_optimizer, "subgoal_net")},
                     generators={"rng": self.rng, "generator": self.generator},
                     encoder="actor.torso", encoder_inputs=lambda obs: torch.cat(self.split(obs), dim=-1))

    def make_sample_hook(self) -> SubgoalCandidateSampler:
        """The replay's sample-time hook that adds the candidate subgoals (``rlkit.training.build.build_replay``'s
        ``agent_hook``, run after HER)."""
        return SubgoalCandidateSampler(self.cfg.candidates_per_sample, self.cfg.achieved_key, self.cfg.observation_key)

    def split(self, obs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Dict observations -> (state ``[B, S]``, goal ``[B, G]``), float32."""
        return (state_vector(obs, self.cfg.achieved_key, self.cfg.observation_key),
                obs[self.cfg.desired_key].float())

    # ------------------------------------------------------------------ acting
    @torch.no_grad()
    def act(self, step: StepRecord, explore: bool, epsilon: float | None = None) -> np.ndarray:
        """Env-scale actions ``[n, *action_shape]``: tanh(u), u ~ pi(.|s, g) if ``explore`` else tanh(mu);
        uniform during the first ``random_steps`` env steps (exploring only); with probability ``epsilon``
        a uniform one."""
        if explore and self.env_steps < self.cfg.random_steps:
            return self.actions.uniform(step.size, self.rng)
        state, goal = self.split(step.obs)
        mean, log_std = self.actor(state, goal)
        if explore:
            noise = torch.from_numpy(self.rng.standard_normal(mean.shape, dtype=np.float32)).to(self.device)
            mean = mean + log_std.exp() * noise
        actions = self.actions.to_env(torch.tanh(mean))
        return epsilon_mix(actions, epsilon, self.action_space, self.rng)

    # ------------------------------------------------------------------ learning
    def value(self, state: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        """V(s, g) = min_i Q_i(s, tanh(mu(s, g)), g) ``[N]`` (ref ``RIS.value``: the mean action)."""
        mean, _ = self.actor(state, goal)
        return self.critic(state, torch.tanh(mean), goal).min(dim=0).values

    def cost(self, state: torch.Tensor, subgoal: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        """C(s_g|s, g) ``[N]`` for flat ``[N, ...]`` inputs: V(s, s_g) and V(s_g, g) in one forward pass."""
        n = len(state)
        values = self.value(torch.cat([state, subgoal]), torch.cat([subgoal[:, :self.goal_dim], goal]))  # [2N]
        return subgoal_cost(values[:n], values[n:], self.cfg.value_clip)

    def update(self, batch: SubgoalTransitions) -> dict[str, torch.Tensor]:
        if not isinstance(batch, SubgoalTransitions):
            raise TypeError("RIS.update needs SubgoalTransitions (batches with candidate subgoals): build the replay "
                            "with agent_hook=agent.make_sample_hook() (rlkit.training.build.build_replay; train_online does)")
        cfg, g = self.cfg, self.generator
        state, goal = self.split(batch.obs)                                       # [B, S], [B, G]
        next_state, _ = self.split(batch.next_obs)                                # [B, S]
        actions = self.actions.normalize(batch.actions)                          # [B, A] in [-1, 1]
        rewards, discounts = batch.rewards, batch.discounts
        if cfg.distance_rewards and not self.rewards_checked:  # once: one host sync (check_run's backstop)
            if not bool(((rewards == 0) | (rewards == -1)).all()):
                raise ConfigError("RIS's distance rewards (agent.distance_rewards) need the sparse 0/-1 goal reward "
                                  "and one-step transitions, but a batch holds rewards other than 0 and -1 (a dense "
                                  "reward, or an n-step sum); set env.kwargs.reward_type: sparse and "
                                  "train.replay.n_step: 1, or agent.distance_rewards: false")
            self.rewards_checked = True
        if cfg.distance_rewards:  # -1 per step, terminal where the sparse reward says the goal was reached
            discounts = torch.where(rewards > -0.5, 0.0, discounts)
            rewards = torch.full_like(rewards, -1.0)
        candidates = batch.subgoal_candidates.float()                             # [B, K, S]
        B, K = candidates.shape[:2]

        # critic: y = r' + d' * min_i Qbar_i(s', a', g),  a' ~ pi(.|s', g)   (no entropy term)
        with torch.no_grad():
            next_mean, next_log_std = self.actor(next_state, goal)
            next_noise = torch.randn(next_mean.shape, generator=g, device=self.device)
            next_actions = torch.tanh(next_mean + next_log_std.exp() * next_noise)
            target = rewards + discounts * self.critic_target(next_state, next_actions, goal).min(dim=0).values
        q = self.critic(state, actions, goal)                                     # [2, B]
        critic_loss = 0.5 * (batch.weights * (q - target).square()).mean(dim=1).sum()
        self.optimize("critic_optimizer", critic_loss, batch)

        # high-level policy: AWR toward replayed candidates, w = softmax(-(C(s_g^c) - C(loc)) / lambda)
        loc, log_scale = self.subgoal_net(state, goal)                            # [B, S] each
        with torch.no_grad():
            repeated_state, repeated_goal = state.repeat(K + 1, 1), goal.repeat(K + 1, 1)
            # [(1+K)B, S]: pi_H's location, then the candidates k-major
            subgoals = torch.cat([loc, candidates.transpose(0, 1).reshape(K * B, -1)])
            costs = self.cost(repeated_state, subgoals, repeated_goal).view(K + 1, B)
            weights, adv = awr_weights(costs[1:].T, costs[0], cfg.awr_lambda)       # [B, K] each
        log_prob_h = laplace_log_prob(candidates, loc.unsqueeze(1), log_scale.unsqueeze(1))   # [B, K]
        subgoal_loss = -(weights * log_prob_h).mean()
        self.optimize("subgoal_optimizer", subgoal_loss, batch)

        # policy: alpha * KL(pi(.|s,g) || 1/n sum_k pibar(.|s, s_g^k)) - min_i Q_i(s, a, g), s_g^k ~ pi_H (fixed)
        n = cfg.subgoal_samples
        with torch.no_grad():
            loc, log_scale = self.subgoal_net(state, goal)                        # pi_H after its step (as ref)
            u = torch.rand((n, *loc.shape), generator=g, device=self.device) * 2.0 - 1.0
            u = u.clamp(min=-1.0 + torch.finfo(u.dtype).eps)                       # Laplace by inverse CDF: [n, B, S]
            imagined = loc - log_scale.exp() * u.sign() * torch.log1p(-u.abs())
            prior_mean, prior_log_std = self.actor_target(state.expand(n, -1, -1), imagined[..., :self.goal_dim])
        mean, log_std = self.actor(state, goal)                                   # [B, A] each
        pre_tanh = mean + log_std.exp() * torch.randn(mean.shape, generator=g, device=self.device)
        log_prob = gaussian_log_prob(pre_tanh, mean, log_std)                     # [B]
        prior_log_probs = gaussian_log_prob(pre_tanh.unsqueeze(0), prior_mean, prior_log_std).T  # [B, n]
        kl = mixture_kl(log_prob, prior_log_probs, cfg.epsilon)                   # [B]
        with self.without_weight_grads("critic"):                                # no weight gradients for Q
            q_pi = self.critic(state, torch.tanh(pre_tanh), goal).min(dim=0).values  # [B]
        actor_loss = (cfg.alpha * kl - q_pi).mean()
        self.optimize("actor_optimizer", actor_loss, batch)

        # targets: Qbar <- tau Q + (1 - tau) Qbar, pibar <- tau pi + (1 - tau) pibar
        self.updates += 1
        if self.updates % cfg.target_update_every == 0:
            with torch.no_grad():
                torch._foreach_lerp_(self.target_params, self.online_params, cfg.tau)

        return {  # 0-dim tensors, read at log time
            "critic_loss": critic_loss.detach(), "actor_loss": actor_loss.detach(),
            "subgoal_loss": subgoal_loss.detach(), "kl": kl.detach().mean(), "q_mean": q.detach().mean(),
            "adv_mean": adv.mean(), "adv_positive": (adv >= 0).float().mean(),
            "subgoal_cost": costs[0].mean(), **self.aux_metrics,
        }

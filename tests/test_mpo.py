"""MPO: the E-step dual, the decoupled M-step constraints, shapes, checkpoints and a smoke run."""

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from rlkit.contract.agent import metric_values
from rlkit.agents import AGENTS, MPO, MPOConfig
from rlkit.agents.mpo import gaussian_kl, temperature_dual
from rlkit.runfiles.checkpoint import load_checkpoint
from rlkit.config import ConfigError, build_run_config
from rlkit.training.loops import train_online
from rlkit.experience.replay import Transitions
from rlkit.runfiles.runs import LATEST

OBS_SPACE = gym.spaces.Box(-np.inf, np.inf, shape=(3,), dtype=np.float32)
ACT_SPACE = gym.spaces.Box(np.array([-2.0, 0.0], dtype=np.float32), np.array([2.0, 10.0], dtype=np.float32))


def _agent(**overrides) -> MPO:
    cfg = MPOConfig(**{"policy_hidden": [32, 32], "critic_hidden": [32, 32], **overrides})
    return MPO(cfg, OBS_SPACE, ACT_SPACE, seed=0)


def _batch(size: int = 64, seed: int = 0) -> Transitions:
    g = torch.Generator().manual_seed(seed)
    low, high = torch.as_tensor(ACT_SPACE.low), torch.as_tensor(ACT_SPACE.high)
    return Transitions(
        obs=torch.randn(size, 3, generator=g), actions=low + (high - low) * torch.rand(size, 2, generator=g),
        rewards=torch.randn(size, generator=g), next_obs=torch.randn(size, 3, generator=g),
        discounts=torch.full((size,), 0.95), weights=torch.ones(size), indices=torch.arange(size))


class FixedQ(nn.Module):
    """A stand-in target critic: Q(s, a) = scale * a_0 (normalised action), a large advantage signal."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.scale * action[..., 0]  # [B] or [N, B]


def _policy_kls(agent: MPO, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-dimension (mean-KL, cov-KL) of the online policy from the target policy, averaged over states."""
    with torch.no_grad():
        mean, std = agent.policy(obs)
        t_mean, t_std = agent.target_policy(obs)
    return gaussian_kl(t_mean, t_std, mean, t_std).mean(0), gaussian_kl(t_mean, t_std, t_mean, std).mean(0)


def _minimise_dual(q_values: torch.Tensor, epsilon: float) -> torch.Tensor:
    log_temperature = torch.zeros(1, requires_grad=True)  # log-parameterised here: fast, exact convergence
    optimizer = torch.optim.Adam([log_temperature], lr=0.05)
    for _ in range(800):
        _, loss = temperature_dual(q_values, epsilon, log_temperature.exp())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return log_temperature.detach().exp()


def test_temperature_dual_optimum_gives_kl_epsilon():
    """At the minimum of g(eta), KL(q_b || uniform over samples) averages to eps (dg/deta = eps - mean KL)."""
    q_values = 10.0 * torch.randn(20, 8, generator=torch.Generator().manual_seed(0))  # [N, B]
    for epsilon in (0.1, 0.5):
        weights, _ = temperature_dual(q_values, epsilon, _minimise_dual(q_values, epsilon))
        assert torch.allclose(weights.sum(0), torch.ones(8))
        kl = (weights * torch.log(weights * 20)).sum(0)                      # [B]
        assert kl.mean().item() == pytest.approx(epsilon, abs=1e-3)
    # a looser bound allows a greedier q: a lower temperature
    assert _minimise_dual(q_values, 0.5) < _minimise_dual(q_values, 0.1)


@pytest.mark.parametrize("init_temperature", [3.0, 0.3])
def test_agent_temperature_converges_to_epsilon(init_temperature):
    """The agent's own dual step, on a fixed critic, from above and below: KL(q || uniform) settles at eps."""
    agent = _agent(dual_lr=0.05, target_update_every=10**6, init_temperature=init_temperature)
    agent.target_critic = FixedQ(1.0)
    batch = _batch()
    kls = [float(agent.update(batch)["kl_q"]) for _ in range(250)]
    assert np.mean(kls[-50:]) == pytest.approx(agent.cfg.epsilon, abs=0.005)


def test_decoupled_kl_constraints_hold_and_multipliers_adapt():
    """A huge advantage along action dim 0 would move the policy far from the target; the decoupled
    per-dimension constraints keep KL(pi_t || pi_mu) and KL(pi_t || pi_Sigma) near eps_mu and eps_Sigma.
    The multiplier of the violated constraint (mean, dim 0) grows; the slack one (mean, dim 1) shrinks."""
    eps_mean, eps_std = 2.5e-3, 1e-6
    agent = _agent(policy_lr=1e-3, dual_lr=0.05, target_update_every=10**6, epsilon_mean=eps_mean,
                   epsilon_stddev=eps_std)  # Acme's initial multipliers: alpha_mu ~ 10, alpha_Sigma ~ 1000
    agent.target_critic = FixedQ(1000.0)
    batch = _batch()
    alpha0 = torch.nn.functional.softplus(agent.alpha_mean_param.detach()).clone()
    peak = 0.0
    for step in range(400):
        metrics = agent.update(batch)
        if step % 50 == 0:
            peak = max(peak, _policy_kls(agent, batch.next_obs)[0][0].item())
    kl_mean, kl_std = _policy_kls(agent, batch.next_obs)                     # [A], [A]
    alpha = torch.nn.functional.softplus(agent.alpha_mean_param.detach())
    assert alpha[0] > 1.5 * alpha0[0] and alpha[1] < 0.1 * alpha0[1]
    assert 0.5 * eps_mean < kl_mean[0] < 2 * eps_mean < peak                 # pulled back towards its bound
    assert kl_mean[1] < eps_mean
    assert kl_std.max() < 5 * eps_std

    # without the trust region (multipliers pinned near 0) the same signal moves the policy much further
    free = _agent(policy_lr=1e-3, dual_lr=1e-12, target_update_every=10**6, init_alpha_mean=1e-6,
                  init_alpha_stddev=1e-6)
    free.target_critic = FixedQ(1000.0)
    for _ in range(400):
        free.update(batch)
    free_kl_mean, free_kl_std = _policy_kls(free, batch.next_obs)
    assert free_kl_mean[0] > 10 * kl_mean[0] and free_kl_std.max() > 100 * kl_std.max()


def test_multipliers_shrink_when_constraints_are_slack():
    agent = _agent(dual_lr=0.05, target_update_every=10**6)
    agent.target_critic = FixedQ(0.0)  # no advantage: the weighted ML keeps the policy where it is
    batch = _batch()
    before = agent.state_dict()["alpha_mean_param"].clone()
    for _ in range(50):
        agent.update(batch)
    assert (agent.alpha_mean_param.detach() < before).all()


@pytest.mark.parametrize("per_dim, shape", [(True, (2,)), (False, (1,))])
def test_per_dim_constraining_shapes(per_dim, shape):
    agent = _agent(per_dim_constraining=per_dim)
    assert agent.alpha_mean_param.shape == shape and agent.alpha_stddev_param.shape == shape
    assert agent.temperature_param.shape == (1,)
    metrics = agent.update(_batch())
    assert all(np.isfinite(float(v)) for v in metrics.values())
    assert agent.alpha_mean_param.grad is not None and agent.alpha_mean_param.grad.shape == shape


def test_critic_scores_sampled_actions_like_the_concatenated_input():
    """The critic shares W_s s across the N sampled actions; the result equals Linear(cat(s, a))."""
    from rlkit.agents.mpo import Critic

    torch.manual_seed(0)
    critic = Critic(5, 3, [16, 8], layer_norm=True)
    obs, actions = torch.randn(4, 5), torch.rand(6, 4, 3) * 3 - 1.5  # some actions outside [-1, 1]
    sampled_q = critic(obs, actions)
    assert sampled_q.shape == (6, 4)
    tiled = torch.cat([obs.expand(6, 4, 5), actions.clamp(-1, 1)], dim=-1).reshape(24, 8)
    torch.testing.assert_close(sampled_q, critic.q(tiled).view(6, 4), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(critic(obs, actions[0]), sampled_q[0])


def test_act_shapes_bounds_and_determinism():
    agent = _agent()
    obs = np.random.default_rng(0).normal(size=(500, 3)).astype(np.float32) * 3
    explore = agent.predict(obs, deterministic=False)
    assert explore.shape == (500, 2) and explore.dtype == np.float32
    assert (explore >= ACT_SPACE.low).all() and (explore <= ACT_SPACE.high).all()
    assert len(np.unique(explore[:, 0])) > 400        # sampled, not the mean
    greedy = agent.predict(obs, deterministic=True)
    np.testing.assert_array_equal(greedy, agent.predict(obs, deterministic=True))
    # the initial policy is N(0, 0.7^2) in [-1, 1] units: the mean sits near the Box centre
    np.testing.assert_allclose(greedy.mean(0), (ACT_SPACE.low + ACT_SPACE.high) / 2, atol=0.1)


def test_config_and_space_errors():
    with pytest.raises(ConfigError, match="Box"):
        MPO(MPOConfig(), OBS_SPACE, gym.spaces.Discrete(3))
    with pytest.raises(ConfigError, match="finite"):
        MPO(MPOConfig(), OBS_SPACE, gym.spaces.Box(-np.inf, np.inf, shape=(2,)))
    for bad in ({"epsilon": 0.0}, {"num_samples": 1}, {"policy_hidden": []}, {"gamma": 1.5},
                {"target_update_every": 0}, {"max_grad_norm": -1.0}):
        with pytest.raises(ConfigError):
            MPOConfig(**bad)
    assert AGENTS["mpo"] == (MPOConfig, MPO)


def test_state_dict_round_trip_weights_only(tmp_path):
    agent = _agent(target_update_every=3)
    for seed in range(5):
        agent.update(_batch(seed=seed))
    agent.predict(np.zeros((4, 3), np.float32), deterministic=False)
    path = tmp_path / "agent.pt"
    torch.save(agent.state_dict(), path)
    restored = _agent(target_update_every=3)
    restored.load_state_dict(torch.load(path, weights_only=True))
    obs = np.random.default_rng(1).normal(size=(16, 3)).astype(np.float32)
    np.testing.assert_array_equal(agent.predict(obs, deterministic=True), restored.predict(obs, deterministic=True))
    np.testing.assert_array_equal(agent.predict(obs, deterministic=False), restored.predict(obs, deterministic=False))  # RNG too
    assert restored.updates == agent.updates == 5 and restored.env_steps == agent.env_steps
    m1 = agent.update(_batch(seed=9))
    m2 = restored.update(_batch(seed=9))  # optimizers, dual variables and sampling RNG continue exactly
    assert metric_values(m1) == metric_values(m2)


def test_mpo_smoke_run_on_pendulum(tmp_path):
    data = {
        "seed": 1,
        "env": {"id": "Pendulum-v1", "num_envs": 2},
        "agent": {"name": "mpo", "policy_hidden": [32, 32], "critic_hidden": [32, 32], "num_samples": 8,
                  "target_update_every": 20},
        "train": {"total_steps": 400, "learning_starts": 200, "batch_size": 32, "train_every": 2,
                  "replay": {"capacity": 2000, "n_step": 5}, "eval_every": 0, "eval_episodes": 2,
                  "checkpoint_every": 0},
        "log": {"progress": False, "tensorboard": False, "log_every": 100, "plot": False},
    }
    summary = train_online(build_run_config(data), tmp_path)
    assert summary["steps"] == 400 and np.isfinite(summary["final_eval"]["return_mean"])
    state = load_checkpoint(tmp_path / LATEST)  # weights_only inside
    assert state["agent"]["updates"] >= 100 and state["agent"]["env_steps"] == 400
    train = [json.loads(line) for line in Path(tmp_path, "metrics.jsonl").read_text().splitlines()
             if '"train"' in line]
    assert any("kl_q" in r for r in train)
    assert all(np.isfinite(r.get("critic_loss", 0.0)) for r in train)


def test_eval_epsilon_mixes_uniform_actions():
    """``act(epsilon=)`` is the same protocol for every agent: MPO replaces its mean action by a uniform
    one with probability epsilon (inside the Box bounds)."""
    agent = _agent()
    obs = np.zeros((2000, *OBS_SPACE.shape), dtype=np.float32)
    mean = agent.predict(obs, deterministic=True)
    mixed = agent.predict(obs, deterministic=True, epsilon=0.25)
    changed = np.any(mixed != mean, axis=1).mean()
    assert 0.2 < changed < 0.3
    assert np.all(mixed >= agent.action_space.low) and np.all(mixed <= agent.action_space.high)
    np.testing.assert_array_equal(agent.predict(obs, deterministic=True, epsilon=0.0), mean)


class BoundedQ(nn.Module):
    """The exact Q of a one-step bandit with reward = action in [-1, 1]: flat outside the bounds."""

    def __init__(self) -> None:
        super().__init__()
        self.zero = nn.Parameter(torch.zeros(()))  # something for the (unused) critic optimizer to hold

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return action[..., 0].clamp(-1.0, 1.0) + 0.0 * self.zero


def _bandit_mean(action_penalization: bool, epsilon_penalty: float = 1e-3, updates: int = 800) -> float:
    """Policy mean after ``updates`` MPO steps on the bandit, std held at 0.7 by its KL bound."""
    space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    agent = MPO(MPOConfig(policy_hidden=[16], critic_hidden=[8], init_std=0.7, init_temperature=0.1,
                          epsilon_mean=0.05, target_update_every=25, policy_lr=1e-3,
                          action_penalization=action_penalization, epsilon_penalty=epsilon_penalty),
                space, space, seed=0)
    agent.critic, agent.target_critic = BoundedQ(), BoundedQ()
    agent.critic_optimizer = torch.optim.SGD(agent.critic.parameters(), lr=0.0)
    obs = torch.zeros(16, 1)
    batch = Transitions(obs=obs, actions=torch.zeros(16, 1), rewards=torch.zeros(16), next_obs=obs,
                        discounts=torch.zeros(16), weights=torch.ones(16), indices=torch.arange(16))
    for _ in range(updates):
        agent.update(batch)
    with torch.no_grad():
        mean, std = agent.policy(obs[:1])
    assert std.item() == pytest.approx(0.7, abs=0.02)
    return mean.item()


def test_action_penalty_keeps_the_bandit_mean_in_bounds():
    """Q = clip(a) is flat beyond the bound: without the out-of-bounds penalty the mean walks past 1
    (where every sample clips to the same action and exploration dies). A penalty as strong as the Q
    objective (eps_c = eps = 0.1) keeps it inside: run longer, it settles at the bound (1.02 after 6,000
    updates with a learned critic, scripts/mpo_action_penalty_bandit.py). The default, Acme's eps_c = 1e-3,
    only slows the drift (2.30 against 2.58 at 6,000 updates there): MPOConfig.epsilon_penalty says why
    the default stays Acme's (HalfCheetah)."""
    unpenalised = _bandit_mean(action_penalization=False)
    assert unpenalised > 1.4
    assert _bandit_mean(action_penalization=True, epsilon_penalty=0.1) < 1.0
    assert _bandit_mean(action_penalization=True) < unpenalised - 0.1  # Acme's default: slower, not held


def test_action_penalty_weights_are_a_second_e_step():
    """With every sample in bounds the cost is constant, so the penalty's weights are uniform; out of
    bounds they favour the samples nearest the box (E-step of c = -||a - clip(a)||)."""
    cost_in = torch.zeros(20, 4)
    weights, _ = temperature_dual(cost_in, 0.1, torch.tensor([1.0]))
    torch.testing.assert_close(weights, torch.full((20, 4), 1 / 20))
    actions = torch.linspace(0.0, 3.0, 20)[:, None, None].expand(20, 4, 1)  # [N, B, 1]
    cost = -torch.linalg.vector_norm(actions - actions.clamp(-1, 1), dim=-1)
    weights, _ = temperature_dual(cost, 0.1, torch.tensor([0.5]))
    assert torch.all(weights[:7] > weights[-1]) and torch.all(weights[1:] <= weights[:-1] + 1e-7)


def test_prioritized_replay_is_refused_for_mpo():
    """MPO returns no priorities: prioritized replay would silently sample uniformly, so the config refuses it."""
    data = {"env": {"id": "Pendulum-v1"}, "agent": {"name": "mpo"}, "train": {"replay": {"prioritized": True}}}
    with pytest.raises(ConfigError, match="prioritized.*mpo"):
        build_run_config(data, [])
    data["agent"] = {"name": "dqn"}
    data["env"] = {"id": "CartPole-v1"}
    assert build_run_config(data, []).train.replay.prioritized

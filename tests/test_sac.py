"""SAC: the squashed log-density, the twin critic, the soft target, the temperature, action bounds,
checkpoints, config checks, a Dict-observation run through train_online and short learning checks."""

import io
import json
import math
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rlkit.contract.agent import metric_values
from rlkit.agents import AGENTS, SAC, SACConfig
from rlkit.agents.sac import soft_td_target, squashed_gaussian_sample, tanh_log_det_jacobian
from rlkit.config import ConfigError, build_run_config, load_config
from rlkit.training.loops import train_online
from rlkit.experience.replay import Transitions

OBS_SPACE = gym.spaces.Box(-np.inf, np.inf, shape=(3,), dtype=np.float32)
ACT_SPACE = gym.spaces.Box(np.array([-2.0, 0.0], dtype=np.float32), np.array([2.0, 10.0], dtype=np.float32))


def _agent(obs_space=OBS_SPACE, act_space=ACT_SPACE, seed=0, **overrides) -> SAC:
    cfg = SACConfig(**{"actor_hidden": [32, 32], "critic_hidden": [32, 32], **overrides})
    return SAC(cfg, obs_space, act_space, seed=seed)


def _batch(size: int = 64, seed: int = 0) -> Transitions:
    g = torch.Generator().manual_seed(seed)
    low, high = torch.as_tensor(ACT_SPACE.low), torch.as_tensor(ACT_SPACE.high)
    return Transitions(
        obs=torch.randn(size, 3, generator=g), actions=low + (high - low) * torch.rand(size, 2, generator=g),
        rewards=torch.randn(size, generator=g), next_obs=torch.randn(size, 3, generator=g),
        discounts=torch.full((size,), 0.95), weights=torch.ones(size), indices=torch.arange(size))


# ------------------------------------------------------------------ the squashed Gaussian


def test_squashed_log_prob_is_the_change_of_variables():
    g = torch.Generator().manual_seed(0)
    mean = torch.randn(500, 3, generator=g, dtype=torch.float64)
    log_std = 0.5 * torch.randn(500, 3, generator=g, dtype=torch.float64)
    noise = torch.randn(500, 3, generator=g, dtype=torch.float64)
    action, log_prob = squashed_gaussian_sample(mean, log_std, noise)
    u = mean + log_std.exp() * noise
    assert torch.allclose(action, torch.tanh(u))
    # log pi(a) = log N(u) - log |da/du|, |da/du| by central finite differences of tanh (float64; h = 1e-3
    # keeps the rounding error small where tanh is flat, |u| up to ~11 here)
    h = 1e-3
    numeric_jacobian = (torch.tanh(u + h) - torch.tanh(u - h)) / (2 * h)
    expected = (torch.distributions.Normal(mean, log_std.exp()).log_prob(u) - numeric_jacobian.log()).sum(-1)
    assert torch.allclose(log_prob, expected, atol=1e-5)


def test_squashed_density_integrates_to_one_and_is_stable_far_out():
    # 1-D: integrate pi(a) over a in (-1, 1) with u = atanh(a), noise = (u - mean) / std
    mean, log_std = torch.tensor([[0.7]], dtype=torch.float64), torch.tensor([[-0.3]], dtype=torch.float64)
    a = torch.linspace(-1, 1, 400_001, dtype=torch.float64)[1:-1].unsqueeze(1)
    noise = (torch.atanh(a) - mean) / log_std.exp()
    _, log_prob = squashed_gaussian_sample(mean.expand_as(a), log_std.expand_as(a), noise)
    assert torch.trapezoid(log_prob.exp(), a.squeeze(1)).item() == pytest.approx(1.0, abs=1e-4)
    # the stable form at |u| where 1 - tanh(u)^2 underflows in float32: log(1 - tanh^2) ~ 2 log 2 - 2|u|
    u = torch.tensor([-30.0, -12.0, 12.0, 30.0])
    assert torch.isfinite(tanh_log_det_jacobian(u)).all()
    assert torch.allclose(tanh_log_det_jacobian(u), 2 * math.log(2) - 2 * u.abs(), atol=1e-4)
    u = torch.tensor([0.3, -1.7])
    assert torch.allclose(tanh_log_det_jacobian(u), torch.log(1 - torch.tanh(u) ** 2))


# ------------------------------------------------------------------ critic and target


def test_twin_critic_is_two_independent_q_functions():
    agent = _agent()
    batch = _batch(16)
    obs, actions = batch.obs, agent.actions.normalize(batch.actions)
    q = agent.critic(obs, actions)
    assert q.shape == (2, 16)
    # each member is a plain MLP on [obs, action] with its own weights
    x = torch.cat([obs, actions], dim=1)
    for member in range(2):
        h = x
        for i, layer in enumerate(agent.critic.layers):
            h = F.linear(h, layer.weight[member].T, layer.bias[member, 0])
            if i < len(agent.critic.layers) - 1:
                h = F.relu(h)
        assert torch.allclose(q[member], h.squeeze(1), atol=1e-5)
    assert not torch.allclose(q[0], q[1])  # independently initialised
    # a loss on Q_1 alone leaves Q_2's weights without gradient
    q[0].sum().backward()
    for layer in agent.critic.layers:
        assert layer.weight.grad[0].abs().sum() > 0 and layer.weight.grad[1].abs().sum() == 0
    # the targets start as copies and are not trained
    assert torch.equal(agent.target_critic(obs, actions), q.detach())
    assert not any(p.requires_grad for p in agent.target_critic.parameters())


def test_soft_target_takes_the_min_and_the_batch_discount():
    rewards = torch.tensor([1.0, 0.5, -1.0])
    discounts = torch.tensor([0.99, 0.0, 0.99 ** 3])  # terminal in the middle, a 3-step return last
    next_q = torch.tensor([[2.0, 5.0, -1.0], [3.0, 4.0, -2.0]])
    next_log_prob = torch.tensor([-1.0, 0.0, 2.0])
    y = soft_td_target(rewards, discounts, next_q, next_log_prob, torch.tensor(0.5))
    expected = torch.tensor([1.0 + 0.99 * (2.0 + 0.5), 0.5, -1.0 + 0.99 ** 3 * (-2.0 - 1.0)])
    assert torch.allclose(y, expected)


def test_update_moves_the_targets_by_tau_and_trains_only_its_modules():
    agent = _agent(tau=0.1)
    before = [p.detach().clone() for p in agent.target_critic.parameters()]
    metrics = agent.update(_batch())
    assert all(isinstance(v, torch.Tensor) and v.dim() == 0 and not v.requires_grad for v in metrics.values())
    assert set(metric_values(metrics)) == {"critic_loss", "actor_loss", "alpha", "entropy", "q_mean"}
    for old, target, online in zip(before, agent.target_critic.parameters(), agent.critic.parameters()):
        assert torch.allclose(target, 0.9 * old + 0.1 * online, atol=1e-6)
    assert all(p.requires_grad for p in agent.critic.parameters())  # unfrozen after the policy loss
    # the policy loss backpropagates through the critic but adds no gradient to its weights
    grads = {}
    for name in ("critic_optimizer", "actor_optimizer"):
        optimizer = getattr(agent, name)
        step = optimizer.step

        def snapshot(*args, _name=name, _step=step, **kwargs):
            grads[_name] = [p.grad.clone() for p in agent.critic.parameters()]
            return _step(*args, **kwargs)

        optimizer.step = snapshot
    agent.update(_batch(seed=1))
    assert all(torch.equal(a, b) for a, b in zip(grads["critic_optimizer"], grads["actor_optimizer"]))
    assert any(g.abs().sum() > 0 for g in grads["actor_optimizer"])
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in agent.policy.parameters())
    # target_update_every: no Polyak step in between
    agent = _agent(target_update_every=2)
    before = [p.detach().clone() for p in agent.target_critic.parameters()]
    agent.update(_batch())
    assert all(torch.equal(a, b) for a, b in zip(before, agent.target_critic.parameters()))
    agent.update(_batch())
    assert not all(torch.equal(a, b) for a, b in zip(before, agent.target_critic.parameters()))


# ------------------------------------------------------------------ temperature


@pytest.mark.parametrize("target_entropy, direction", [(5.0, 1), (-20.0, -1)])
def test_temperature_moves_toward_the_target_entropy(target_entropy, direction):
    # the initial policy's entropy is around 0 per dimension: above -20 (alpha shrinks), below 5 (alpha grows)
    agent = _agent(target_entropy=target_entropy, alpha_lr=1e-2)
    alphas = [agent.alpha]
    for i in range(20):
        agent.update(_batch(seed=i))
        alphas.append(agent.alpha)
    assert direction * (alphas[-1] - alphas[0]) > 0.1
    assert all(direction * (b - a) > 0 for a, b in zip(alphas, alphas[1:]))
    # a fixed temperature stays put
    agent = _agent(autotune_alpha=False, init_alpha=0.3)
    agent.update(_batch())
    assert agent.alpha == pytest.approx(0.3)
    assert _agent().target_entropy == -2.0  # -|A|


# ------------------------------------------------------------------ acting


def test_actions_stay_inside_the_box_bounds():
    agent = _agent(random_steps=50)
    obs = np.random.default_rng(0).standard_normal((200, 3)).astype(np.float32) * 100  # saturating inputs
    low, high = ACT_SPACE.low, ACT_SPACE.high
    agent.set_env_steps(49)
    random = agent.predict(obs[:50], deterministic=False)  # the random phase: uniform actions
    assert random.shape == (50, 2) and random.dtype == np.float32
    agent.set_env_steps(50)  # the loop's clock: the policy from here on
    for explore in (True, False):
        for epsilon in (None, 0.5):
            actions = agent.predict(obs, deterministic=not explore, epsilon=epsilon)
            assert actions.shape == (200, 2) and actions.dtype == np.float32
            assert (actions >= low).all() and (actions <= high).all()
    assert np.unique(random[:, 1]).size == 50 and random[:, 1].std() > 1.0  # spread over [0, 10]
    # the policy's exploring actions saturate here (|obs| ~ 100): they differ from uniform ones
    policy = agent.predict(obs[:50], deterministic=False)
    near_bound = np.minimum(policy - low, high - policy) < 0.05 * (high - low)  # 10% of uniform actions are
    assert near_bound.mean() > 0.5 and (np.minimum(random - low, high - random) < 0.05 * (high - low)).mean() < 0.3
    # the deterministic action is tanh(mean), rescaled
    mean, _ = agent.policy(torch.as_tensor(obs[:4]))
    expected = (low + high) / 2 + (high - low) / 2 * torch.tanh(mean).detach().numpy()
    np.testing.assert_allclose(agent.predict(obs[:4], deterministic=True), expected, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------ checkpoints


def test_state_dict_round_trip_continues_identically():
    agent = _agent(seed=3)
    for i in range(3):
        agent.update(_batch(seed=i))
    agent.set_env_steps(2)
    agent.predict(np.zeros((2, 3), np.float32), deterministic=False)
    buffer = io.BytesIO()
    torch.save(agent.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    clone = _agent(seed=99)
    clone.load_state_dict(state)
    assert clone.alpha == agent.alpha and clone.updates == 3 and clone.env_steps == 2
    obs = np.ones((4, 3), np.float32)
    np.testing.assert_array_equal(agent.predict(obs, deterministic=False), clone.predict(obs, deterministic=False))
    for i in range(3, 6):
        a, b = metric_values(agent.update(_batch(seed=i))), metric_values(clone.update(_batch(seed=i)))
        assert a == b
    for name in ("policy", "critic", "target_critic"):
        for p, q in zip(getattr(agent, name).parameters(), getattr(clone, name).parameters()):
            assert torch.equal(p, q)
    assert torch.equal(agent.log_alpha, clone.log_alpha)
    assert clone.alpha_optimizer.param_groups[0]["params"][0] is clone.log_alpha  # still the optimized tensor


# ------------------------------------------------------------------ config


@pytest.mark.parametrize("overrides, words", [
    ({"tau": 0.0}, "tau"), ({"tau": 1.5}, "tau"), ({"actor_lr": -1e-3}, "actor_lr"), ({"critic_lr": 0.0}, "critic_lr"),
    ({"alpha_lr": float("nan")}, "alpha_lr"), ({"init_alpha": 0.0}, "init_alpha"),
    ({"target_update_every": 0}, "target_update_every"), ({"random_steps": -1}, "random_steps"),
    ({"actor_hidden": []}, "actor_hidden"), ({"critic_hidden": [256, 0]}, "critic_hidden"),
    ({"log_std_min": 2.0, "log_std_max": -5.0}, "log_std_min"), ({"target_entropy": float("inf")}, "target_entropy"),
    ({"gamma": 0.0}, "gamma"),
])
def test_config_errors(overrides, words):
    with pytest.raises(ConfigError, match=words):
        SACConfig(**overrides)


def test_config_files_and_spaces():
    assert AGENTS["sac"] == (SACConfig, SAC)
    root = Path(__file__).resolve().parent.parent / "configs"
    pendulum = load_config(root / "sac_pendulum.yaml")
    assert isinstance(pendulum.agent, SACConfig) and pendulum.agent.actor_lr == 1e-3
    assert pendulum.agent.random_steps == pendulum.train.learning_starts == 100
    cheetah = load_config(root / "sac_halfcheetah.yaml")
    assert cheetah.agent.critic_lr == 3e-4 and cheetah.agent.random_steps == cheetah.train.learning_starts == 10_000
    with pytest.raises(ConfigError, match="log_std_mn"):
        load_config(root / "sac_pendulum.yaml", ["agent.log_std_mn=-5"])
    with pytest.raises(ConfigError, match="prioritized"):
        load_config(root / "sac_pendulum.yaml", ["train.replay.prioritized=true"])
    with pytest.raises(ConfigError, match="Box"):
        SAC(SACConfig(), OBS_SPACE, gym.spaces.Discrete(3))
    with pytest.raises(ConfigError, match="finite"):
        SAC(SACConfig(), OBS_SPACE, gym.spaces.Box(-np.inf, np.inf, (2,), np.float32))
    # resumable and optimizer keys are real config fields and optimizer attributes
    fields = set(SACConfig.__dataclass_fields__)
    assert SACConfig.resumable <= fields and set(SACConfig.optimizer_settings) <= fields
    agent = _agent()
    for targets in SACConfig.optimizer_settings.values():
        for optimizer, key in targets:
            assert key in agent.parts.optimizers[optimizer].optimizer.param_groups[0]


# ------------------------------------------------------------------ Dict observations through train_online


class _PointGoalEnv(gym.Env):
    """1-D point reaching with a Dict observation: move toward ``desired_goal``; reward -|x - goal|."""

    observation_space = gym.spaces.Dict({"observation": gym.spaces.Box(-2, 2, (2,), np.float32),
                                         "desired_goal": gym.spaces.Box(-1, 1, (2,), np.float32)})
    action_space = gym.spaces.Box(-1, 1, (1,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.x = float(self.np_random.uniform(-1, 1))
        self.v = 0.0
        self.goal = float(self.np_random.uniform(-1, 1))
        return self._obs(), {}

    def _obs(self):
        return {"observation": np.array([self.x, self.v], np.float32),
                "desired_goal": np.array([self.goal, 0.0], np.float32)}

    def step(self, action):
        self.v = 0.2 * float(np.clip(action, -1, 1)[0])
        self.x = float(np.clip(self.x + self.v, -2, 2))
        distance = abs(self.x - self.goal)
        return self._obs(), -distance, distance < 0.05, False, {}


gym.register("rlkit-test/SacPointGoal-v0", entry_point=_PointGoalEnv, max_episode_steps=20)


def test_sac_on_a_dict_observation_env_through_train_online(tmp_path):
    data = {
        "seed": 1,
        "env": {"id": "rlkit-test/SacPointGoal-v0", "num_envs": 2},
        "agent": {"name": "sac", "actor_hidden": [32, 32], "critic_hidden": [32, 32], "actor_lr": 1e-3,
                  "critic_lr": 1e-3, "alpha_lr": 1e-3, "random_steps": 100},
        "train": {"total_steps": 400, "learning_starts": 100, "batch_size": 32, "replay": {"capacity": 1000},
                  "eval_every": 200, "eval_episodes": 2, "checkpoint_every": 200},
        "log": {"progress": False, "tensorboard": False, "log_every": 100, "plot": False},
    }
    summary = train_online(build_run_config(data, []), tmp_path / "run")
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["kind"] == "train" and r.get("updates")]
    assert train and all(math.isfinite(r["critic_loss"]) and math.isfinite(r["alpha"]) for r in train)
    assert sum(r["updates"] for r in train) >= 290  # one update per env step after learning starts
    evals = [r for r in records if r["kind"] == "eval"]
    assert len(evals) == 3 and evals[0]["step"] == 0 and evals[-1]["step"] == 400  # 2 envs: the middle one may be 201
    assert all(math.isfinite(r["return_mean"]) for r in evals)
    assert summary is not None
    # resume with the fields SAC's config declares changeable (resumable, optimizer_settings); others are refused
    changed = ["train.total_steps=500", "agent.tau=0.01", "agent.critic_lr=5.0e-4", "agent.random_steps=0"]
    with pytest.raises(ConfigError, match="actor_hidden"):
        train_online(build_run_config(data, [*changed, "agent.actor_hidden=[16,16]"]), tmp_path / "run", resume=True)
    train_online(build_run_config(data, changed), tmp_path / "run", resume=True)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "eval"][-1] >= 500  # 2 envs: the last vector step may overshoot


# ------------------------------------------------------------------ learning


def test_learns_a_contextual_bandit_quickly():
    """One-step episodes (discount 0): obs s ~ U(-1, 1), reward -(a - s)^2. The policy's deterministic action
    must track s; a temperature fixed low keeps the entropy bonus from pulling the mean off target."""
    obs_space = gym.spaces.Box(-1, 1, (1,), np.float32)
    act_space = gym.spaces.Box(-1, 1, (1,), np.float32)
    agent = _agent(obs_space, act_space, seed=0, actor_lr=3e-3, critic_lr=3e-3, autotune_alpha=False,
                   init_alpha=1e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(400):
        obs = 2 * torch.rand(128, 1, generator=g) - 1
        actions = 2 * torch.rand(128, 1, generator=g) - 1
        agent.update(Transitions(obs=obs, actions=actions, rewards=-(actions - obs).squeeze(1) ** 2,
                                 next_obs=obs, discounts=torch.zeros(128), weights=torch.ones(128),
                                 indices=torch.arange(128)))
    test_obs = np.linspace(-0.8, 0.8, 9, dtype=np.float32).reshape(-1, 1)
    error = np.abs(agent.predict(test_obs, deterministic=True) - test_obs)
    assert error.max() < 0.15, error.ravel()


@pytest.mark.slow
def test_solves_pendulum(tmp_path):
    """Pendulum-v1 with the shipped config, 6,000 env steps: the best evaluation reaches >= -250
    (random: about -1,200; solved around -150)."""
    root = Path(__file__).resolve().parent.parent / "configs"
    cfg = load_config(root / "sac_pendulum.yaml", [
        "train.total_steps=6000", "train.eval_every=1000", "train.eval_episodes=5", "log.progress=false",
        "log.tensorboard=false", "log.plot=false", "train.checkpoint_every=0", "train.save_buffer=false"])
    train_online(cfg, tmp_path / "run")
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    best = max(r["return_mean"] for r in records if r["kind"] == "eval")
    assert best >= -250, best


# ------------------------------------------------------------------ the bench suite's rate


def test_bench_window_rate_leaves_evaluations_out():
    from rlkit.bench import _window_rate

    # (env step, time, updates so far): 100 updates/s of training, one 5 s evaluation ending at t = 7
    marks = [(0, 0.0, 0), (1000, 1.0, 0), (1100, 2.0, 100), (1200, 8.0, 200), (1300, 9.0, 300)]
    assert _window_rate(marks, [(7.0, 5.0)], start_step=1000) == pytest.approx(300 / 3.0)
    assert _window_rate(marks, [(0.5, 5.0)], start_step=1000) == pytest.approx(300 / 8.0)  # before the window
    assert _window_rate(marks, [], start_step=1300) is None  # one mark: no window


# ------------------------------------------------------------------ what update() feeds its losses (issue 18, finding 13)

Q_NEXT, Q_NOW = 10.0, 100.0


def _constant_critics(agent: SAC) -> None:
    """Qbar = Q_NEXT and Q = Q_NOW everywhere (last layers: zero weights, constant bias): a one-sample batch's
    critic loss is then (Q_NOW - y)^2, which gives the target y back."""
    with torch.no_grad():
        for critic, value in ((agent.target_critic, Q_NEXT), (agent.critic, Q_NOW)):
            critic.layers[-1].weight.zero_()
            critic.layers[-1].bias.fill_(value)


@pytest.mark.parametrize("reward, discount", [(-2.5, 0.95 ** 3), (1.0, 0.0), (0.5, 0.9)])
def test_update_bootstraps_with_the_batchs_discounts_not_gamma(reward, discount):
    # the replay returns n-step sums and gamma^k (0 at terminals): the target is R + d * (min Qbar - alpha log pi)
    # with d the batch's discount, never cfg.gamma again (alpha ~ 0 here, so y = R + d * Q_NEXT)
    agent = _agent(gamma=0.99, init_alpha=1e-9, autotune_alpha=False)
    _constant_critics(agent)
    one = _batch(size=1)
    batch = Transitions(obs=one.obs, actions=one.actions, rewards=torch.tensor([reward]), next_obs=one.next_obs,
                        discounts=torch.tensor([discount]), weights=torch.ones(1), indices=torch.zeros(1, dtype=torch.long))
    target = Q_NOW - math.sqrt(float(agent.update(batch)["critic_loss"]))
    assert target == pytest.approx(reward + discount * Q_NEXT, abs=1e-3)


def test_the_critic_sees_actions_normalised_to_minus_one_one():
    agent = _agent()
    seen = []
    agent.critic.register_forward_hook(lambda module, args, output: seen.append(args[1].detach().clone()))
    batch = _batch(size=256)
    agent.update(batch)
    low, high = torch.as_tensor(ACT_SPACE.low), torch.as_tensor(ACT_SPACE.high)
    expected = (batch.actions - (high + low) / 2) / ((high - low) / 2)
    # the first critic call is Q(s, a) on the replayed actions; the second Q(s, a~pi) on the policy's (in [-1, 1])
    torch.testing.assert_close(seen[0], expected)
    assert bool((seen[0].abs() <= 1).all()) and float(seen[0][:, 1].abs().max()) > 0.9
    assert not torch.allclose(seen[0], batch.actions)
    assert all(bool((s.abs() <= 1).all()) for s in seen)


@pytest.mark.parametrize("init_alpha", [0.05, 5.0])
def test_the_temperature_loss_is_on_log_alpha(init_alpha):
    # L = -log alpha * (log pi + Hbar): d L / d log alpha = -(mean log pi + Hbar) = entropy - Hbar, whatever
    # alpha is (a loss on alpha itself would scale the gradient by alpha: 0.05x or 5x)
    agent = _agent(init_alpha=init_alpha)
    metrics = agent.update(_batch())
    expected = float(metrics["entropy"]) - agent.target_entropy
    assert agent.target_entropy == -2.0
    assert float(agent.log_alpha.grad) == pytest.approx(expected, rel=1e-5, abs=1e-6)
    # and the step moved log alpha toward the target entropy: up while the entropy is below Hbar
    assert math.log(agent.alpha) != pytest.approx(math.log(init_alpha))

"""Behaviour cloning (agents/bc.py): the three losses against hand computations and torch.distributions,
actions inside the bounds, checkpoints that load with weights_only and continue identically, config errors,
Dict observations and Discrete actions with a non-zero start."""

from __future__ import annotations

import io
import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlkit.agents import AGENTS
from rlkit.agents.bc import BC, BCConfig, cross_entropy, gaussian_nll, mse_loss
from rlkit.config import build_run_config
from rlkit.errors import ConfigError
from rlkit.experience.replay import Transitions

BOX_OBS = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
PENDULUM_ACT = gym.spaces.Box(-2.0, 2.0, (1,), np.float32)


def _batch(obs, actions) -> Transitions:
    n = len(actions)
    return Transitions(obs=obs, actions=actions, rewards=torch.zeros(n), next_obs=obs, discounts=torch.zeros(n),
                       weights=torch.ones(n), indices=torch.arange(n))


def _agent(observation_space=BOX_OBS, action_space=PENDULUM_ACT, seed=0, **fields) -> BC:
    return BC(BCConfig(**{"hidden": [32, 32], **fields}), observation_space, action_space, seed=seed)


# ------------------------------------------------------------------ losses


def test_mse_is_the_mean_squared_error_per_sample():
    mean = torch.tensor([[0.5, -1.0], [0.0, 0.25]])
    target = torch.tensor([[1.0, -1.0], [-0.5, 0.75]])
    # sample 0: ((0.5)^2 + 0) / 2 = 0.125; sample 1: (0.25 + 0.25) / 2 = 0.25
    assert torch.allclose(mse_loss(mean, target), torch.tensor([0.125, 0.25]))


def test_gaussian_nll_is_minus_the_log_density_of_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mean, log_std, target = (torch.randn(64, 3, generator=g) for _ in range(3))
    expected = -torch.distributions.Independent(torch.distributions.Normal(mean, log_std.exp()), 1).log_prob(target)
    assert torch.allclose(gaussian_nll(mean, log_std, target), expected, atol=1e-5)
    # by hand, one dimension: x = mu + sigma -> 1/2 + log sigma + 1/2 log 2 pi
    one = gaussian_nll(torch.zeros(1, 1), torch.full((1, 1), math.log(2.0)), torch.full((1, 1), 2.0))
    assert one.item() == pytest.approx(0.5 + math.log(2.0) + 0.5 * math.log(2 * math.pi), abs=1e-6)


def test_cross_entropy_is_minus_the_log_softmax_of_the_action():
    logits = torch.tensor([[1.0, 2.0, 0.5], [0.0, 0.0, 0.0]])
    actions = torch.tensor([1, 2])
    by_hand = torch.tensor([-(2.0 - math.log(math.exp(1) + math.exp(2) + math.exp(0.5))), math.log(3.0)])
    assert torch.allclose(cross_entropy(logits, actions), by_hand, atol=1e-6)


def test_update_minimises_the_configured_loss_on_normalised_actions():
    """The reported loss is the loss of the batch before the step, in [-1, 1] action units."""
    obs = torch.randn(16, 3, generator=torch.Generator().manual_seed(1))
    actions = torch.linspace(-2.0, 2.0, 16).unsqueeze(1)                 # env scale: [-2, 2]
    for loss in ("mse", "gaussian"):
        agent = _agent(loss=loss)
        with torch.no_grad():
            out = agent.policy(obs)
        target = actions / 2.0                                            # normalised by the Box bounds
        if loss == "mse":
            expected = mse_loss(out, target).mean()
        else:
            mean, log_std = out.chunk(2, dim=-1)
            expected = gaussian_nll(mean, log_std.clamp(-5.0, 2.0), target).mean()
        metrics = agent.update(_batch(obs, actions))
        assert all(isinstance(v, torch.Tensor) and v.dim() == 0 and not v.requires_grad for v in metrics.values())
        assert metrics["loss"].item() == pytest.approx(expected.item(), rel=1e-5)
        assert ("std" in metrics) == (loss == "gaussian")


@pytest.mark.parametrize("loss", ["mse", "gaussian"])
def test_fits_a_box_policy(loss):
    g = torch.Generator().manual_seed(0)
    agent = _agent(loss=loss, lr=3e-3)
    for _ in range(300):
        obs = 2 * torch.rand(128, 3, generator=g) - 1
        agent.update(_batch(obs, (2 * obs[:, :1]).clamp(-2, 2)))          # the expert: a = 2 s_0
    test_obs = np.linspace(-0.9, 0.9, 7, dtype=np.float32)[:, None].repeat(3, axis=1)
    assert np.abs(agent.predict(test_obs, deterministic=True)[:, 0] - 2 * test_obs[:, 0]).max() < 0.15


def test_discrete_actions_with_a_start_learn_by_cross_entropy():
    space = gym.spaces.Discrete(3, start=-1)
    agent = _agent(action_space=space, lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        obs = 2 * torch.rand(128, 3, generator=g) - 1
        actions = torch.where(obs[:, 0] > 0, 1, -1)                      # env actions in {-1, 0, 1}
        metrics = agent.update(_batch(obs, actions))
    assert metrics["accuracy"].item() > 0.95 and "action_error" not in metrics
    test_obs = np.array([[0.8, 0, 0], [-0.8, 0, 0]], dtype=np.float32)
    assert agent.predict(test_obs, deterministic=True).tolist() == [1, -1]
    assert set(agent.predict(np.repeat(test_obs, 50, 0), deterministic=True, epsilon=1.0).tolist()) <= {-1, 0, 1}


# ------------------------------------------------------------------ acting


@pytest.mark.parametrize("loss", ["mse", "gaussian"])
def test_actions_stay_inside_the_box_bounds(loss):
    space = gym.spaces.Box(np.array([-2.0, 0.0], np.float32), np.array([2.0, 10.0], np.float32))
    agent = _agent(action_space=space, loss=loss)
    with torch.no_grad():  # push the outputs far outside [-1, 1]
        agent.policy.net[-1].bias.fill_(5.0)
    obs = np.random.default_rng(0).uniform(-1, 1, (64, 3)).astype(np.float32)
    for explore in (False, True):
        actions = agent.predict(obs, deterministic=not explore, epsilon=0.3)
        assert actions.shape == (64, 2) and actions.dtype == np.float32
        assert np.all(actions >= space.low) and np.all(actions <= space.high)
    assert np.allclose(agent.predict(obs, deterministic=True), space.high)        # the clipped mean: the upper bound


def test_mse_explores_as_it_evaluates_and_gaussian_samples():
    obs = np.random.default_rng(0).uniform(-1, 1, (8, 3)).astype(np.float32)
    mse = _agent(loss="mse")
    assert np.array_equal(mse.predict(obs, deterministic=False), mse.predict(obs, deterministic=True))
    gaussian = _agent(loss="gaussian")
    assert not np.array_equal(gaussian.predict(obs, deterministic=False), gaussian.predict(obs, deterministic=True))


def test_dict_observations():
    space = gym.spaces.Dict({"observation": gym.spaces.Box(-1, 1, (3,), np.float32),
                             "desired_goal": gym.spaces.Box(-1, 1, (2,), np.float32)})
    agent = _agent(observation_space=space, loss="gaussian")
    g = torch.Generator().manual_seed(0)
    obs = {"observation": torch.rand(32, 3, generator=g), "desired_goal": torch.rand(32, 2, generator=g)}
    metrics = agent.update(_batch(obs, torch.rand(32, 1, generator=g)))
    assert math.isfinite(metrics["loss"].item())
    actions = agent.predict({k: v.numpy()[:5] for k, v in obs.items()}, deterministic=True)
    assert actions.shape == (5, 1)


# ------------------------------------------------------------------ checkpoints


@pytest.mark.parametrize("action_space", [PENDULUM_ACT, gym.spaces.Discrete(4)])
def test_state_dict_round_trip_with_weights_only_continues_identically(action_space):
    def batches():
        g = torch.Generator().manual_seed(7)
        for _ in range(5):
            obs = torch.rand(16, 3, generator=g)
            actions = (torch.randint(0, 4, (16,), generator=g) if isinstance(action_space, gym.spaces.Discrete)
                       else 4 * torch.rand(16, 1, generator=g) - 2)
            yield _batch(obs, actions)

    loss = "gaussian"
    a = _agent(action_space=action_space, loss=loss, seed=3)
    for batch in list(batches())[:2]:
        a.update(batch)
    a.predict(np.zeros((2, 3), np.float32), deterministic=False)
    buffer = io.BytesIO()
    torch.save(a.state_dict(), buffer)
    buffer.seek(0)
    b = _agent(action_space=action_space, loss=loss, seed=99)
    b.load_state_dict(torch.load(buffer, weights_only=True))
    assert b.updates == a.updates == 2
    for batch in list(batches())[2:]:
        assert a.update(batch)["loss"].item() == b.update(batch)["loss"].item()
    obs = np.random.default_rng(1).uniform(-1, 1, (6, 3)).astype(np.float32)
    assert np.array_equal(a.predict(obs, deterministic=False, epsilon=0.5), b.predict(obs, deterministic=False, epsilon=0.5))
    for pa, pb in zip(a.policy.parameters(), b.policy.parameters()):
        assert torch.equal(pa, pb)


# ------------------------------------------------------------------ config


@pytest.mark.parametrize("overrides, words", [
    ({"loss": "huber"}, "agent.loss"), ({"lr": 0.0}, "agent.lr"), ({"lr": float("nan")}, "agent.lr"),
    ({"hidden": []}, "agent.hidden"), ({"weight_decay": -1.0}, "agent.weight_decay"),
    ({"max_grad_norm": 0.0}, "agent.max_grad_norm"), ({"log_std_min": 3.0}, "agent.log_std_min"),
    ({"gamma": 1.5}, "agent.gamma"),
])
def test_config_errors(overrides, words):
    with pytest.raises(ConfigError, match=words):
        BCConfig(**overrides)


def test_config_file_parses_and_the_agent_is_registered():
    from pathlib import Path

    from rlkit.config import load_config

    assert AGENTS["bc"] == (BCConfig, BC)
    cfg = load_config(Path(__file__).resolve().parent.parent / "configs" / "bc_pendulum.yaml", [])
    assert isinstance(cfg.agent, BCConfig) and cfg.offline.dataset == "rlkit/pendulum-sac-v0"
    with pytest.raises(ConfigError, match="loss"):  # a Literal the config loader checks too
        build_run_config({"env": {"id": "Pendulum-v1"}, "agent": {"name": "bc", "loss": "l1"}}, [])


def test_unbounded_or_unsupported_action_spaces_are_refused():
    with pytest.raises(ConfigError, match="finite"):
        BC(BCConfig(), BOX_OBS, gym.spaces.Box(-np.inf, np.inf, (2,), np.float32))
    with pytest.raises(ConfigError, match="Box or Discrete"):
        BC(BCConfig(), BOX_OBS, gym.spaces.MultiBinary(3))


# ------------------------------------------------------------------ filtered BC (the DT paper's %BC baseline)


class _Ep:
    def __init__(self, ret: float, steps: int) -> None:
        self.rewards = np.full(steps, ret / steps)
        self.actions = np.zeros((steps, 1))


def test_top_episodes_keeps_the_best_returns_within_the_step_share_in_dataset_order():
    from rlkit.agents.bc import top_episodes

    episodes = [_Ep(1.0, 10), _Ep(5.0, 10), _Ep(3.0, 20), _Ep(4.0, 10), _Ep(-2.0, 50)]  # 100 steps
    picked = top_episodes(episodes, 0.3)                    # 5.0 (10) + 4.0 (10) = 20 <= 30; + 3.0 (20) > 30
    assert picked == [episodes[1], episodes[3]]
    assert top_episodes(episodes, 0.01) == [episodes[1]]    # at least the best one
    assert top_episodes(episodes, 1.0) == episodes
    assert BCConfig(top_fraction=0.3).select_episodes(episodes) == picked
    assert BCConfig().select_episodes(episodes) is episodes


@pytest.mark.parametrize("value", [0.0, 1.5, -0.1])
def test_top_fraction_outside_the_unit_interval_is_refused(value):
    with pytest.raises(ConfigError, match="agent.top_fraction"):
        BCConfig(top_fraction=value)


def test_an_offline_source_trains_on_the_selected_episodes_only(tmp_path, monkeypatch):
    from rlkit.config import build_run_config
    from rlkit.experience.datasets import Episode, write_dataset
    from rlkit.experience.sources import dataset_source

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    obs_space, act_space = gym.spaces.Box(-10, 10, (1,), np.float32), gym.spaces.Box(-1, 1, (1,), np.float32)
    episodes = []
    for level in (-1.0, 1.0, 0.5, -0.5):  # the action level is the reward: the best episode acts 1.0
        episodes.append(Episode(np.zeros((11, 1), np.float32), np.full((10, 1), level, np.float32),
                                np.full(10, level, np.float32), np.zeros(10, bool), np.r_[np.zeros(9, bool), True]))
    write_dataset("rlkit/levels-v0", episodes, obs_space, act_space)
    cfg = build_run_config({"env": {"id": None}, "offline": {"dataset": "rlkit/levels-v0"},
                            "agent": {"name": "bc", "top_fraction": 0.25}})
    _, source = dataset_source(cfg, torch.device("cpu"))
    assert set(source.sample(64).actions.flatten().tolist()) == {1.0}


def test_normalize_obs_standardises_by_the_datasets_statistics_kept_in_the_weights():
    class _Data:
        episodes = [type("E", (), {"observations": np.array([[1.0, 10.0], [3.0, 30.0], [0.0, 0.0]]),
                                   "actions": np.zeros((2, 1))})()]

    space = gym.spaces.Box(-100, 100, (2,), np.float32)
    plain = BC(BCConfig(), space, gym.spaces.Box(-1, 1, (1,), np.float32))
    assert not any("standardize" in k for k in plain.state_dict()["policy"])  # unchanged without the option
    agent = BC(BCConfig(normalize_obs=True), space, gym.spaces.Box(-1, 1, (1,), np.float32))
    agent.observe_dataset(_Data())
    weights = agent.state_dict()["policy"]
    torch.testing.assert_close(weights["standardize.mean"], torch.tensor([2.0, 20.0]))
    torch.testing.assert_close(weights["standardize.std"], torch.tensor([1.0, 10.0]) + 1e-6)
    torch.testing.assert_close(agent.policy.standardize(torch.tensor([[3.0, 30.0]])), torch.tensor([[1.0, 1.0]]),
                               rtol=1e-5, atol=1e-5)
    assert "policy.standardize.mean" in agent.acting_tensors()  # exports act without the dataset

"""DQN: networks, the TD target of each variant against a hand computation, exploration, all flags together."""

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rlkit.agents.dqn import DQN, DQNConfig, QNetwork
from rlkit.config import ConfigError, build_run_config
from rlkit.training.loops import train_online
from rlkit.experience.replay import Transitions

BOX = gym.spaces.Box(-1, 1, shape=(4,), dtype=np.float32)
ACTIONS = gym.spaces.Discrete(3)


def _batch(b=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return Transitions(obs=torch.randn(b, 4, generator=g), actions=torch.randint(0, 3, (b,), generator=g),
                       rewards=torch.randn(b, generator=g), next_obs=torch.randn(b, 4, generator=g),
                       discounts=torch.tensor([0.99, 0.0] * (b // 2)), weights=torch.rand(b, generator=g) + 0.5,
                       indices=torch.arange(b))


def test_q_network_shapes_mlp_and_nature_cnn():
    mlp = QNetwork(gym.spaces.Box(-1, 1, (4,), np.float32), 3, [16, 16], dueling=False)
    assert mlp(torch.randn(5, 4)).shape == (5, 3)
    cnn = QNetwork(gym.spaces.Box(0, 255, (4, 84, 84), np.uint8), 6, [16], dueling=True)
    assert cnn(torch.randint(0, 255, (2, 4, 84, 84), dtype=torch.uint8)).shape == (2, 6)


def test_dueling_head_is_value_plus_centred_advantage():
    net = QNetwork(gym.spaces.Box(-1, 1, (4,), np.float32), 3, [16], dueling=True)
    obs = torch.randn(7, 4)
    z = net.encoder(obs)
    q = net(obs)
    torch.testing.assert_close(q.mean(dim=1, keepdim=True), net.value(z))


@pytest.mark.parametrize("double", [False, True])
def test_loss_matches_hand_computed_target(double):
    agent = DQN(DQNConfig(double=double, hidden=[16], target_update_every=10**6, max_grad_norm=None),
                BOX, ACTIONS, seed=0)
    torch.nn.init.normal_(agent.target_net.q[0].weight)  # make target and online networks differ
    batch = _batch()
    with torch.no_grad():
        online_next, target_next = agent.q_net(batch.next_obs), agent.target_net(batch.next_obs)
        select = online_next if double else target_next
        next_q = target_next[torch.arange(8), select.argmax(1)]
        y = batch.rewards + batch.discounts * next_q
        q = agent.q_net(batch.obs)[torch.arange(8), batch.actions]
        expected = (batch.weights * F.huber_loss(q, y, reduction="none")).mean()
        expected_td = (q - y).abs()
    reported = {}
    agent.connect_priorities(lambda indices, priorities: reported.update(indices=indices, priorities=priorities))
    metrics = agent.update(batch)
    assert float(metrics["loss"]) == pytest.approx(expected.item(), rel=1e-5)
    torch.testing.assert_close(reported["priorities"], expected_td)
    torch.testing.assert_close(reported["indices"], batch.indices)


def test_target_network_hard_and_soft_updates():
    hard = DQN(DQNConfig(hidden=[8], target_update_every=3, lr=0.1), BOX, ACTIONS)
    for i in range(3):
        before = hard.target_net.q[0].weight.clone()
        hard.update(_batch(seed=i))
        synced = torch.equal(hard.target_net.q[0].weight, hard.q_net.q[0].weight)
        assert synced == (i == 2) and (synced or torch.equal(before, hard.target_net.q[0].weight))
    soft = DQN(DQNConfig(hidden=[8], target_update_every=1, tau=0.5, lr=0.1), BOX, ACTIONS)
    old_target = soft.target_net.q[0].weight.clone()
    soft.update(_batch())
    torch.testing.assert_close(soft.target_net.q[0].weight, 0.5 * old_target + 0.5 * soft.q_net.q[0].weight)


def test_epsilon_schedule_and_greedy_evaluation():
    agent = DQN(DQNConfig(hidden=[8], eps_start=1.0, eps_end=0.1, eps_decay_steps=100), BOX, ACTIONS, seed=1)
    obs = np.zeros((10, 4), dtype=np.float32)
    assert agent.epsilon == 1.0
    agent.set_env_steps(10)
    assert agent.epsilon == pytest.approx(0.91)
    agent.set_env_steps(210)
    assert agent.epsilon == pytest.approx(0.1)
    greedy = agent.predict(obs, deterministic=True)
    assert agent.env_steps == 210  # evaluation does not advance the schedule
    assert np.all(greedy == greedy[0])  # same obs, deterministic


def test_epsilon_holds_until_its_decay_starts():
    """eps_decay_start: epsilon stays at eps_start for that many env steps, then decays over eps_decay_steps
    (Dopamine's linearly_decaying_epsilon with its warm-up: 1.0 up to step 1,600, 0.1 from 6,600 in DrQ.gin)."""
    agent = DQN(DQNConfig(hidden=[8], eps_start=1.0, eps_end=0.1, eps_decay_steps=5000, eps_decay_start=1600), BOX,
                ACTIONS, seed=1)
    for steps, expected in [(0, 1.0), (1600, 1.0), (4100, 0.55), (6600, 0.1), (9000, 0.1)]:
        agent.set_env_steps(steps)
        assert agent.epsilon == pytest.approx(expected), steps
    with pytest.raises(ConfigError, match="eps_decay_start"):
        DQNConfig(eps_decay_start=-1)


def test_epsilon_follows_the_loops_clock_of_real_env_steps():
    """The schedules read set_env_steps (the loop's count of real transitions, autoreset steps excluded),
    never act(): evaluation, Policy.predict and autoreset steps cannot move them."""
    agent = DQN(DQNConfig(hidden=[8], eps_start=1.0, eps_end=0.0, eps_decay_steps=100), BOX, ACTIONS, seed=1)
    obs = np.zeros((4, 4), dtype=np.float32)
    for _ in range(3):
        agent.predict(obs, deterministic=False, episode_start=np.ones(4, dtype=bool))
    assert agent.env_steps == 0 and agent.epsilon == 1.0
    agent.set_env_steps(40)
    assert agent.epsilon == pytest.approx(0.6)
    agent.predict(obs, deterministic=True, epsilon=0.5)
    assert agent.env_steps == 40


def test_epsilon_schedule_counts_the_loops_env_steps(tmp_path, cartpole_data):
    """Over a run with many episode ends, the schedule's step count equals the loop's real env steps."""
    from rlkit.runfiles.checkpoint import load_checkpoint

    cfg = build_run_config(cartpole_data, ["train.total_steps=600", "train.learning_starts=600", "train.eval_every=0"])
    summary = train_online(cfg, tmp_path)
    state = load_checkpoint(tmp_path / "checkpoints" / "latest.pt")
    episodes = sum(1 for line in (tmp_path / "metrics.jsonl").read_text().splitlines() if '"episode"' in line)
    assert episodes >= 10  # random play on CartPole: short episodes, so autoreset steps would show
    assert state["agent"]["env_steps"] == state["loop"]["step"] == summary["steps"]


def test_learning_rate_schedule_follows_env_steps():
    agent = DQN(DQNConfig(hidden=[8], lr=1e-2, lr_end=1e-3, lr_decay_steps=100), BOX, ACTIONS, seed=0)
    obs = np.zeros((10, 4), dtype=np.float32)
    metrics = agent.update(_batch())
    assert agent.optimizer.param_groups[0]["lr"] == pytest.approx(1e-2) and metrics["lr"] == pytest.approx(1e-2)
    agent.set_env_steps(50)
    agent.update(_batch())
    assert agent.optimizer.param_groups[0]["lr"] == pytest.approx(0.5 * (1e-2 + 1e-3))
    agent.set_env_steps(150)
    agent.update(_batch())
    assert agent.optimizer.param_groups[0]["lr"] == pytest.approx(1e-3)  # stays at lr_end
    constant = DQN(DQNConfig(hidden=[8], lr=1e-2), BOX, ACTIONS)
    constant.predict(obs, deterministic=False)
    metrics = constant.update(_batch())
    assert constant.optimizer.param_groups[0]["lr"] == 1e-2 and "lr" not in metrics


@pytest.mark.parametrize("override", ["lr_end=0.1", "lr_end=-1e-4", "lr_decay_steps=-1"])
def test_learning_rate_schedule_is_validated(override):
    key, value = override.split("=")
    with pytest.raises(ConfigError, match=f"agent.{key}"):
        DQNConfig(lr=1e-3, **{key: float(value) if key == "lr_end" else int(value)})


def test_dqn_rejects_continuous_actions():
    with pytest.raises(ConfigError, match="Discrete action space"):
        DQN(DQNConfig(), BOX, gym.spaces.Box(-1, 1, (2,)))


def test_all_flags_together_train(tmp_path, cartpole_data):
    cfg = build_run_config(cartpole_data, ["agent.double=true", "agent.dueling=true", "train.replay.n_step=3",
                                           "train.replay.prioritized=true", "agent.tau=0.05", "agent.target_update_every=1"])
    summary = train_online(cfg, tmp_path)
    assert cfg.train.total_steps <= summary["steps"] < cfg.train.total_steps + cfg.env.num_envs and summary["final_eval"]["return_mean"] > 0

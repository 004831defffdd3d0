"""The online loop's per-step overhead cuts (issue 22) change no result: replay sampling, DQN's acting and the
collector's bookkeeping give exactly what the plain implementations they replaced give (kept below as references),
and a seeded DQN run trains bit-identically with the references patched in."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlkit.config import configs_dir, load_config
from rlkit.contract.agent import StepRecord
from rlkit.contract.networks import index_obs
from rlkit.experience.replay import ReplayBuffer, Transitions
from rlkit.training import loops
from rlkit.training.build import build_agent
from rlkit.training.collector import Collector


# --------------------------------------------------------------------------- references (the code before the cuts)
def reference_sample(buffer: ReplayBuffer, batch_size: int) -> Transitions:
    """Uniform sampling as written before: torch draws and arithmetic, n-step targets by definition."""
    g, R, N = buffer._generator, buffer.rows_per_env, buffer.num_envs
    lo, hi = buffer._sampleable_offsets()
    oldest = buffer.oldest_row

    def draw(k):
        offsets = torch.randint(lo, hi, (k,), generator=g)
        return (oldest + offsets) % R, torch.randint(0, N, (k,), generator=g)

    rows, envs = draw(batch_size)
    while True:
        invalid = ~buffer._valid[rows, envs]
        if not bool(invalid.any()):
            break
        rows[invalid], envs[invalid] = draw(int(invalid.sum()))
    powers = buffer.gamma_powers.numpy()
    next_rows, rewards, discounts = [], [], []
    for r, e in zip(rows.tolist(), envs.tolist()):  # sum_{i<k} gamma^i r_{t+i}, discount gamma^k or 0
        total, k, terminal = np.float32(0.0), 0, False
        for i in range(buffer.n_step):
            row = (r + i) % R
            total = np.float32(total + powers[i] * buffer._rewards[row, e].numpy())
            k = i + 1
            if bool(buffer._terminated[row, e]):
                terminal = True
                break
            if bool(buffer._truncated[row, e]):
                break
        next_rows.append((r + k) % R)
        rewards.append(total)
        discounts.append(np.float32(0.0) if terminal else powers[k])
    next_rows = torch.tensor(next_rows)
    storage = buffer._obs[""]
    return Transitions(obs=storage[rows, envs], actions=buffer._actions[rows, envs],
                       rewards=torch.from_numpy(np.array(rewards, np.float32)), next_obs=storage[next_rows, envs],
                       discounts=torch.from_numpy(np.array(discounts, np.float32)),
                       weights=torch.ones(batch_size), indices=rows * N + envs)


def reference_act(agent, step: StepRecord, explore: bool = True):
    """DQN's epsilon-greedy act as written before (greedy rows always selected by a boolean index)."""
    n = step.size
    eps = agent.epsilon if explore else 0.0
    if eps <= 0.0:
        return agent.greedy(step.obs, None, None)
    random_mask = agent.rng.random(n) < eps
    actions = agent.rng.integers(agent.n_actions, size=n)
    if not random_mask.all():
        greedy_mask = ~random_mask
        rows = torch.from_numpy(greedy_mask)
        actions[greedy_mask] = agent.greedy(index_obs(step.obs, rows), None, None)
    return actions


def filled_buffer(num_envs: int, n_step: int, seed: int = 0, rows: int = 400) -> ReplayBuffer:
    buffer = ReplayBuffer(capacity=num_envs * 300, num_envs=num_envs, obs_shape=(3,), obs_dtype=torch.float32,
                          action_shape=(), action_dtype=torch.int64, gamma=0.9, n_step=n_step, seed=seed)
    rng = np.random.default_rng(seed)
    autoreset = np.zeros(num_envs, bool)
    for _ in range(rows):  # wraps the ring (300 rows per env); episodes end by termination and truncation
        terminated, truncated = rng.random(num_envs) < 0.08, rng.random(num_envs) < 0.05
        buffer.add(rng.standard_normal((num_envs, 3)).astype(np.float32), rng.integers(0, 4, num_envs),
                   rng.standard_normal(num_envs).astype(np.float32), terminated, truncated & ~terminated, autoreset)
        autoreset = terminated | truncated
    return buffer


# --------------------------------------------------------------------------- tests
@pytest.mark.parametrize("num_envs,n_step", [(1, 1), (1, 3), (4, 1), (4, 3)])
def test_sample_matches_the_reference(num_envs, n_step):
    ours, theirs = filled_buffer(num_envs, n_step), filled_buffer(num_envs, n_step)
    for batch_size in (1, 7, 64, 64, 256):
        got, want = ours.sample(batch_size), reference_sample(theirs, batch_size)
        for name in ("obs", "actions", "rewards", "next_obs", "discounts", "weights", "indices"):
            a, b = getattr(got, name), getattr(want, name)
            assert a.dtype == b.dtype and a.shape == b.shape, name
            assert torch.equal(a, b), name
        assert torch.equal(ours._generator.get_state(), theirs._generator.get_state())  # the same draws


def test_collector_step_bookkeeping():
    """Episodes (env, return, length) and real_steps as counted by hand from the raw steps."""
    envs = gym.make_vec("CartPole-v1", num_envs=3, vectorization_mode="sync")
    collector = Collector(envs, seed=3)

    class RandomAgent:
        device = torch.device("cpu")
        rng = np.random.default_rng(0)

        def act(self, record, explore, epsilon=None):
            return self.rng.integers(0, 2, size=record.size)

    agent, returns, lengths, episodes = RandomAgent(), np.zeros(3), np.zeros(3, int), 0
    for _ in range(300):
        step = collector.step(agent, explore=True)
        real = ~step.autoreset
        assert step.real_steps == int(real.sum())
        assert not step.life_loss.any() and not step.life_loss.flags.writeable
        returns[real] += step.rewards[real]
        lengths[real] += 1
        ended = np.flatnonzero((step.terminated | step.truncated) & real)
        assert [e for e, _, _ in step.episodes] == ended.tolist()
        for e, ret, length in step.episodes:
            assert (ret, length) == (returns[e], lengths[e])
            returns[e], lengths[e] = 0.0, 0
            episodes += 1
    assert episodes > 20
    envs.close()


@pytest.mark.parametrize("num_envs", [1, 5])
def test_dqn_act_matches_the_reference(num_envs):
    cfg = load_config(None, ["agent.name=dqn", "env.id=CartPole-v1", "agent.eps_decay_steps=400"])
    space, actions = gym.spaces.Box(-5, 5, (4,), np.float32), gym.spaces.Discrete(2)
    ours, theirs = (build_agent(cfg, space, actions, torch.device("cpu")) for _ in range(2))
    theirs.q_net.load_state_dict(ours.q_net.state_dict())
    rng = np.random.default_rng(1)
    for t in range(0, 600, 3):  # epsilon from 1 down to its end: all-random, mixed and all-greedy steps
        ours.set_env_steps(t)
        theirs.set_env_steps(t)
        record = StepRecord.from_arrays(rng.standard_normal((num_envs, 4)).astype(np.float32), "cpu")
        np.testing.assert_array_equal(ours.act(record, explore=True), reference_act(theirs, record))
        np.testing.assert_array_equal(ours.act(record, explore=False), reference_act(theirs, record, explore=False))
    assert ours.rng.bit_generator.state == theirs.rng.bit_generator.state


def _final_weights(tmp_path, name: str) -> dict[str, torch.Tensor]:
    cfg = load_config(configs_dir() / "dqn_cartpole_zoo.yaml", [
        "train.total_steps=1600", "train.learning_starts=500", "train.gradient_steps=32", "train.eval_every=0",
        "train.checkpoint_every=0", "log.progress=false", "log.tensorboard=false", "log.plot=false",
        "train.save_buffer=false", "torch_threads=1", "seed=5"])
    built = {}
    build_agent_ = loops.build_agent

    def keep(*args, **kwargs):
        built["agent"] = build_agent_(*args, **kwargs)
        return built["agent"]

    loops.build_agent = keep
    try:
        loops.train_online(cfg, tmp_path / name)
    finally:
        loops.build_agent = build_agent_
    return {k: v.clone() for k, v in built["agent"].q_net.state_dict().items()}


def test_seeded_run_identical_with_the_references(tmp_path, monkeypatch):
    """A short seeded DQN run trains bit-identically with the pre-cut sampling and acting patched in."""
    ours = _final_weights(tmp_path, "ours")
    from rlkit.agents.dqn import DQN

    monkeypatch.setattr(ReplayBuffer, "sample", lambda self, batch_size, beta=0.4: reference_sample(self, batch_size))
    monkeypatch.setattr(DQN, "act", lambda self, step, explore, epsilon=None: reference_act(self, step, explore))
    theirs = _final_weights(tmp_path, "theirs")
    assert ours.keys() == theirs.keys()
    for key in ours:
        assert torch.equal(ours[key], theirs[key]), key

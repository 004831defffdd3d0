"""RIS (agents/ris.py): the subgoal cost, the AWR weights and the KL term as pure functions on hand-made values,
the sample-time hook that adds candidate subgoals, checkpoints, and short runs through the online loop (with HER
before the agent's hook) that resume exactly."""

import json
import math
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

import rlkit.envs  # noqa: F401  (registers rlkit/PointGoal-v0, rlkit/PointMazeU-v0)
from rlkit.agents.ris import (RIS, RISConfig, SubgoalCandidateSampler, SubgoalTransitions, awr_weights,
                              gaussian_log_prob, laplace_log_prob, mixture_kl, subgoal_cost)
from rlkit.training.build import _chain_hooks
from rlkit.runfiles.checkpoint import load_checkpoint
from rlkit.config import build_run_config
from rlkit.errors import ConfigError
from rlkit.experience.her import HindsightRelabeler
from rlkit.training.loops import train_online
from rlkit.experience.replay import ReplayBuffer
from rlkit.runfiles.runs import LATEST

GOAL_SPACE = gym.spaces.Dict({"observation": gym.spaces.Box(-1, 1, (3,), np.float32),
                              "achieved_goal": gym.spaces.Box(-1, 1, (2,), np.float32),
                              "desired_goal": gym.spaces.Box(-1, 1, (2,), np.float32)})
ACTIONS = gym.spaces.Box(-2.0, 2.0, (2,), np.float32)
SMALL = {"actor_hidden": [32, 32], "critic_hidden": [32, 32], "subgoal_hidden": [32, 32]}


# --------------------------------------------------------------------------------------
# Pure functions on hand-made values
# --------------------------------------------------------------------------------------


def test_subgoal_cost_is_the_larger_distance_with_values_clamped_to_minus_clip_zero():
    v_to = torch.tensor([-3.0, -10.0, 0.5, -250.0, -7.0])
    v_from = torch.tensor([-5.0, -2.0, -1.0, -1.0, 2.0])
    # max(|V(s, s_g)|, |V(s_g, g)|); positive values count as 0, values below -100 as 100
    assert subgoal_cost(v_to, v_from).tolist() == [5.0, 10.0, 1.0, 100.0, 7.0]
    assert subgoal_cost(v_to, v_from, clip=6.0).tolist() == [5.0, 6.0, 1.0, 6.0, 6.0]


def test_awr_weights_are_a_softmax_of_advantages_over_the_whole_batch():
    cost = torch.tensor([[2.0, 4.0], [1.0, 3.0], [6.0, 5.0]])      # [B=3, K=2]
    baseline = torch.tensor([3.0, 1.0, 5.0])                          # cost of pi_H's location per sample
    weights, adv = awr_weights(cost, baseline, lam=0.5)
    expected_adv = torch.tensor([[1.0, -1.0], [0.0, -2.0], [-1.0, 0.0]])
    torch.testing.assert_close(adv, expected_adv)
    e = torch.exp(expected_adv / 0.5)
    torch.testing.assert_close(weights, e / e.sum())
    assert math.isclose(float(weights.sum()), 1.0, rel_tol=1e-6)
    # K = 1 (the reference: one candidate each): softmax over the batch, dim 0
    w1, _ = awr_weights(cost[:, :1], baseline, lam=0.1)
    torch.testing.assert_close(w1[:, 0], torch.softmax(-(cost[:, 0] - baseline) / 0.1, dim=0))


def test_log_densities_match_torch_distributions():
    g = torch.Generator().manual_seed(0)
    x, mean, log_std = (torch.randn(5, 3, generator=g) for _ in range(3))
    torch.testing.assert_close(gaussian_log_prob(x, mean, log_std),
                               torch.distributions.Normal(mean, log_std.exp()).log_prob(x).sum(-1))
    torch.testing.assert_close(laplace_log_prob(x, mean, log_std),
                               torch.distributions.Laplace(mean, log_std.exp()).log_prob(x).sum(-1))


def test_mixture_kl_is_the_references_formula_and_a_monte_carlo_kl():
    g = torch.Generator().manual_seed(1)
    B, n, A = 4, 10, 3
    mean, log_std = torch.randn(B, A, generator=g), 0.3 * torch.randn(B, A, generator=g)
    prior_mean, prior_log_std = torch.randn(n, B, A, generator=g), 0.3 * torch.randn(n, B, A, generator=g)
    u = mean + log_std.exp() * torch.randn(B, A, generator=g)
    policy = torch.distributions.Normal(mean, log_std.exp())
    priors = torch.distributions.Normal(prior_mean, prior_log_std.exp())
    log_prob = policy.log_prob(u).sum(-1)
    prior_log_probs = priors.log_prob(u.expand(n, B, A)).sum(-1).T                # [B, n]
    # the reference: log pi(u) - log(mean_k exp(log pibar_k(u)) + epsilon)
    for eps in (0.0, 1e-16, 1e-3):
        reference = log_prob - torch.log(prior_log_probs.double().exp().mean(-1) + eps).float()
        torch.testing.assert_close(mixture_kl(log_prob, prior_log_probs, eps), reference)
    # no underflow where the densities do: log-densities of -1000 give a finite KL with epsilon = 0
    far = mixture_kl(torch.zeros(1), torch.full((1, n), -1000.0), 0.0)
    torch.testing.assert_close(far, torch.tensor([1000.0]))
    # with one prior component, the mean of the estimate over many samples is KL(pi || pibar) (torch's closed form)
    samples = mean[0] + log_std[0].exp() * torch.randn(200_000, A, generator=g)
    single = torch.distributions.Normal(prior_mean[0, 0], prior_log_std[0, 0].exp())
    estimate = mixture_kl(gaussian_log_prob(samples, mean[0], log_std[0]),
                          gaussian_log_prob(samples, prior_mean[0, 0], prior_log_std[0, 0])[:, None], 0.0).mean()
    exact = torch.distributions.kl_divergence(policy, single)[0].sum()
    assert abs(float(estimate - exact)) < 0.02 * max(1.0, float(exact))


# --------------------------------------------------------------------------------------
# The sample-time hook: candidates from stored rows, reproducible with the buffer's generator
# --------------------------------------------------------------------------------------


def _filled_buffer(rows: int, num_envs: int = 2, hook=None, capacity: int = 1000) -> ReplayBuffer:
    buffer = ReplayBuffer.from_spaces(GOAL_SPACE, ACTIONS, capacity, num_envs, seed=3, sample_hook=hook)
    for t in range(rows):
        # row t of env e: observation (t, e, 7), achieved (t + 0.5, e); done every 5 steps
        obs = {"observation": np.stack([np.array([t, e, 7.0], np.float32) for e in range(num_envs)]),
               "achieved_goal": np.stack([np.array([t + 0.5, e], np.float32) for e in range(num_envs)]),
               "desired_goal": np.full((num_envs, 2), 9.0, np.float32)}
        done = np.full(num_envs, t % 5 == 4)
        autoreset = np.full(num_envs, t % 5 == 0 and t > 0)
        buffer.add(obs, np.zeros((num_envs, 2), np.float32), -np.ones(num_envs, np.float32), np.zeros(num_envs, bool),
                   done, autoreset)
    return buffer


def test_hook_draws_candidates_from_stored_rows_as_state_vectors_and_reproducibly():
    buffer = _filled_buffer(30, hook=SubgoalCandidateSampler(per_sample=3))
    state = buffer.state_dict()
    batch = buffer.sample(64)
    assert isinstance(batch, SubgoalTransitions)
    c = batch.subgoal_candidates
    assert c.shape == (64, 3, 5) and c.dtype == torch.float32
    # [achieved_goal, observation] of one stored row: (t + 0.5, e, t, e, 7) with t < 30 written, e < 2
    t, e = c[..., 2], c[..., 3]
    torch.testing.assert_close(c[..., 0], t + 0.5)
    torch.testing.assert_close(c[..., 1], e)
    assert bool((c[..., 4] == 7.0).all()) and bool(((t >= 0) & (t < 30) & (t == t.round())).all())
    assert set(e.unique().tolist()) == {0.0, 1.0} and len(t.unique()) > 10
    # the same generator state draws the same candidates (and the same transitions)
    again = _filled_buffer(30, hook=SubgoalCandidateSampler(per_sample=3))
    again.load_state_dict(state)
    batch2 = again.sample(64)
    torch.testing.assert_close(batch2.subgoal_candidates, c)
    torch.testing.assert_close(batch2.indices, batch.indices)


def test_hook_after_the_ring_wraps_reads_every_row_and_runs_after_her():
    relabel = HindsightRelabeler(lambda a, d, info: -np.ones(len(a), np.float32), "future", 1.0)
    buffer = _filled_buffer(57, num_envs=1, capacity=20, hook=_chain_hooks(relabel, SubgoalCandidateSampler(2)))
    batch = buffer.sample(500)
    t = batch.subgoal_candidates[..., 2]
    assert set(t.unique().tolist()) == set(range(37, 57))                     # the 20 rows still stored
    # HER ran first: every desired goal is an achieved goal of the episode (never the stored 9.0)
    assert not bool((batch.obs["desired_goal"] == 9.0).any())


# --------------------------------------------------------------------------------------
# The agent: spaces, one update, checkpoints
# --------------------------------------------------------------------------------------


def test_agent_refuses_non_goal_spaces_and_plain_batches():
    with pytest.raises(ConfigError, match="Dict observations"):
        RIS(RISConfig(), gym.spaces.Box(-1, 1, (4,)), ACTIONS)
    with pytest.raises(ConfigError, match="Box"):
        RIS(RISConfig(), GOAL_SPACE, gym.spaces.Discrete(3))
    with pytest.raises(ConfigError, match="awr_lambda"):
        RISConfig(awr_lambda=0.0)
    agent = RIS(RISConfig(**SMALL), GOAL_SPACE, ACTIONS)
    plain = _filled_buffer(20).sample(8)
    with pytest.raises(TypeError, match="SubgoalTransitions"):
        agent.update(plain)


def test_update_and_state_dict_round_trip_with_weights_only(tmp_path):
    cfg = RISConfig(**SMALL, candidates_per_sample=2, subgoal_samples=4, random_steps=5)
    agent = RIS(cfg, GOAL_SPACE, ACTIONS, seed=0)
    buffer = _filled_buffer(40, hook=agent.make_sample_hook())
    obs = {k: np.zeros((3, *s.shape), np.float32) for k, s in GOAL_SPACE.spaces.items()}
    agent.set_env_steps(0)
    random_actions = agent.predict(obs, deterministic=False)
    agent.set_env_steps(5)
    assert random_actions.shape == (3, 2) and np.all(np.abs(agent.predict(obs, deterministic=True)) <= 2.0)
    for _ in range(3):
        metrics = agent.update(buffer.sample(16))
    assert set(metrics) >= {"critic_loss", "actor_loss", "subgoal_loss", "kl", "adv_mean"}
    assert all(math.isfinite(float(v)) for v in metrics.values())

    torch.save(agent.state_dict(), tmp_path / "agent.pt")
    other = RIS(cfg, GOAL_SPACE, ACTIONS, seed=9)
    other.load_state_dict(torch.load(tmp_path / "agent.pt", weights_only=True))
    batch = buffer.sample(16)
    a, b = agent.update(batch), other.update(batch)
    for key in a:
        torch.testing.assert_close(a[key], b[key])
    np.testing.assert_array_equal(agent.predict(obs, deterministic=False), other.predict(obs, deterministic=False))


# --------------------------------------------------------------------------------------
# Through the online loop: HER + RIS's hook, exact resume
# --------------------------------------------------------------------------------------


def _metrics(run_dir):
    records = [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
    for r in records:
        r.pop("time", None)
        r.pop("sps", None)
    return records


def _run_data(env_id: str, kwargs: dict, total: int) -> dict:
    return {"env": {"id": env_id, "num_envs": 2, "kwargs": kwargs}, "seed": 1,
            "agent": {"name": "ris", **SMALL, "subgoal_samples": 4, "random_steps": 100},
            "train": {"total_steps": total, "learning_starts": 100, "batch_size": 32, "eval_every": total // 2,
                      "eval_episodes": 2, "checkpoint_every": total // 2,
                      "replay": {"capacity": 5000, "her": {"strategy": "future", "relabel_ratio": 0.8}}},
            "log": {"progress": False, "tensorboard": False, "plot": False, "log_every": 100}}


def test_point_goal_run_with_her_resumes_exactly(tmp_path):
    data = _run_data("rlkit/PointGoal-v0", {"reward_type": "sparse"}, 400)
    full = tmp_path / "full"
    summary = train_online(build_run_config(data), full)
    assert summary["steps"] == 400 and np.isfinite(summary["final_eval"]["return_mean"])
    trains = [r for r in _metrics(full) if r["kind"] == "train" and r["updates"] > 0]
    assert trains and all(math.isfinite(r["subgoal_loss"]) and math.isfinite(r["kl"]) for r in trains)
    part = tmp_path / "part"
    train_online(build_run_config(data, ["train.total_steps=200"]), part)
    train_online(build_run_config(data), part, resume=True)
    assert _metrics(part) == _metrics(full)
    a, b = load_checkpoint(full / LATEST)["agent"], load_checkpoint(part / LATEST)["agent"]
    for name in ("actor", "subgoal_net", "critic"):
        for key, value in a[name].items():
            torch.testing.assert_close(b[name][key], value)


def test_point_maze_smoke_run(tmp_path):
    data = _run_data("rlkit/PointMazeU-v0", {}, 300)
    summary = train_online(build_run_config(data), tmp_path / "run")
    assert summary["steps"] == 300 and "success_rate" in summary["final_eval"]
    assert any(r["kind"] == "train" and r["updates"] > 0 for r in _metrics(tmp_path / "run"))


# --------------------------------------------------------------------------------------
# Distance rewards: what the critic's target is built from, and the configs that would break it
# --------------------------------------------------------------------------------------

GAMMA, Q_NEXT, Q_NOW = 0.99, 10.0, 100.0


def _constant_critics(agent: RIS) -> None:
    """Qbar = Q_NEXT and Q = Q_NOW everywhere (last layers: zero weights, constant bias), so a one-sample batch's
    critic loss is (Q_NOW - y)^2 and gives the target y back."""
    with torch.no_grad():
        for critic, value in ((agent.critic_target, Q_NEXT), (agent.critic, Q_NOW)):
            critic.layers[-1].weight.zero_()
            critic.layers[-1].bias.fill_(value)


def _one_sample_batch(reward: float, discount: float) -> SubgoalTransitions:
    g = torch.Generator().manual_seed(0)
    obs = {"observation": torch.rand(1, 3, generator=g), "achieved_goal": torch.rand(1, 2, generator=g),
           "desired_goal": torch.rand(1, 2, generator=g)}
    return SubgoalTransitions(obs=obs, actions=torch.zeros(1, 2), rewards=torch.tensor([reward]),
                              next_obs={k: v + 0.1 for k, v in obs.items()}, discounts=torch.tensor([discount]),
                              weights=torch.ones(1), indices=torch.zeros(1, dtype=torch.long),
                              subgoal_candidates=torch.rand(1, 1, 5, generator=g))


def _critic_target(reward: float, discount: float, **cfg) -> float:
    agent = RIS(RISConfig(**SMALL, gamma=GAMMA, **cfg), GOAL_SPACE, ACTIONS, seed=0)
    _constant_critics(agent)
    loss = float(agent.update(_one_sample_batch(reward, discount))["critic_loss"])
    return Q_NOW - math.sqrt(loss)


@pytest.mark.parametrize("reward, discount, expected", [
    (0.0, GAMMA, -1.0),                  # the goal reached: terminal, although the env did not end the episode
    (-1.0, GAMMA, -1.0 + GAMMA * Q_NEXT),  # not reached: -1 and bootstrap
    (0.0, 0.0, -1.0),                    # reached and the env ended it: terminal
    (-1.0, 0.0, -1.0),                   # an env termination the goal did not cause stays one (see the docstring)
])
def test_distance_rewards_replace_the_stored_flags_by_goal_reached(reward, discount, expected):
    # ref train_ant.py: reward = -1 everywhere, done = (the next state reached the goal); the batch's own
    # 0/-1 reward says where (HER recomputed it for relabelled goals)
    assert _critic_target(reward, discount) == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize("reward, discount", [(0.0, GAMMA), (-1.0, GAMMA), (-2.9701, GAMMA ** 3), (-0.37, 0.0)])
def test_without_distance_rewards_the_target_is_the_batchs_reward_and_discount(reward, discount):
    # the general case (any n-step sum, any reward): y = R + d * min Qbar, no entropy term
    expected = reward + discount * Q_NEXT
    assert _critic_target(reward, discount, distance_rewards=False) == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize("reward", [-2.9701, -0.37])
def test_distance_rewards_refuse_a_batch_of_n_step_sums_or_dense_rewards(reward):
    # before: -2.9701 (three missed steps at 0.99) silently became -1 and a dense -0.37 never read as success
    with pytest.raises(ConfigError, match="rewards other than 0 and -1"):
        _critic_target(reward, GAMMA ** 3)


@pytest.mark.parametrize("env_id, kwargs, overrides, words", [
    ("rlkit/PointGoal-v0", {"reward_type": "sparse"}, ["train.replay.n_step=3"], "n_step is 3"),
    ("rlkit/PointMazeU-v0", {}, ["train.replay.n_step=2"], "n_step is 2"),
    ("rlkit/PointGoal-v0", {"reward_type": "dense"}, [], "reward_type is 'dense'"),
    ("rlkit/PointGoal-v0", {}, [], "reward_type is 'dense'"),             # the env's default reward is dense
    ("rlkit/PointMazeU-v0", {"reward_type": "dense"}, [], "reward_type is 'dense'"),
])
def test_distance_rewards_refuse_n_step_and_dense_rewards_when_the_run_is_built(env_id, kwargs, overrides, words):
    with pytest.raises(ConfigError, match=words) as info:
        build_run_config(_run_data(env_id, kwargs, 400), overrides)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("env_id, kwargs, overrides", [
    ("rlkit/PointGoal-v0", {"reward_type": "sparse"}, []),
    ("rlkit/PointMazeU-v0", {}, []),                                      # sparse by default
    ("rlkit/PointGoal-v0", {}, ["agent.distance_rewards=false", "train.replay.n_step=3"]),
])
def test_distance_rewards_accept_one_step_sparse_runs_and_anything_without_them(env_id, kwargs, overrides):
    build_run_config(_run_data(env_id, kwargs, 400), overrides)

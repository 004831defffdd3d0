"""The sac-her bench suite: SB3 gets exactly the rlkit config's hyperparameters, both sides are evaluated on the
same envs, and the suite runs end to end on tiny budgets."""

import json

import numpy as np
import pytest

from rlkit.bench import SMOKE
from rlkit.bench.suites.sac_her import SAC_HER_CONFIGS, _sb3_her_hyper, _SB3Actor
from rlkit.cli import main
from rlkit.config import configs_dir, load_config


@pytest.mark.parametrize("env_id", sorted(SAC_HER_CONFIGS))
def test_sb3_gets_the_configs_hyperparameters(env_id):
    cfg = load_config(str(configs_dir() / SAC_HER_CONFIGS[env_id]), [])
    assert cfg.env.id == env_id and cfg.env.num_envs == 1
    hyper = _sb3_her_hyper(cfg)
    agent, train = cfg.agent, cfg.train
    assert hyper["learning_rate"] == agent.actor_lr == agent.critic_lr == agent.alpha_lr
    assert (hyper["gamma"], hyper["tau"], hyper["batch_size"]) == (agent.gamma, agent.tau, train.batch_size)
    assert hyper["learning_starts"] == train.learning_starts == agent.random_steps
    assert (hyper["train_freq"], hyper["gradient_steps"]) == (train.train_every, train.gradient_steps) == (1, 1)
    assert hyper["buffer_size"] == train.replay.capacity
    assert hyper["policy_kwargs"]["net_arch"] == agent.actor_hidden == agent.critic_hidden
    assert hyper["replay_buffer_kwargs"] == {"n_sampled_goal": 4, "goal_selection_strategy": train.replay.her.strategy}
    assert train.replay.her.relabel_ratio == pytest.approx(0.8)
    assert hyper["ent_coef"] == "auto_1.0" and hyper["target_entropy"] == "auto"


def test_sb3_hyperparameters_refuse_what_sb3_cannot_express():
    config = str(configs_dir() / SAC_HER_CONFIGS["rlkit/PointMazeU-v0"])
    for override in ("agent.critic_lr=3e-4", "agent.critic_hidden=[64,64]", "train.replay.her.relabel_ratio=0.7",
                     "agent.random_steps=0", "train.replay.n_step=3", "train.replay.her.replay_goal_fraction=0.5"):
        with pytest.raises(ValueError):
            _sb3_her_hyper(load_config(config, [override]))


def test_sb3_actor_acts_on_dict_observation_batches():
    """The SB3 side takes the agent contract's step record, as rlkit's evaluate builds it, and gives SB3's predict the
    observations back as host arrays."""
    from rlkit.contract.agent import StepRecord

    seen = {}

    class Model:
        def predict(self, obs, deterministic):
            assert deterministic
            seen.update(obs)
            return np.zeros((len(obs["observation"]), 2), np.float32), None

    rng = np.random.default_rng(0)
    obs = {"observation": rng.standard_normal((3, 4)), "desired_goal": rng.standard_normal((3, 2)).astype(np.float32)}
    actor = _SB3Actor(Model())
    assert actor.act(StepRecord.from_arrays(obs, actor.device), explore=False).shape == (3, 2)
    assert seen.keys() == obs.keys()
    for key, value in obs.items():
        assert isinstance(seen[key], np.ndarray) and seen[key].dtype == value.dtype
        np.testing.assert_array_equal(seen[key], value)


@pytest.mark.slow  # 20 s on 2 idle cores, ~45 s loaded (two short learning runs and a lockstep run per env)
def test_sac_her_suite_runs_end_to_end(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["bench", "sac-her", "--seeds", "1", "--quick", "--out", str(out), "--no-docs"]) == 0
    assert all(line.startswith(f"[{SMOKE}] ") for line in capsys.readouterr().out.splitlines())
    result = json.loads((out / "sac-her.json").read_text())
    names = [f["name"] for f in result["figures"]]
    assert any(n.startswith("PointMazeU: success rate at") for n in names)
    assert any(n.startswith("FetchPush: success rate at") for n in names)
    rates = [f for f in result["figures"] if f["unit"] == "steps/s"]
    assert len(rates) == 4 and all("ratio_median" in f for f in rates)
    successes = [v for f in result["figures"] if f["unit"] == "%" for v in f["rlkit"] + f["reference"]]
    assert successes and all(0.0 <= v <= 100.0 for v in successes)


@pytest.mark.slow  # ~40 s: two processes, each a short rlkit run, an SB3 run and a lockstep run
def test_sac_her_fetch_suite_runs_seeds_in_processes_and_merges_them(tmp_path, capsys):
    from rlkit.bench import LONG_SUITES

    assert "sac-her-fetch" in LONG_SUITES  # not part of `rlkit bench all`
    out = tmp_path / "out"
    assert main(["bench", "sac-her-fetch", "--seeds", "2", "--quick", "--out", str(out), "--no-docs"]) == 0
    result = json.loads((out / "sac-her-fetch.json").read_text())
    assert result["figures"] and all(n.startswith("FetchPush: ") for n in (f["name"] for f in result["figures"]))
    assert all(len(f["rlkit"]) == 2 and len(f["reference"]) == 2 for f in result["figures"])
    rates = [f for f in result["figures"] if f["unit"] == "steps/s"]
    assert rates and all(v > 0 for f in rates for v in f["rlkit"] + f["reference"])
    assert sorted(p.name for p in out.glob("seed*")) == ["seed0", "seed1"]


@pytest.mark.parametrize("capacity, num_envs, steps, episode", [(10_000, 1, 3_000, 300), (997, 3, 3_000, 37),
                                                                 (500, 2, 1_234, 50), (64, 1, 64, 10)])
def test_her_episode_ends_equal_the_buffers(capacity, num_envs, steps, episode):
    """ReplayBuffer.episode_end_rows (binary search, the sac-her profile's speedup) gives what a row-by-row
    walk gives: ring wrapped or not, several envs, terminations mid-episode, the newest row done or not."""
    import gymnasium as gym
    import torch

    from rlkit.experience.replay import ReplayBuffer

    def walked(buffer, rows, envs):  # the reference: step forward until the newest row or past a done row
        done = buffer._terminated.numpy() | buffer._truncated.numpy()
        newest, out = (buffer._pos - 1) % buffer.rows_per_env, []
        for r, e in zip(rows.tolist(), envs.tolist()):
            while r != newest and not done[r, e]:
                r = (r + 1) % buffer.rows_per_env
            out.append(r if r == newest else (r + 1) % buffer.rows_per_env)
        return torch.tensor(out)

    box = gym.spaces.Box(-1, 1, (2,))
    space = gym.spaces.Dict({"observation": box, "achieved_goal": box, "desired_goal": box})
    buffer = ReplayBuffer.from_spaces(space, box, capacity=capacity, num_envs=num_envs, gamma=0.98, seed=0)
    rng, t = np.random.default_rng(capacity), np.zeros(num_envs, int)
    for step in range(steps):
        t += 1
        terminated = rng.random(num_envs) < 0.01
        truncated = (t >= episode) & ~terminated
        obs = {k: rng.standard_normal((num_envs, 2)).astype(np.float32) for k in space.spaces}
        buffer.add(obs, rng.uniform(-1, 1, (num_envs, 2)).astype(np.float32), -np.ones(num_envs, np.float32),
                   terminated, truncated, np.zeros(num_envs, bool))
        t[terminated | truncated] = 0
        if step > 0 and (step % 97 == 0 or step == steps - 1):
            for _ in range(3):
                indices = buffer.sample(256).indices
                rows, envs = indices // num_envs, indices % num_envs
                assert torch.equal(buffer.episode_end_rows(rows, envs), walked(buffer, rows, envs))

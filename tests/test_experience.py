"""Experience sources and the loop pieces they plug into: Dict observations end to end (replay, networks,
checkpoints, exact resume, evaluation) with DQN and SAC, the sample-time hook, fixed-length sequences,
the read-only dataset source, and the collector's episode bookkeeping."""

import dataclasses
import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

import rlkit.envs  # noqa: F401  (registers rlkit/PointGoal-v0)
from rlkit.runfiles.checkpoint import load_checkpoint
from rlkit.training.collector import Collector
from rlkit.config import build_run_config
from rlkit.experience.sources import DatasetSource, ExperienceSource, fill_replay
from rlkit.training.build import build_agent, run_spaces
from rlkit.training.loops import train_online
from rlkit.experience.replay import ReplayBuffer, SampleContext, Transitions
from rlkit.runfiles.runs import LATEST
from rlkit.experience.sequences import Sequences, SequenceBuffer

DICT_SPACE = gym.spaces.Dict({"observation": gym.spaces.Box(-1, 1, (2,), np.float32),
                              "desired_goal": gym.spaces.Box(-1, 1, (3,), np.float32)})
ACTIONS = gym.spaces.Discrete(2)


def _metrics(run_dir):
    records = [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
    for r in records:
        r.pop("time", None)
        r.pop("sps", None)
    return records


def _dict_obs(t, n=1):
    return {"observation": np.full((n, 2), t, np.float32), "desired_goal": np.full((n, 3), -t, np.float32)}


# --------------------------------------------------------------------------------------
# Dict observations in the replay buffer
# --------------------------------------------------------------------------------------


def test_replay_stores_and_samples_dict_observations_with_true_next_obs():
    buffer = ReplayBuffer.from_spaces(DICT_SPACE, ACTIONS, capacity=64, num_envs=1, gamma=0.9, seed=0)
    assert isinstance(buffer, ExperienceSource)
    autoreset = np.zeros(1, bool)
    for t in range(20):  # episodes of 5 steps, truncated: each bootstraps from its final observation
        truncated = np.array([t % 6 == 4])
        buffer.add(_dict_obs(t), np.array([t % 2]), np.array([1.0]), np.zeros(1, bool), truncated, autoreset)
        autoreset = truncated
    batch = buffer.sample(32)
    assert set(batch.obs) == {"observation", "desired_goal"}
    assert batch.obs["observation"].shape == (32, 2) and batch.obs["desired_goal"].shape == (32, 3)
    t = batch.obs["observation"][:, 0]
    assert torch.all(batch.next_obs["observation"][:, 0] == t + 1)  # the next row, also across truncations
    assert torch.all(batch.next_obs["desired_goal"][:, 0] == -(t + 1))
    assert not torch.any(t % 6 == 5)  # autoreset rows (final observations) are never sampled as starts


def test_dict_replay_state_dict_round_trip_samples_the_same():
    buffer = ReplayBuffer.from_spaces(DICT_SPACE, ACTIONS, capacity=32, num_envs=2, seed=3)
    for t in range(10):
        buffer.add(_dict_obs(t, 2), np.zeros(2, np.int64), np.ones(2), np.zeros(2, bool), np.zeros(2, bool),
                   np.zeros(2, bool))
    state = buffer.state_dict()
    assert {"obs.observation", "obs.desired_goal"} <= set(state)
    copy = ReplayBuffer.from_spaces(DICT_SPACE, ACTIONS, capacity=32, num_envs=2, seed=99)
    copy.load_state_dict(state)
    a, b = buffer.sample(8), copy.sample(8)
    for key in a.obs:
        torch.testing.assert_close(a.obs[key], b.obs[key])


def test_dict_replay_rejects_wrong_keys_and_shapes():
    buffer = ReplayBuffer.from_spaces(DICT_SPACE, ACTIONS, capacity=32, num_envs=1)
    with pytest.raises(ValueError, match="keys"):
        buffer.add({"observation": np.zeros((1, 2))}, np.zeros(1), np.zeros(1), np.zeros(1, bool),
                   np.zeros(1, bool), np.zeros(1, bool))
    with pytest.raises(ValueError, match="desired_goal"):
        buffer.add({"observation": np.zeros((1, 2)), "desired_goal": np.zeros((1, 4))}, np.zeros(1),
                   np.zeros(1), np.zeros(1, bool), np.zeros(1, bool), np.zeros(1, bool))


def test_dict_image_keys_keep_one_frame_storage():
    space = gym.spaces.Dict({"pixels": gym.spaces.Box(0, 255, (4, 8, 8), np.uint8),
                             "state": gym.spaces.Box(-1, 1, (3,), np.float32)})
    buffer = ReplayBuffer.from_spaces(space, ACTIONS, capacity=40, num_envs=1, frame_stack=4)
    assert buffer._obs["pixels"].shape == (40, 1, 8, 8)  # newest frame only
    frames = np.zeros((1, 4, 8, 8), np.uint8)
    for t in range(12):
        frames = np.concatenate([frames[:, 1:], np.full((1, 1, 8, 8), t + 1, np.uint8)], axis=1)
        buffer.add({"pixels": frames, "state": np.full((1, 3), t, np.float32)}, np.zeros(1), np.zeros(1),
                   np.zeros(1, bool), np.zeros(1, bool), np.zeros(1, bool))
    batch = buffer.sample(16)
    newest = batch.obs["pixels"][:, -1, 0, 0].long()
    assert torch.all(batch.obs["state"][:, 0].long() + 1 == newest)
    stacks = batch.obs["pixels"][:, :, 0, 0].long()
    expected = (newest[:, None] + torch.arange(-3, 1)).clamp(min=1)  # padding repeats the first frame
    assert torch.equal(stacks, expected)


# --------------------------------------------------------------------------------------
# The sample-time hook (HER relabels goals there)
# --------------------------------------------------------------------------------------


def test_sample_hook_rewrites_batches_toy_example():
    """The docstring's toy hook: reward = first feature of the next observation, computed at sample time."""
    seen = {}

    def reward_from_next_obs(batch: Transitions, ctx: SampleContext) -> Transitions:
        seen["ctx"] = ctx
        return dataclasses.replace(batch, rewards=batch.next_obs[:, 0].float())

    space = gym.spaces.Box(-100, 100, (1,), np.float32)
    buffer = ReplayBuffer.from_spaces(space, ACTIONS, 64, 1, sample_hook=reward_from_next_obs, seed=1)
    for t in range(30):
        buffer.add(np.array([[t]], np.float32), np.zeros(1), np.zeros(1), np.zeros(1, bool), np.zeros(1, bool),
                   np.zeros(1, bool))
    batch = buffer.sample(10)
    torch.testing.assert_close(batch.rewards, batch.obs[:, 0] + 1)
    ctx = seen["ctx"]
    torch.testing.assert_close(buffer.obs_at(ctx.rows, ctx.envs), batch.obs)


def test_episode_end_rows_for_her_future_goals():
    space = gym.spaces.Box(-100, 100, (1,), np.float32)
    buffer = ReplayBuffer.from_spaces(space, ACTIONS, 64, 1)
    autoreset = np.zeros(1, bool)
    for t in range(13):  # episode 0: rows 0-3 (+ final obs row 4); episode 1: rows 5-...(running)
        done = np.array([t == 3])
        buffer.add(np.array([[t]], np.float32), np.zeros(1), np.zeros(1), done, np.zeros(1, bool), autoreset)
        autoreset = done
    ends = buffer.episode_end_rows(torch.tensor([0, 2, 3, 5, 9]), torch.zeros(5, dtype=torch.int64))
    assert ends.tolist() == [4, 4, 4, 12, 12]


# --------------------------------------------------------------------------------------
# Fixed-length sequences
# --------------------------------------------------------------------------------------


def _episode(length, offset=0.0, terminated=True):
    obs = np.arange(length + 1, dtype=np.float32)[:, None] + offset
    return type("E", (), {"observations": obs, "actions": np.zeros((length, 1), np.float32),
                          "rewards": np.ones(length, np.float32),
                          "terminations": np.eye(1, length, length - 1, dtype=bool)[0] if terminated else np.zeros(length, bool),
                          "truncations": np.zeros(length, bool)})()


def test_sequences_left_pad_with_masks_and_exact_returns_to_go():
    space, actions = gym.spaces.Box(-100, 100, (1,), np.float32), gym.spaces.Box(-1, 1, (1,), np.float32)
    buffer = SequenceBuffer.from_episodes([_episode(3), _episode(10, offset=50)], space, actions, length=5, seed=0)
    batch = buffer.sample(256)
    assert isinstance(batch, Sequences) and batch.obs.shape == (256, 5, 1) and batch.mask.shape == (256, 5)
    assert torch.all(batch.mask[:, -1])  # the newest real step sits at the last position
    # padding is on the left, zero-filled, and masked
    real = batch.mask.sum(1)
    for b in range(256):
        assert not batch.mask[b, : 5 - real[b]].any() and torch.all(batch.obs[b, : 5 - real[b]] == 0)
    # consecutive steps of one episode; returns-to-go = steps left (reward 1 per step)
    first = batch.obs[:, -1, 0]
    long_episode = first >= 50
    episode_length = torch.where(long_episode, 10, 3)
    t = torch.where(long_episode, first - 50, first)
    assert torch.all(batch.timesteps[:, -1] == t.long())
    torch.testing.assert_close(batch.returns_to_go[:, -1], (episode_length - t).float())
    assert batch.terminated[:, -1].sum() == (t == episode_length - 1).sum()
    assert (real < 5).any() and (real == 5).any()


def test_sequence_buffer_online_add_keeps_finished_episodes_and_resumes_exactly():
    space, actions = gym.spaces.Box(-100, 100, (1,), np.float32), gym.spaces.Discrete(2)
    buffer = SequenceBuffer(space, actions, capacity=40, length=4, num_envs=2, seed=5)
    autoreset = np.zeros(2, bool)
    for t in range(30):
        done = np.array([t % 7 == 6, t % 5 == 4])
        buffer.add(np.full((2, 1), t, np.float32), np.array([0, 1]), np.ones(2), done, np.zeros(2, bool), autoreset)
        autoreset = done
    assert len(buffer) > 0 and len(buffer) <= 40
    copy = SequenceBuffer(space, actions, capacity=40, length=4, num_envs=2, seed=0)
    copy.load_state_dict(buffer.state_dict())
    for a, b in zip(dataclasses.astuple(buffer.sample(16)), dataclasses.astuple(copy.sample(16))):
        torch.testing.assert_close(a, b)
    # the in-progress episodes continue after the round trip
    for source in (buffer, copy):
        source.add(np.full((2, 1), 30, np.float32), np.array([0, 1]), np.ones(2), np.ones(2, bool),
                   np.zeros(2, bool), np.zeros(2, bool))
    assert len(buffer) == len(copy)


# --------------------------------------------------------------------------------------
# The read-only dataset source
# --------------------------------------------------------------------------------------


def test_dataset_source_fills_the_replay_layout_and_is_read_only():
    space, actions = gym.spaces.Box(-100, 100, (1,), np.float32), gym.spaces.Box(-1, 1, (1,), np.float32)
    episodes = [_episode(4), _episode(6, offset=50, terminated=False)]  # the second one is cut: truncated
    store = ReplayBuffer.from_spaces(space, actions, capacity=5 + 7, num_envs=1, gamma=0.5, seed=0)
    fill_replay(store, episodes)
    source = DatasetSource(store, {"dataset_episodes": 2, "dataset_steps": 10})
    assert source.num_sampleable() == 10
    batch = source.sample(200)
    torch.testing.assert_close(batch.next_obs, batch.obs + 1)  # true next observation, final ones included
    t = batch.obs[:, 0]
    terminal = t == 3
    assert torch.all(batch.discounts[terminal] == 0) and torch.all(batch.discounts[~terminal] == 0.5)
    with pytest.raises(TypeError, match="read-only"):
        source.add()
    other = DatasetSource(store, {"dataset_episodes": 3, "dataset_steps": 10})
    with pytest.raises(ValueError, match="another dataset"):
        other.load_state_dict(source.state_dict())


# --------------------------------------------------------------------------------------
# Collector
# --------------------------------------------------------------------------------------


class _FirstAction:
    """Always action 0; records the step records it was given."""

    device = torch.device("cpu")

    def __init__(self, space):
        self.space, self.starts, self.prev_rewards = space, [], []

    def act(self, step, explore, epsilon=None):
        self.starts.append(step.episode_start.numpy().copy())
        self.prev_rewards.append(step.prev_reward.numpy().copy())
        return np.stack([self.space.sample() * 0 for _ in range(step.size)])


def test_collector_marks_episode_starts_and_counts_real_steps():
    envs = gym.make_vec("CartPole-v1", num_envs=2, vectorization_mode="sync")
    agent = _FirstAction(envs.single_action_space)  # always push left: episodes end within ~10 steps
    collector = Collector(envs, seed=0)
    real, ended, autoresets = 0, [], []
    for _ in range(60):
        step = collector.step(agent, explore=True)
        real += step.real_steps
        ended += step.episodes
        autoresets.append(step.autoreset)
        assert step.real_steps == int((~step.autoreset).sum())
    assert agent.starts[0].all()  # the first observations start episodes
    starts, prev = np.array(agent.starts), np.array(agent.prev_rewards)
    assert (prev[starts] == 0).all() and (prev[~starts] == 1).all()  # CartPole pays 1 per step; 0 at a start
    assert len(ended) >= 4
    # the step after an autoreset step (which ignored the action and reset) acts on a first observation
    for i in range(1, 60):
        assert np.array_equal(agent.starts[i], autoresets[i - 1])
    assert real == sum(length for _, _, length in ended) + int(collector.tracker.lengths.sum())
    envs.close()


# --------------------------------------------------------------------------------------
# Dict observations through the online loop: DQN and SAC train, resume exactly, evaluate
# --------------------------------------------------------------------------------------


def _point_goal_data(agent: dict, env_id: str) -> dict:
    return {"env": {"id": env_id, "num_envs": 2}, "agent": agent, "seed": 1,
            "train": {"total_steps": 600, "learning_starts": 100, "batch_size": 32, "eval_every": 300,
                      "eval_episodes": 4, "checkpoint_every": 300, "replay": {"capacity": 2000}},
            "log": {"progress": False, "tensorboard": False, "plot": False, "log_every": 100}}


@pytest.mark.parametrize("agent, env_id", [
    ({"name": "dqn", "hidden": [32], "eps_decay_steps": 300}, "rlkit/PointGoalDiscrete-v0"),
    ({"name": "sac", "actor_hidden": [32, 32], "critic_hidden": [32, 32]}, "rlkit/PointGoal-v0"),
    ({"name": "mpo", "policy_hidden": [32, 32], "critic_hidden": [32, 32], "num_samples": 4}, "rlkit/PointGoal-v0"),
])
def test_dict_observation_env_trains_and_resumes_exactly(tmp_path, agent, env_id):
    from rlkit.agents import AGENTS

    if agent["name"] not in AGENTS:
        pytest.skip(f"agent {agent['name']} is not registered")
    fields = {f.name for f in dataclasses.fields(AGENTS[agent["name"]][0])}
    agent = {k: v for k, v in agent.items() if k in fields}
    data = _point_goal_data(agent, env_id)
    full = tmp_path / "full"
    summary = train_online(build_run_config(data), full)
    assert summary["steps"] == 600 and np.isfinite(summary["final_eval"]["return_mean"])
    assert any(r["kind"] == "train" and r["updates"] > 0 for r in _metrics(full))
    part = tmp_path / "part"
    train_online(build_run_config(data, ["train.total_steps=300"]), part)
    train_online(build_run_config(data), part, resume=True)
    assert _metrics(part) == _metrics(full)
    a, b = load_checkpoint(full / LATEST)["agent"], load_checkpoint(part / LATEST)["agent"]
    acting = [n for n, role in build_agent(build_run_config(data), *run_spaces(build_run_config(data)),
                                              torch.device("cpu")).parts.roles.items() if role == "acts"]
    for name in acting:
        for key, value in a[name].items():
            torch.testing.assert_close(b[name][key], value)


def test_goal_env_evaluation_reports_success_rate_in_metrics_and_the_curve(tmp_path):
    """info["is_success"] at an episode's last step becomes the evaluation's success_rate: metrics.jsonl,
    TensorBoard (every numeric eval value) and a third panel of the learning curve."""
    from rlkit.runfiles.logger import learning_curve_figure

    data = _point_goal_data({"name": "dqn", "hidden": [16], "eps_decay_steps": 100}, "rlkit/PointGoalDiscrete-v0")
    data["train"].update(total_steps=200, eval_every=100, checkpoint_every=0)
    train_online(build_run_config(data), tmp_path / "run")
    evals = [r for r in _metrics(tmp_path / "run") if r["kind"] == "eval"]
    assert len(evals) == 3 and all(0.0 <= r["success_rate"] <= 1.0 for r in evals)  # steps 0, 100, 200
    fig = learning_curve_figure([tmp_path / "run"])
    assert len(fig.axes) == 3 and fig.axes[2].get_ylabel() == "evaluation success rate"


def test_eval_env_kwargs_apply_to_evaluation_only(tmp_path):
    """train.eval_env_kwargs: the goal mazes' far-end test goal in evaluation while training samples goals;
    here, the sparse reward in evaluation (integer returns) while training on the dense one."""
    data = _point_goal_data({"name": "dqn", "hidden": [16], "eps_decay_steps": 100}, "rlkit/PointGoalDiscrete-v0")
    data["train"].update(total_steps=200, eval_every=100, checkpoint_every=0, eval_env_kwargs={"reward_type": "sparse"})
    train_online(build_run_config(data), tmp_path / "run")
    records = _metrics(tmp_path / "run")
    evals = [r for r in records if r["kind"] == "eval"]
    episodes = [r for r in records if r["kind"] == "episode"]
    assert evals and all(float(ret).is_integer() for r in evals for ret in r["returns"])
    assert any(not float(r["return"]).is_integer() for r in episodes)  # training: dense, fractional returns
    bad = build_run_config(data, ["train.eval_env_kwargs={no_such_kwarg: 1}"])
    with pytest.raises(Exception, match="train.eval_env_kwargs"):
        train_online(bad, tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


def test_checkpoint_from_before_the_restructure_still_resumes(tmp_path):
    """Checkpoints written before the run state existed kept the env side as loose loop entries and
    ``env_replay`` at the top level; such runs resume, exactly."""
    from rlkit.runfiles.checkpoint import save_checkpoint

    data = {"env": {"id": "CartPole-v1"}, "agent": {"name": "dqn", "hidden": [16], "eps_decay_steps": 200},
            "seed": 3, "train": {"total_steps": 400, "learning_starts": 100, "batch_size": 16, "eval_every": 200,
                                 "eval_episodes": 2, "checkpoint_every": 200},
            "log": {"progress": False, "tensorboard": False, "plot": False, "log_every": 100}}
    full, part = tmp_path / "full", tmp_path / "part"
    train_online(build_run_config(data), full)
    train_online(build_run_config(data, ["train.total_steps=200"]), part)
    state = load_checkpoint(part / LATEST)
    collector = state.pop("collector")
    state["loop"].update(obs=collector["obs"], autoreset=collector["autoreset"],
                         episode_returns=collector["episode_returns"], episode_lengths=collector["episode_lengths"])
    state["env_replay"] = collector["env_replay"]  # the old layout (no episode_start either)
    save_checkpoint(part / LATEST, state)
    train_online(build_run_config(data), part, resume=True)
    assert _metrics(part) == _metrics(full)


def test_evaluation_seeds_give_each_run_and_each_evaluation_its_own_episodes(tmp_path, monkeypatch):
    """A vector env seeds sub-env i with seed + i, so offset seeds (the old seed + 100000 + step) shared 7 of 8
    sub-env streams between runs of seeds 0 and 1. evaluation_seed hashes (run seed, step): no shared episodes
    between neighbouring seeds or between evaluations, the same ones when repeated; the loop uses it."""
    import rlkit.training.loops
    from rlkit.training.evaluation import evaluation_seed

    envs = gym.make_vec("rlkit/PointGoal-v0", num_envs=8, vectorization_mode="sync")
    def first_observations(seed):
        obs, _ = envs.reset(seed=seed)
        return {np.concatenate([obs[k][i] for k in sorted(obs)]).tobytes() for i in range(8)}
    assert len(first_observations(100_000 + 2000) & first_observations(100_001 + 2000)) == 7  # the old scheme
    for a, b in [((0, 2000), (1, 2000)), ((0, 2000), (0, 4000)), ((1, 2000), (2, 2000))]:
        assert not first_observations(evaluation_seed(*a)) & first_observations(evaluation_seed(*b))
    envs.close()
    assert evaluation_seed(3, 500) == evaluation_seed(3, 500) and 0 <= evaluation_seed(3, 500) < 2**31
    assert len({evaluation_seed(s, k) for s in range(10) for k in range(0, 10_000, 1000)}) == 100

    seeds = []
    real = rlkit.training.loops.evaluate
    monkeypatch.setattr(rlkit.training.loops, "evaluate", lambda *a, **kw: seeds.append(kw["seed"]) or real(*a, **kw))
    data = _point_goal_data({"name": "dqn", "hidden": [16], "eps_decay_steps": 100}, "rlkit/PointGoalDiscrete-v0")
    data["train"].update(total_steps=200, eval_every=100, checkpoint_every=0)
    data["seed"] = 4
    train_online(build_run_config(data), tmp_path / "run")
    assert seeds == [evaluation_seed(4, 0), evaluation_seed(4, 100), evaluation_seed(4, 200)]

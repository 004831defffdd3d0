"""Hindsight experience replay (rlkit.experience.her): goals relabelled at sample time from the right rows of the same
episode (future / final / episode, the unfinished episode, episodes across the ring wrap), rewards from
the env's compute_reward (n-step windows against a brute-force loop), the relabelled share, exact
reproducibility, config errors, and SAC+HER through train_online on rlkit/PointGoal-v0 (learning, resume)."""

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
import yaml

import rlkit.envs  # noqa: F401  (registers rlkit/PointGoal-v0)
from rlkit.training.build import build_replay
from rlkit.config import HERConfig, build_run_config, to_dict
from rlkit.errors import ConfigError
from rlkit.experience.her import HindsightRelabeler, env_compute_reward
from rlkit.training.loops import train_online
from rlkit.experience.replay import ReplayBuffer

GOAL_SPACE = gym.spaces.Dict({"observation": gym.spaces.Box(-1e6, 1e6, (1,), np.float32),
                              "achieved_goal": gym.spaces.Box(-1e6, 1e6, (2,), np.float32),
                              "desired_goal": gym.spaces.Box(-1e6, 1e6, (2,), np.float32)})
ACTIONS = gym.spaces.Box(-1, 1, (1,), np.float32)
STORED_REWARD = 0.25


def compute_reward(achieved, desired, info):
    """Encodes both arguments: 1000 * (write index of the achieved state) + first entry of the goal."""
    assert info is None and achieved.ndim == 2 and achieved.shape == desired.shape
    return (1000.0 * achieved[:, 0] + desired[:, 0]).astype(np.float32)


def _fill(buffer, steps, seed=0):
    """Write ``steps`` rows of random-length episodes (some terminated, some truncated) into every stream.

    achieved_goal = [write index c, episode id], desired_goal = [-1 - episode id, -1] (so a stored goal has
    desired_goal[1] == -1 and a relabelled one the episode id >= 0). Returns per env the list of
    (c, episode id) of every row, final-observation rows included (they hold the episode's last state)."""
    rng = np.random.default_rng(seed)
    N = buffer.num_envs
    episode = np.arange(N)
    next_episode = N
    remaining = rng.integers(1, 9, N)
    autoreset = np.zeros(N, bool)
    log = [[] for _ in range(N)]
    for c in range(steps):
        ids = episode.astype(np.float32)
        obs = {"observation": np.full((N, 1), c, np.float32),
               "achieved_goal": np.stack([np.full(N, c, np.float32), ids], axis=1),
               "desired_goal": np.stack([-1.0 - ids, -np.ones(N, np.float32)], axis=1)}
        done = ~autoreset & (remaining == 1)
        terminated = done & (rng.random(N) < 0.5)
        truncated = done & ~terminated
        buffer.add(obs, np.zeros((N, 1), np.float32), np.full(N, STORED_REWARD, np.float32), terminated, truncated,
                   autoreset)
        for e in range(N):
            log[e].append((c, int(episode[e])))
        # the row after a done row is the final observation (same episode), then a new episode starts
        for e in np.flatnonzero(autoreset):
            episode[e], next_episode = next_episode, next_episode + 1
            remaining[e] = rng.integers(1, 9)
        remaining = np.where(autoreset | done, remaining, remaining - 1)
        autoreset = done
    return log


def _episode_bounds(log, buffer, env, c):
    """(first stored, last stored) write index of the episode that row ``c`` of ``env`` belongs to."""
    oldest = len(log[env]) - buffer.rows_stored  # 0 until the ring wraps
    episode = log[env][c][1]
    members = [i for i, ep in log[env][max(oldest, 0):] if ep == episode]
    return members[0], members[-1]


def _buffer(capacity=48, num_envs=2, n_step=1, gamma=0.5, strategy="future", ratio=0.8, seed=0, prioritized=False):
    relabeler = HindsightRelabeler(compute_reward, strategy, ratio)
    return ReplayBuffer.from_spaces(GOAL_SPACE, ACTIONS, capacity, num_envs, gamma=gamma, n_step=n_step, seed=seed,
                                    prioritized=prioritized, sample_hook=relabeler)


def _check_batch(buffer, log, batch, strategy):
    """Every relabelled sample: goal from its own episode in the strategy's rows, the same goal in obs and
    next_obs, reward = compute_reward over its window; every other sample: as stored."""
    gamma = buffer.gamma
    counts = batch.obs["observation"][:, 0].long()
    next_counts = batch.next_obs["observation"][:, 0].long()
    envs = batch.indices % buffer.num_envs
    relabelled = batch.obs["desired_goal"][:, 1] >= 0
    torch.testing.assert_close(batch.obs["desired_goal"], batch.next_obs["desired_goal"])
    seen_unfinished = 0
    for i in range(len(counts)):
        c, e, k = int(counts[i]), int(envs[i]), int(next_counts[i] - counts[i])
        episode = log[e][c][1]
        if not relabelled[i]:
            assert batch.obs["desired_goal"][i].tolist() == [-1.0 - episode, -1.0]
            assert float(batch.rewards[i]) == pytest.approx(STORED_REWARD * sum(gamma ** j for j in range(k)))
            continue
        goal_c, goal_episode = batch.obs["desired_goal"][i].long().tolist()
        assert goal_episode == episode                      # the same episode, in the same stream
        assert log[e][goal_c] == (goal_c, episode)
        start, end = _episode_bounds(log, buffer, e, c)
        seen_unfinished += end == len(log[e]) - 1
        if strategy == "future":
            assert c < goal_c <= end
        elif strategy == "final":
            assert goal_c == end
        else:
            assert start <= goal_c <= end
        # brute force: the reward of each step of the window for the new goal, discounted
        expected = sum(gamma ** j * (1000.0 * (c + j + 1) + goal_c) for j in range(k))
        assert float(batch.rewards[i]) == pytest.approx(expected, rel=1e-6)
    return int(relabelled.sum()), seen_unfinished


@pytest.mark.parametrize("strategy", ["future", "final", "episode"])
@pytest.mark.parametrize("n_step", [1, 3])
def test_relabelled_goals_come_from_the_right_rows_of_the_same_episode(strategy, n_step):
    """Ring of 24 rows per stream written 100 times over: episodes cross the wrap, the oldest episode has
    lost its start, the newest is still running; n_step = 3 windows end early at episode ends."""
    buffer = _buffer(capacity=48, num_envs=2, n_step=n_step, strategy=strategy)
    log = _fill(buffer, 100)
    relabelled = unfinished = 0
    for _ in range(20):
        batch = buffer.sample(64)
        count, seen = _check_batch(buffer, log, batch, strategy)
        assert count == round(0.8 * 64)
        relabelled, unfinished = relabelled + count, unfinished + seen
    assert unfinished > 0  # the running episode was relabelled (with what it achieved so far)


def test_replayed_state_goals_come_from_any_stored_row_of_any_stream():
    """replay_goal_fraction 0.5 with everything relabelled: half the goals are achieved goals of stored rows
    drawn from the whole buffer (other episodes and the other stream included), rewards recomputed for them."""
    relabeler = HindsightRelabeler(compute_reward, "future", 1.0, replay_goal_fraction=0.5)
    buffer = ReplayBuffer.from_spaces(GOAL_SPACE, ACTIONS, 48, 2, gamma=0.5, seed=0, sample_hook=relabeler)
    log = _fill(buffer, 100)
    stored = {pair for e in range(2) for pair in log[e][-buffer.rows_per_env:]}
    stream_of = {episode: e for e in range(2) for _, episode in log[e]}  # episode ids are unique over streams
    foreign = other_stream = 0
    for _ in range(10):
        batch = buffer.sample(64)
        counts, envs = batch.obs["observation"][:, 0].long(), batch.indices % 2
        for i, (goal_c, goal_episode) in enumerate(batch.obs["desired_goal"].long().tolist()):
            c, e = int(counts[i]), int(envs[i])
            assert (goal_c, goal_episode) in stored  # a real stored state (its achieved goal)
            foreign += goal_episode != log[e][c][1]
            other_stream += stream_of[goal_episode] != e
            assert float(batch.rewards[i]) == pytest.approx(1000.0 * (c + 1) + goal_c)
    assert 250 <= foreign <= 320  # ~320 replayed goals, nearly all from another episode; future ones never
    assert other_stream > 100     # about half of them from the other sub-env's stream
    # before the ring wraps only the written rows are drawn (the rest of the storage is uninitialised)
    relabeler = HindsightRelabeler(compute_reward, "future", 1.0, replay_goal_fraction=1.0)
    buffer = ReplayBuffer.from_spaces(GOAL_SPACE, ACTIONS, 400, 2, gamma=0.5, seed=1, sample_hook=relabeler)
    log = _fill(buffer, 30)
    written = {pair for e in range(2) for pair in log[e]}
    for _ in range(5):
        goals = buffer.sample(64).obs["desired_goal"].long().tolist()
        assert all(tuple(goal) in written for goal in goals)


def _reached(old_goals_reached: bool):
    """compute_terminated for _fill's encoding: a relabelled goal (desired[1] = its episode id >= 0) is reached
    at the state with its write index; a stored goal (desired[1] = -1) never is, or, with
    ``old_goals_reached``, always is (every stored termination was then caused by the old goal)."""
    def reached(achieved, desired, info):
        assert info is None and achieved.ndim == 2
        stored_goal = desired[:, 1] == -1
        return np.where(stored_goal, old_goals_reached, achieved[:, 0] == desired[:, 0])
    return reached


@pytest.mark.parametrize("old_goals_reached", [True, False])
@pytest.mark.parametrize("n_step", [1, 3])
def test_terminations_recomputed_for_the_new_goal(n_step, old_goals_reached):
    """With the env's compute_terminated, a relabelled window ends (discount 0, the reward sum stopping there)
    at the first step that reaches the new goal; a stored termination the old goal caused is dropped (the
    window bootstraps, gamma^k, from its stored final state), one it did not cause (a fall) is kept; the
    samples left alone keep the stored discounts. Each draw is compared with a plain buffer filled the same
    way (the same rows: rows are drawn before the hook runs)."""
    gamma = 0.5
    hits = dropped = kept = unrelabelled_terminal = 0
    for seed in range(12):
        relabeler = HindsightRelabeler(compute_reward, "future", 0.8, replay_goal_fraction=0.5,
                                       compute_terminated=_reached(old_goals_reached))
        buffer = ReplayBuffer.from_spaces(GOAL_SPACE, ACTIONS, 48, 2, gamma=gamma, n_step=n_step, seed=seed,
                                          sample_hook=relabeler)
        plain = ReplayBuffer.from_spaces(GOAL_SPACE, ACTIONS, 48, 2, gamma=gamma, n_step=n_step, seed=seed)
        _fill(buffer, 100, seed=seed)
        _fill(plain, 100, seed=seed)
        batch, stored = buffer.sample(64), plain.sample(64)
        assert torch.equal(batch.indices, stored.indices)
        counts, next_counts = batch.obs["observation"][:, 0].long(), batch.next_obs["observation"][:, 0].long()
        for i in range(64):
            c, k = int(counts[i]), int(next_counts[i] - counts[i])
            goal_c, goal_episode = batch.obs["desired_goal"][i].long().tolist()
            stored_terminal = float(stored.discounts[i]) == 0.0
            if goal_episode < 0:  # not relabelled: as stored
                assert float(batch.discounts[i]) == float(stored.discounts[i])
                unrelabelled_terminal += stored_terminal
                continue
            hit = goal_c - c - 1  # the window step j whose next state c + j + 1 is the goal
            reaches = 0 <= hit < k
            last = hit if reaches else k - 1
            expected = sum(gamma ** j * (1000.0 * (c + j + 1) + goal_c) for j in range(last + 1))
            assert float(batch.rewards[i]) == pytest.approx(expected, rel=1e-6)
            terminal = reaches or (stored_terminal and not old_goals_reached)
            assert float(batch.discounts[i]) == (0.0 if terminal else gamma ** k)
            hits += reaches
            dropped += stored_terminal and not reaches and old_goals_reached
            kept += stored_terminal and not reaches and not old_goals_reached
    assert hits > 0 and unrelabelled_terminal > 0
    assert (dropped > 0) if old_goals_reached else (kept > 0)


def test_recompute_terminated_setting_and_unbatched_envs(tmp_path):
    """auto uses a compute_terminated only if it answers per row; gymnasium-robotics' own ids answer one bool
    for a whole batch, so HER keeps their stored terminations; true refuses such envs."""
    from rlkit.experience.her import build_relabeler, is_batched

    space = GOAL_SPACE
    per_row = _reached(False)
    assert is_batched(per_row, (2,)) and not is_batched(lambda a, d, i: False, (2,)) and not is_batched(None, (2,))
    assert build_relabeler(HERConfig(), space, compute_reward, per_row).compute_terminated is per_row
    assert build_relabeler(HERConfig(recompute_terminated=False), space, compute_reward, per_row).compute_terminated is None
    assert build_relabeler(HERConfig(), space, compute_reward, lambda a, d, i: False).compute_terminated is None
    with pytest.raises(ConfigError, match="recompute_terminated: true needs"):
        build_relabeler(HERConfig(recompute_terminated=True), space, compute_reward, lambda a, d, i: False)
    import gymnasium_robotics

    gym.register_envs(gymnasium_robotics)
    upstream = gym.make("PointMaze_UMaze-v3").unwrapped
    assert not is_batched(upstream.compute_terminated, (2,))
    upstream.close()


def test_goals_and_rewards_before_the_ring_wraps_and_for_one_stream():
    for strategy in ("future", "final", "episode"):
        buffer = _buffer(capacity=200, num_envs=1, strategy=strategy, ratio=1.0)
        log = _fill(buffer, 37, seed=3)
        batch = buffer.sample(128)
        assert _check_batch(buffer, log, batch, strategy)[0] == 128


def test_future_goals_cover_the_whole_future_and_final_is_the_newest_row_of_a_running_episode():
    """One stream, one episode still running: rows 0..9 written, so future goals of row t are t+1..9
    uniformly, final is row 9 (the newest), episode is 0..9."""
    draws = {}
    for strategy in ("future", "final", "episode"):
        buffer = _buffer(capacity=64, num_envs=1, strategy=strategy, ratio=1.0, seed=1)
        for c in range(10):
            obs = {"observation": np.full((1, 1), c, np.float32), "achieved_goal": np.array([[c, 0]], np.float32),
                   "desired_goal": np.array([[-1, -1]], np.float32)}
            buffer.add(obs, np.zeros((1, 1)), np.zeros(1), np.zeros(1, bool), np.zeros(1, bool), np.zeros(1, bool))
        batch = buffer.sample(4000)
        t, goal = batch.obs["observation"][:, 0].long(), batch.obs["desired_goal"][:, 0].long()
        draws[strategy] = (t, goal)
    t, goal = draws["future"]
    assert torch.all(goal > t) and torch.all(goal <= 9)
    at_zero = goal[t == 0]
    assert set(at_zero.tolist()) == set(range(1, 10))
    counts = torch.bincount(at_zero, minlength=10)[1:].float()
    assert counts.min() > 0.5 * counts.mean()  # roughly uniform
    assert torch.all(draws["final"][1] == 9)
    assert set(draws["episode"][1].tolist()) == set(range(10))


def test_episode_start_rows_mirror_the_end_rows():
    buffer = ReplayBuffer.from_spaces(gym.spaces.Box(-100, 100, (1,), np.float32), ACTIONS, 8, 1)
    autoreset = np.zeros(1, bool)
    for t in range(13):  # episode 0: rows 0-3 (+ final obs row 4); episode 1 from row 5, wraps at row 8
        done = np.array([t == 3])
        buffer.add(np.array([[t]], np.float32), np.zeros((1, 1)), np.zeros(1), done, np.zeros(1, bool), autoreset)
        autoreset = done
    # ring of 8 rows holds writes 5..12; episode 1 started at write 5 = row 5 (its reset row, still stored)
    starts = buffer.episode_start_rows(torch.tensor([5, 7, 0, 3]), torch.zeros(4, dtype=torch.int64))
    assert starts.tolist() == [5, 5, 5, 5]
    for t in range(13, 17):  # now write 5..8 are overwritten: the oldest stored row starts the episode
        buffer.add(np.array([[t]], np.float32), np.zeros((1, 1)), np.zeros(1), np.zeros(1, bool), np.zeros(1, bool),
                   np.zeros(1, bool))
    oldest = buffer.oldest_row
    starts = buffer.episode_start_rows(torch.tensor([oldest, 0, 7]), torch.zeros(3, dtype=torch.int64))
    assert starts.tolist() == [oldest] * 3
    # episodes longer than the 64-row look-back blocks, before and after the ring wraps
    long = ReplayBuffer.from_spaces(gym.spaces.Box(-1, 1, (1,), np.float32), ACTIONS, 300, 1)
    autoreset = np.zeros(1, bool)
    for t in range(450):  # episodes: writes 0-9 (+ final 10), 11-209 (+ final 210), 211-... running
        done = np.array([t in (9, 209)])
        long.add(np.zeros((1, 1), np.float32), np.zeros((1, 1)), np.zeros(1), done, np.zeros(1, bool), autoreset)
        autoreset = done
        if t == 200:
            rows = torch.tensor([11, 100, 200, 5])
            assert long.episode_start_rows(rows, torch.zeros(4, dtype=torch.int64)).tolist() == [11, 11, 11, 0]
    # writes 150..449 stored (oldest row 150); episode 11-209 lost its start; 211-449 starts at row 211
    rows = torch.tensor([150, 209, 210, 211, 299, 0, 149])
    assert long.episode_start_rows(rows, torch.zeros(7, dtype=torch.int64)).tolist() == [150, 150, 150, 211, 211,
                                                                                          211, 211]


@pytest.mark.parametrize("ratio, expected", [(0.0, 0), (0.5, 32), (0.8, 51), (1.0, 64)])
def test_relabelled_share_is_the_ratio(ratio, expected):
    buffer = _buffer(ratio=ratio)
    _fill(buffer, 60)
    batch = buffer.sample(64)
    assert int((batch.obs["desired_goal"][:, 1] >= 0).sum()) == expected


def test_same_generator_state_relabels_identically_and_survives_state_dict():
    a, b = _buffer(seed=7), _buffer(seed=7)
    _fill(a, 80)
    _fill(b, 80)
    for _ in range(3):
        x, y = a.sample(32), b.sample(32)
        for key in x.obs:
            assert torch.equal(x.obs[key], y.obs[key]) and torch.equal(x.next_obs[key], y.next_obs[key])
        assert torch.equal(x.rewards, y.rewards)
    copy = _buffer(seed=123)
    copy.load_state_dict(a.state_dict())
    x, y = a.sample(32), copy.sample(32)
    assert torch.equal(x.obs["desired_goal"], y.obs["desired_goal"]) and torch.equal(x.rewards, y.rewards)


def test_prioritized_sampling_relabels_a_random_subset():
    buffer = _buffer(prioritized=True, ratio=0.5)
    log = _fill(buffer, 70)
    batch = buffer.sample(64, beta=0.4)
    count, _ = _check_batch(buffer, log, batch, "future")
    assert count == 32
    relabelled = (batch.obs["desired_goal"][:, 1] >= 0).numpy()
    assert relabelled[:32].any() and relabelled[32:].any()  # not the first half of the stratified draw


def test_point_goal_rewards_recomputed_by_the_env():
    """Real env: sparse rewards of relabelled transitions are the env's compute_reward of the next achieved
    goal; 'final' goals of a 50-step episode are its last position."""
    envs = gym.make_vec("rlkit/PointGoal-v0", num_envs=2, vectorization_mode="sync", reward_type="sparse")
    reward_fn = env_compute_reward(envs)
    assert reward_fn is not None
    relabeler = HindsightRelabeler(reward_fn, "future", 1.0)
    buffer = ReplayBuffer.from_spaces(envs.single_observation_space, envs.single_action_space, 1000, 2, seed=0,
                                      sample_hook=relabeler)
    obs, _ = envs.reset(seed=0)
    autoreset = np.zeros(2, bool)
    rng = np.random.default_rng(0)
    for _ in range(120):
        actions = rng.uniform(-1, 1, (2, 2)).astype(np.float32)
        next_obs, rewards, terminated, truncated, _ = envs.step(actions)
        buffer.add(obs, actions, rewards, terminated, truncated, autoreset)
        autoreset, obs = terminated | truncated, next_obs
    envs.close()
    batch = buffer.sample(256)
    distance = torch.linalg.norm(batch.next_obs["achieved_goal"] - batch.obs["desired_goal"], dim=-1)
    torch.testing.assert_close(batch.rewards, -(distance > 0.1).float())
    assert (batch.rewards == 0).float().mean() > 0.05  # hindsight successes exist


# --------------------------------------------------------------------------------------
# Config and build errors
# --------------------------------------------------------------------------------------


def test_her_config_ratio_and_n_sampled_goal():
    assert HERConfig().relabel_ratio == 0.8
    assert HERConfig().replay_goal_fraction == 0.0
    with pytest.raises(ConfigError, match="replay_goal_fraction must lie in"):
        HERConfig(replay_goal_fraction=1.5)
    assert HERConfig(n_sampled_goal=4).relabel_ratio == pytest.approx(0.8)
    assert HERConfig(n_sampled_goal=1, relabel_ratio=0.5).relabel_ratio == 0.5
    with pytest.raises(ConfigError, match="contradicts"):
        HERConfig(n_sampled_goal=4, relabel_ratio=0.5)
    with pytest.raises(ConfigError, match="relabel_ratio"):
        HERConfig(relabel_ratio=1.5)
    with pytest.raises(ConfigError, match="strategy"):
        build_run_config(_data(**{"train.replay.her.strategy": "futur"}))
    cfg = build_run_config(_data(**{"train.replay.her": {"n_sampled_goal": 3}}))  # the resolved config round-trips
    assert cfg.train.replay.her.relabel_ratio == 0.75
    assert build_run_config(yaml.safe_load(yaml.safe_dump(to_dict(cfg)))) == cfg
    assert build_run_config(_data(**{"train.replay.her": None})).train.replay.her is None


def _data(**overrides):
    data = {"env": {"id": "rlkit/PointGoal-v0", "num_envs": 2, "kwargs": {"reward_type": "sparse"}},
            "agent": {"name": "sac", "actor_hidden": [32, 32], "critic_hidden": [32, 32], "gamma": 0.95,
                      "actor_lr": 1e-3, "critic_lr": 1e-3, "alpha_lr": 1e-3, "random_steps": 200},
            "seed": 1,
            "train": {"total_steps": 600, "learning_starts": 200, "batch_size": 64, "eval_every": 300,
                      "eval_episodes": 4, "checkpoint_every": 300,
                      "replay": {"capacity": 5000, "her": {"strategy": "future", "relabel_ratio": 0.8}}},
            "log": {"progress": False, "tensorboard": False, "plot": False, "log_every": 100}}
    for key, value in overrides.items():
        node = data
        *path, last = key.split(".")
        for part in path:
            node = node.setdefault(part, {})
        node[last] = value
    return data


class _GoalEnvWithoutReward(gym.Env):
    observation_space = gym.spaces.Dict({k: gym.spaces.Box(-1, 1, (2,), np.float32)
                                         for k in ("observation", "achieved_goal", "desired_goal")})
    action_space = gym.spaces.Box(-1, 1, (2,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return {k: np.zeros(2, np.float32) for k in self.observation_space.spaces}, {}

    def step(self, action):
        return self.reset()[0], 0.0, False, False, {}


gym.register("rlkit-test/GoalNoReward-v0", entry_point=_GoalEnvWithoutReward, max_episode_steps=10)


def test_build_refuses_envs_that_are_not_goal_envs(tmp_path):
    cfg = build_run_config(_data())
    box = gym.spaces.Box(-1, 1, (3,), np.float32)
    with pytest.raises(ConfigError, match="Dict observations"):
        build_replay(cfg, box, ACTIONS, 1, torch.device("cpu"), compute_reward)
    no_goal = gym.spaces.Dict({"observation": box, "achieved_goal": box})
    with pytest.raises(ConfigError, match="no key 'desired_goal'"):
        build_replay(cfg, no_goal, ACTIONS, 1, torch.device("cpu"), compute_reward)
    with pytest.raises(ConfigError, match="compute_reward"):
        build_replay(cfg, GOAL_SPACE, ACTIONS, 1, torch.device("cpu"), None)
    buffer = build_replay(cfg, GOAL_SPACE, ACTIONS, 1, torch.device("cpu"), compute_reward)
    assert isinstance(buffer.sample_hook, HindsightRelabeler) and buffer.sample_hook.relabel_ratio == 0.8
    # through the loop: a Box env, and a Dict env with goal keys but no compute_reward; nothing is written
    with pytest.raises(ConfigError, match="Dict observations"):
        train_online(build_run_config(_data(**{"env.id": "Pendulum-v1", "env.kwargs": {}})), tmp_path / "box")
    with pytest.raises(ConfigError, match="compute_reward"):
        train_online(build_run_config(_data(**{"env.id": "rlkit-test/GoalNoReward-v0", "env.kwargs": {}})),
                     tmp_path / "no_reward")
    assert not (tmp_path / "box").exists() and not (tmp_path / "no_reward").exists()
    with pytest.raises(ConfigError, match="offline"):
        build_run_config(_data(offline={"dataset": "rlkit/x-v0"}))


# --------------------------------------------------------------------------------------
# SAC + HER through the online loop
# --------------------------------------------------------------------------------------


def _metrics(run_dir):
    records = [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
    for r in records:
        r.pop("time", None)
        r.pop("sps", None)
    return records


def test_sac_her_learns_point_goal_with_sparse_rewards(tmp_path):
    """~2k env steps of SAC+HER on sparse PointGoal: the evaluation success rate climbs from ~0 (random
    or untrained policies rarely end within 0.1 of the goal) to most episodes."""
    data = _data(**{"env.num_envs": 1, "train.total_steps": 2000, "train.learning_starts": 300,
                    "agent.random_steps": 300, "train.batch_size": 128, "train.eval_every": 1000,
                    "train.eval_episodes": 20, "train.checkpoint_every": 0, "log.log_every": 500})
    summary = train_online(build_run_config(data), tmp_path / "run")
    evals = [r for r in _metrics(tmp_path / "run") if r["kind"] == "eval"]
    assert evals[-1]["success_rate"] >= 0.5, evals
    episodes = [r for r in _metrics(tmp_path / "run") if r["kind"] == "episode"]
    assert episodes and all(r["success"] in (0.0, 1.0) for r in episodes)  # training episodes log success
    assert summary["final_eval"]["success_rate"] >= 0.5


def test_sac_her_run_resumes_exactly(tmp_path):
    data = _data(**{"train.replay.n_step": 2})
    full = tmp_path / "full"
    train_online(build_run_config(data), full)
    part = tmp_path / "part"
    train_online(build_run_config(data, ["train.total_steps=300"]), part)
    train_online(build_run_config(data), part, resume=True)
    assert any(r["kind"] == "train" and r["updates"] > 0 for r in _metrics(full))
    assert _metrics(part) == _metrics(full)


def test_shipped_goal_configs_load_and_sac_her_point_maze_smoke_run(tmp_path, capsys):
    """Every shipped goal-task config is valid; the PointMaze SAC+HER config trains and evaluates (a few hundred
    steps), logging evaluation success rates and the training episodes' success."""
    from rlkit.config import configs_dir, load_config

    for name in ("sac_her_pointmaze", "sac_her_fetch_push", "sac_her_antmaze_u", "ris_antmaze_u", "ris_pointmaze_u",
                 "ris_pointmaze_medium", "sac_her_pointmaze_medium"):
        cfg = load_config(configs_dir() / f"{name}.yaml")
        assert cfg.train.replay.her is not None, name
    for name in ("sac_her_antmaze_u", "ris_antmaze_u", "ris_pointmaze_medium", "sac_her_pointmaze_medium"):
        # the paper's comparison: the same replay on both sides
        assert load_config(configs_dir() / f"{name}.yaml").train.replay.her.replay_goal_fraction == 0.5
    cfg = load_config(configs_dir() / "sac_her_pointmaze.yaml",
                      ["train.total_steps=400", "train.learning_starts=200", "agent.random_steps=200",
                       "train.batch_size=32", "train.eval_every=200", "train.eval_episodes=2", "log.log_every=100",
                       "train.checkpoint_every=0", "log.progress=false", "log.tensorboard=false", "log.plot=false",
                       "train.eval_env_kwargs.reward_type=dense"])  # evaluations see -distance rewards
    summary = train_online(cfg, tmp_path / "run")
    records = _metrics(tmp_path / "run")
    assert summary["steps"] == 400 and "success_rate" in summary["final_eval"]
    assert 0.0 <= summary["final_eval"]["goal_distance_mean"] < 10.0  # the final distances, the U is 3 m wide
    assert [r["step"] for r in records if r["kind"] == "eval"] == [0, 200, 400]
    assert any(r["kind"] == "train" and r["updates"] > 0 for r in records)
    assert all(r["success"] in (0.0, 1.0) for r in records if r["kind"] == "episode")
    assert any(r["return_mean"] != round(r["return_mean"]) for r in records if r["kind"] == "eval")  # dense
    # rlkit eval and Policy.evaluate evaluate in the run's evaluation env too (train.eval_env_kwargs)
    import rlkit
    from rlkit.cli import main

    assert main(["eval", str(tmp_path / "run"), "--episodes", "2"]) == 0
    printed = capsys.readouterr().out
    assert "success rate" in printed and "final goal distance" in printed
    result = rlkit.load(tmp_path / "run").evaluate(episodes=2)
    assert result["return_mean"] != round(result["return_mean"]) and "goal_distance_mean" in result

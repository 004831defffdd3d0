"""SequenceBuffer with frame stacks (issue 19, the in-memory side): each step keeps its newest frame only and
the stacks of every window step are rebuilt at sample time. Checked against real rlkit/Pong-v0 observations
(the env's own stacks, episode starts included): the rebuilt stacks, and every batch, equal bit for bit what a
buffer holding the stacks (frame_stack 1) returns — windows, padding, masks, returns-to-go — offline, online
(a real vector env, NEXT_STEP autoreset) and after a checkpoint round trip."""

from __future__ import annotations

import dataclasses

import gymnasium as gym
import numpy as np
import pytest
import torch

import rlkit.envs  # noqa: F401  (registers rlkit/Pong-v0)
from rlkit.experience.sequences import SequenceBuffer, StackedFrames

S, K = 4, 30
LENGTHS = [2, 75, 1, 140, 3, 40, 5]  # shorter than the stack, than the window, and longer: 266 steps


@pytest.fixture(scope="module")
def pong():
    """Episodes of the env's own stacked observations (``[T + 1, 4, 84, 84]``), each started by a reset."""
    env = gym.make("rlkit/Pong-v0", frame_stack=S)
    rng = np.random.default_rng(0)
    episodes = []
    for i, n in enumerate(LENGTHS):
        obs, _ = env.reset(seed=100 + i)
        observations, actions, rewards = [obs], [], []
        for _ in range(n):
            action = int(rng.integers(env.action_space.n))
            obs, reward, terminated, truncated, _ = env.step(action)
            assert not (terminated or truncated)
            observations.append(obs)
            actions.append(action)
            rewards.append(reward)
        episodes.append(type("Episode", (), {"observations": np.stack(observations), "actions": np.array(actions),
                                             "rewards": np.array(rewards, np.float32),
                                             "terminations": np.zeros(n, bool), "truncations": np.eye(1, n, n - 1,
                                                                                                      dtype=bool)[0]}))
    env.close()
    return env.observation_space, env.action_space, episodes


def _assert_same(a, b) -> None:
    for x, y in zip(dataclasses.astuple(a), dataclasses.astuple(b)):
        assert x.dtype == y.dtype and x.shape == y.shape
        assert torch.equal(x, y)


def test_the_env_pads_a_reset_with_its_first_frame(pong):
    # what the buffer relies on (and refuses data without): the reset stack is its first frame 4 times
    _, _, episodes = pong
    for episode in episodes:
        first = episode.observations[0]
        assert (first == first[-1]).all()
        assert not (episode.observations[1:] == first).all()  # frames do change


def test_rebuilt_stacks_equal_the_envs_observations_bit_for_bit(pong):
    obs_space, act_space, episodes = pong
    buffer = SequenceBuffer.from_episodes(episodes, obs_space, act_space, length=K, frame_stack=S)
    rows = np.arange(len(buffer))
    stacks = buffer._stacks("", rows)                                                 # every stored step
    expected = np.concatenate([e.observations[:-1] for e in episodes])
    assert stacks.shape == expected.shape == (sum(LENGTHS), S, 84, 84) and stacks.dtype == np.uint8
    np.testing.assert_array_equal(stacks, expected)
    # the first S steps after every reset, on their own (where the padding with the first frame happens)
    starts = np.cumsum([0] + LENGTHS[:-1])
    for start, n in zip(starts, LENGTHS):
        for t in range(min(n, S)):
            np.testing.assert_array_equal(stacks[start + t], expected[start + t])


def test_batches_equal_those_of_a_buffer_holding_the_stacks(pong):
    # same windows, padding, masks, returns-to-go, timesteps; obs bit for bit
    obs_space, act_space, episodes = pong
    stacked = SequenceBuffer.from_episodes(episodes, obs_space, act_space, length=K, seed=3)
    frames = SequenceBuffer.from_episodes(episodes, obs_space, act_space, length=K, seed=3, frame_stack=S)
    for _ in range(3):
        a, b = stacked.sample(64), frames.sample(64)
        _assert_same(a, b)
    assert b.obs.shape == (64, K, S, 84, 84)
    assert (~b.mask).any() and (b.obs[~b.mask] == 0).all()                          # left padding stays zero


def test_windows_never_cross_episodes(pong):
    # each window's real steps are consecutive steps of one episode: the env's stacks at those timesteps
    obs_space, act_space, episodes = pong
    buffer = SequenceBuffer.from_episodes(episodes, obs_space, act_space, length=K, seed=1, frame_stack=S)
    batch = buffer.sample(128)
    obs, mask, timesteps = batch.obs.numpy(), batch.mask.numpy(), batch.timesteps.numpy()
    assert mask[:, -1].all() and (np.diff(mask.astype(int), axis=1) >= 0).all()
    for b in range(len(obs)):
        t = timesteps[b, mask[b]]
        np.testing.assert_array_equal(t, t[0] + np.arange(len(t)))
        owners = [e for e in episodes if len(e.actions) > t[-1]
                  and np.array_equal(e.observations[t], obs[b, mask[b]])]
        assert len(owners) >= 1, f"window {b} matches no episode's steps {t}"


def test_stored_frame_bytes_per_step(pong):
    obs_space, act_space, episodes = pong
    frames = SequenceBuffer.from_episodes(episodes, obs_space, act_space, length=K, frame_stack=S)
    stacked = SequenceBuffer.from_episodes(episodes, obs_space, act_space, length=K)
    steps = sum(LENGTHS)
    assert frames.state_dict()["obs"].shape == (steps, 84, 84)
    assert frames._obs[""].nbytes / frames.capacity == 84 * 84                       # one uint8 frame per step
    assert stacked._obs[""].nbytes / stacked.capacity == S * 84 * 84


def _online_play(envs, seed: int = 0):
    """A generator: each ``send(buffers)`` plays one more vector step of random play into those buffers (the
    online loop's NEXT_STEP layout; the episodes continue from one call to the next)."""
    rng = np.random.default_rng(seed)
    obs, _ = envs.reset(seed=seed)
    autoreset = np.zeros(envs.num_envs, bool)
    buffers = yield
    while True:
        actions = rng.integers(envs.single_action_space.n, size=envs.num_envs)
        next_obs, rewards, terminated, truncated, _ = envs.step(actions)
        for buffer in buffers:
            buffer.add(obs, actions, rewards, terminated, truncated, autoreset)
        obs, autoreset = next_obs, terminated | truncated
        buffers = yield


def _play_online(play, buffers, steps: int) -> None:
    for _ in range(steps):
        play.send(buffers)


def test_online_add_and_checkpoint_round_trip_with_a_real_vector_env():
    # ALE's vector env with short time limits: many resets on both sub-envs, interleaved
    envs = gym.make_vec("rlkit/Pong-v0", num_envs=2, vectorization_mode="vector_entry_point", frame_stack=S,
                        max_episode_steps=37)
    space, act = envs.single_observation_space, envs.single_action_space
    stacked = SequenceBuffer(space, act, capacity=400, length=K, num_envs=2, seed=7)
    frames = SequenceBuffer(space, act, capacity=400, length=K, num_envs=2, seed=7, frame_stack=S)
    play = _online_play(envs)
    next(play)
    _play_online(play, [stacked, frames], 150)
    assert len(frames) == len(stacked) > 2 * 37 and any(frames._open)              # finished and open episodes
    _assert_same(stacked.sample(64), frames.sample(64))

    # round trip mid-episode: the copy samples identically, and keeps identical after more steps
    state = frames.state_dict()
    assert state["frame_stack"] == S and state["obs"].shape[1:] == (84, 84)
    assert all(o["obs"].shape[1:] == (84, 84) for o in state["open_episodes"] if o)
    copy = SequenceBuffer(space, act, capacity=400, length=K, num_envs=2, seed=0, frame_stack=S)
    copy.load_state_dict(state)
    _assert_same(frames.sample(64), copy.sample(64))
    stacked.sample(64)  # the same draws on all three
    _play_online(play, [stacked, frames, copy], 300)  # drops the oldest episodes: capacity 400
    envs.close()
    assert len(frames) == len(copy) == len(stacked) <= 400
    for _ in range(2):
        a, b, c = stacked.sample(64), frames.sample(64), copy.sample(64)
        _assert_same(a, b)
        _assert_same(b, c)
    with pytest.raises(ValueError, match="frame_stack=4"):
        SequenceBuffer(space, act, capacity=400, length=K, num_envs=2).load_state_dict(state)


def test_observations_that_are_not_such_stacks_are_refused(pong):
    obs_space, act_space, episodes = pong
    episode = episodes[1]
    zero_padded = episode.observations.copy()
    zero_padded[0, :-1] = 0  # a zero-padded reset
    bad = type("Episode", (), {**{k: getattr(episode, k) for k in ("actions", "rewards", "terminations")},
                               "observations": zero_padded})
    with pytest.raises(ValueError, match="episode 1: the observation of step 0 is not a stack"):
        SequenceBuffer.from_episodes([episodes[0], bad], obs_space, act_space, length=K, frame_stack=S)
    skipped = episode.observations.copy()
    skipped[10:] = skipped[9]  # step 10 repeats step 9's stack: not shifted by one frame
    bad = type("Episode", (), {**{k: getattr(episode, k) for k in ("actions", "rewards", "terminations")},
                               "observations": skipped})
    with pytest.raises(ValueError, match="step 10 is not"):
        SequenceBuffer.from_episodes([bad], obs_space, act_space, length=K, frame_stack=S)
    online = SequenceBuffer(obs_space, act_space, capacity=100, length=K, frame_stack=S)
    online.add(episode.observations[None, 0], [0], [0.0], [False], [False], [False])
    with pytest.raises(ValueError, match="sub-env 0: the observation of step 1"):
        online.add(episode.observations[None, 2], [0], [0.0], [False], [False], [False])
    with pytest.raises(ValueError, match="frame_stack=3 needs observations shaped"):
        SequenceBuffer(obs_space, act_space, capacity=100, length=K, frame_stack=3)


def test_stacked_frames_reads_like_the_stacks(pong):
    _, _, episodes = pong
    observations = episodes[3].observations
    view = StackedFrames(observations[:-1, -1].copy(), S, final=observations[-1, -1])
    assert view.shape == observations.shape and len(view) == len(observations) and view.dtype == np.uint8
    np.testing.assert_array_equal(np.asarray(view), observations)
    np.testing.assert_array_equal(view[5], observations[5])
    np.testing.assert_array_equal(view[:3], observations[:3])
    np.testing.assert_array_equal(view[-2:, 1], observations[-2:, 1])
    assert np.asarray(view[:10], dtype=np.float64).shape == (10, S, 84, 84)


def test_dataset_source_passes_frame_stack_and_keeps_one_copy_of_each_frame(pong, tmp_path, monkeypatch):
    from rlkit.config import build_run_config
    from rlkit.errors import ConfigError
    from rlkit.experience.datasets import Episode, write_dataset
    from rlkit.experience.sources import dataset_source

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    obs_space, act_space, episodes = pong
    data = [Episode(e.observations, e.actions, e.rewards, e.terminations, e.truncations) for e in episodes]
    write_dataset("tt/pong-frames-v0", data, obs_space, act_space, env_id="rlkit/Pong-v0")

    def cfg(frame_stack):
        return build_run_config({"seed": 0, "device": "cpu", "env": {"id": None},
                                 "offline": {"dataset": "tt/pong-frames-v0"},
                                 "agent": {"name": "decision_transformer", "context_length": K, "embed_dim": 16,
                                           "n_layers": 1, "n_heads": 1},
                                 "train": {"total_steps": 1, "batch_size": 4, "replay": {"frame_stack": frame_stack}}},
                                [])

    import weakref

    import rlkit.experience.datasets as datasets

    loaded_stacks = []

    def load_dataset(name):  # records the stacked arrays read from the file
        data = real_load(name)
        loaded_stacks.extend(weakref.ref(e.observations) for e in data.episodes)
        return data

    real_load = datasets.load_dataset
    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    stacked_data, stacked = dataset_source(cfg(1), torch.device("cpu"))
    assert all(ref() is not None for ref in loaded_stacks)                          # frame_stack 1: kept
    loaded_stacks.clear()
    frames_data, frames = dataset_source(cfg(S), torch.device("cpu"))
    assert len(loaded_stacks) == len(LENGTHS) and all(ref() is None for ref in loaded_stacks)  # freed
    assert frames.store.frame_stack == S and frames.store.state_dict()["obs"].shape == (sum(LENGTHS), 84, 84)
    _assert_same(stacked.sample(32), frames.sample(32))
    # the dataset's episodes read their stacks from the buffer's frames, equal to the file's
    for loaded, original in zip(frames_data.episodes, episodes):
        assert isinstance(loaded.observations, StackedFrames)
        assert np.shares_memory(loaded.observations.frames, frames.store._obs[""])
        np.testing.assert_array_equal(np.asarray(loaded.observations), original.observations)
    assert isinstance(stacked_data.episodes[0].observations, np.ndarray)             # frame_stack 1: as loaded
    with pytest.raises(ConfigError, match="train.replay.frame_stack=3"):
        dataset_source(cfg(3), torch.device("cpu"))

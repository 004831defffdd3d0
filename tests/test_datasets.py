"""Datasets in Minari's format (rlkit.experience.datasets), `rlkit collect` and `rlkit dataset list|info|from-run`."""

import json
import shutil

import gymnasium as gym
import h5py
import numpy as np
import pytest
import torch

from rlkit.runfiles.checkpoint import load_checkpoint, save_checkpoint
from rlkit.cli import main
from rlkit.config import build_run_config
from rlkit.experience.datasets import (Episode, check_dataset_fits, dataset_info, dataset_path, episodes_from_replay,
                            iter_transitions, list_datasets, load_dataset, replay_stream, write_dataset)
from rlkit.errors import DatasetError
from rlkit.experience.replay import ReplayBuffer
from rlkit.runfiles.runs import LATEST

OBS = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
ACT = gym.spaces.Discrete(2)
DICT_OBS = gym.spaces.Dict({"position": gym.spaces.Box(-1.0, 1.0, (2,), np.float32),
                            "goal": gym.spaces.Box(-1.0, 1.0, (2,), np.float32)})
BOX_ACT = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)


@pytest.fixture(autouse=True)
def datasets_root(tmp_path, monkeypatch):
    root = tmp_path / "minari"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    return root


def _episodes(lengths=(4, 6), seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for T in lengths:
        term = np.zeros(T, bool)
        term[-1] = True
        out.append(Episode(rng.normal(size=(T + 1, 3)).astype(np.float32), rng.integers(0, 2, T), rng.normal(size=T),
                           term, np.zeros(T, bool)))
    return out


def _dict_episodes(lengths=(3, 5), seed=1):
    rng = np.random.default_rng(seed)
    out = []
    for T in lengths:
        trunc = np.zeros(T, bool)
        trunc[-1] = True
        obs = {k: rng.uniform(-1, 1, (T + 1, 2)).astype(np.float32) for k in ("position", "goal")}
        out.append(Episode(obs, rng.uniform(-1, 1, (T, 2)).astype(np.float32), rng.normal(size=T).astype(np.float32),
                           np.zeros(T, bool), trunc, infos={"distance": rng.uniform(size=T)}))
    return out


def _one_line_error(excinfo, *fragments):
    message = str(excinfo.value)
    assert "\n" not in message and message, message
    for fragment in fragments:
        assert fragment in message, message
    return message


# ------------------------------------------------------------------ round trips


def test_round_trip_box_and_discrete():
    episodes = _episodes()
    path = write_dataset("test/box-v0", episodes, OBS, ACT, env_id="CartPole-v1", metadata={"note": "x"})
    assert path == dataset_path("test/box-v0") and (path / "data" / "main_data.hdf5").is_file()
    data = load_dataset("test/box-v0")
    assert data.observation_space == OBS and data.action_space == ACT and data.env_id == "CartPole-v1"
    assert len(data) == 2 and data.total_steps == 10 and data.metadata["total_steps"] == 10
    returns = [ep.rewards.sum() for ep in episodes]
    assert data.metadata["return_mean"] == pytest.approx(np.mean(returns))
    assert data.metadata["return_min"] == pytest.approx(min(returns)) and data.metadata["rlkit"]["note"] == "x"
    for a, b in zip(episodes, data.episodes):
        np.testing.assert_array_equal(a.observations, b.observations)
        np.testing.assert_array_equal(a.actions, b.actions)
        np.testing.assert_allclose(a.rewards, b.rewards)
        assert b.terminations.dtype == bool and b.terminations[-1] and not b.truncations.any()
    # the same directory by path, and Minari itself reads it
    assert load_dataset(path).total_steps == 10
    import minari

    assert minari.load_dataset("test/box-v0").total_steps == 10


def test_round_trip_dict_spaces_and_accessors():
    episodes = _dict_episodes()
    write_dataset("test/dict-v0", episodes, DICT_OBS, BOX_ACT)
    data = load_dataset("test/dict-v0")
    assert isinstance(data.observation_space, gym.spaces.Dict)
    assert set(data.observation_space.spaces) == {"position", "goal"}
    for a, b in zip(episodes, data.episodes):
        for key in ("position", "goal"):
            np.testing.assert_array_equal(a.observations[key], b.observations[key])
        np.testing.assert_array_equal(a.actions, b.actions)
        np.testing.assert_allclose(a.infos["distance"], b.infos["distance"])
    check_dataset_fits(data, DICT_OBS, BOX_ACT)

    transitions = list(iter_transitions(data))
    assert [len(t.rewards) for t in transitions] == [3, 5]
    np.testing.assert_array_equal(transitions[0].next_obs["goal"], episodes[0].observations["goal"][1:])
    np.testing.assert_array_equal(transitions[0].obs["goal"], episodes[0].observations["goal"][:-1])

    stream = replay_stream(data)
    assert len(stream.autoreset) == 3 + 1 + 5 + 1 and (~stream.autoreset).sum() == data.total_steps
    assert stream.autoreset[[3, 9]].all() and stream.truncated[[2, 8]].all()
    np.testing.assert_array_equal(stream.obs["position"][3], episodes[0].observations["position"][-1])


def test_every_array_is_chunked_and_compressed_and_minari_reads_it_exactly():
    """Storage (docs/datasets.md): every array rlkit writes is gzip-compressed in chunks of whole steps, and
    Minari's own reader gets the same arrays back. Frame stacks hold each frame four times; gzip's 32 KB
    window sees the copies side by side in a chunk, so even incompressible (random) frames cost about one
    frame per step, not four."""
    import minari

    rng = np.random.default_rng(0)
    frames_space = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    stacked = []
    for T in (40, 25):
        frames = rng.integers(0, 256, (T + 4, 84, 84), dtype=np.uint8)  # noise: nothing to gain within a frame
        obs = np.stack([frames[t:t + 4] for t in range(T + 1)])         # [T + 1, 4, 84, 84], each frame 4 times
        trunc = np.zeros(T, bool)
        trunc[-1] = True
        stacked.append(Episode(obs, rng.integers(0, 6, T), rng.normal(size=T).astype(np.float32), np.zeros(T, bool),
                               trunc, infos={"lives": np.full(T, 3)}, reset_infos={"lives": np.array(3)}))
    write_dataset("test/frames-v0", stacked, frames_space, gym.spaces.Discrete(6))
    write_dataset("test/dictz-v0", _dict_episodes(), DICT_OBS, BOX_ACT)
    for dataset_id, episodes in (("test/frames-v0", stacked), ("test/dictz-v0", _dict_episodes())):
        h5 = dataset_path(dataset_id) / "data" / "main_data.hdf5"
        with h5py.File(h5, "r") as f:
            nodes = []
            f.visititems(lambda name, node: nodes.append((name, node)) if isinstance(node, h5py.Dataset) else None)
            assert len(nodes) >= 12
            for name, node in nodes:
                assert node.compression == "gzip" and node.compression_opts == 1, name
                assert node.chunks[1:] == node.shape[1:] and node.maxshape[0] is None, name  # whole steps per chunk
        theirs = list(minari.load_dataset(dataset_id).iterate_episodes())
        mine = load_dataset(dataset_id).episodes
        for a, b, c in zip(episodes, mine, theirs):
            for key in ("observations", "actions", "rewards", "terminations", "truncations"):
                for x in (getattr(b, key), getattr(c, key)):
                    if isinstance(x, dict):
                        for k in x:
                            np.testing.assert_array_equal(x[k], getattr(a, key)[k])
                    else:
                        np.testing.assert_array_equal(x, getattr(a, key))
            for key, steps in a.infos.items():
                np.testing.assert_array_equal(b.infos[key], steps)
                np.testing.assert_array_equal(c.infos[key][1:], steps)  # Minari's layout: the reset's info first
    raw = sum(ep.observations.nbytes for ep in stacked)
    stored = (dataset_path("test/frames-v0") / "data" / "main_data.hdf5").stat().st_size
    assert stored < 0.35 * raw, (stored, raw)  # one frame of noise per step (0.25) plus the other arrays


def test_replay_stream_feeds_a_replay_buffer():
    write_dataset("test/stream-v0", _episodes((4, 6)), OBS, ACT)
    data = load_dataset("test/stream-v0")
    stream = replay_stream(data)
    buffer = ReplayBuffer.from_spaces(OBS, ACT, capacity=64, num_envs=1, seed=0)
    for i in range(len(stream.autoreset)):
        row = lambda a: a[i:i + 1]  # noqa: E731
        buffer.add(row(stream.obs), row(stream.actions), row(stream.rewards), row(stream.terminated),
                   row(stream.truncated), row(stream.autoreset))
    assert buffer.num_sampleable() == data.total_steps  # every real transition, none of the autoreset rows
    batch = buffer.sample(64)
    # each sampled transition is one of the dataset's (obs, action, reward, next_obs), final observations included
    known = {(tuple(t.obs[k]), int(t.actions[k])): (float(t.rewards[k]), tuple(t.next_obs[k]))
             for t in iter_transitions(data) for k in range(len(t.rewards))}
    for i in range(64):
        reward, next_obs = known[(tuple(batch.obs[i].numpy()), int(batch.actions[i]))]
        assert float(batch.rewards[i]) == pytest.approx(reward) and tuple(batch.next_obs[i].numpy()) == next_obs


def test_write_refuses_existing_and_overwrites_atomically(datasets_root):
    write_dataset("test/x-v0", _episodes(), OBS, ACT)
    with pytest.raises(DatasetError) as excinfo:
        write_dataset("test/x-v0", _episodes((2,)), OBS, ACT)
    _one_line_error(excinfo, "already exists", "--overwrite")
    write_dataset("test/x-v0", _episodes((2,)), OBS, ACT, overwrite=True)
    assert load_dataset("test/x-v0").total_steps == 2
    # a failing write (NaN) leaves neither a dataset nor a temporary directory
    bad = _episodes((3,))[0]
    bad.observations[1, 0] = np.nan
    with pytest.raises(DatasetError) as excinfo:
        write_dataset("test/y-v0", [bad], OBS, ACT)
    _one_line_error(excinfo, "NaN")
    assert not dataset_path("test/y-v0").exists()
    assert not [p for p in (datasets_root / "test").iterdir() if p.name.startswith(".")]
    assert [row["id"] for row in list_datasets()] == ["test/x-v0"]


@pytest.mark.parametrize("case, fragment", [
    ("short_actions", "entries"), ("obs_shape", "shape"), ("dict_keys", "keys"), ("discrete_range", "outside"),
    ("bad_id", "not a dataset id"),
])
def test_write_validates_episodes(case, fragment):
    episodes, obs_space, act_space, dataset_id = _episodes(), OBS, ACT, "test/v-v0"
    ep = episodes[0]
    if case == "short_actions":
        episodes[0] = Episode(ep.observations, ep.actions[:-1], ep.rewards, ep.terminations, ep.truncations)
    elif case == "obs_shape":
        obs_space = gym.spaces.Box(-1, 1, (4,), np.float32)
    elif case == "dict_keys":
        episodes, obs_space, act_space = _dict_episodes(), gym.spaces.Dict({"position": DICT_OBS["position"]}), BOX_ACT
    elif case == "discrete_range":
        episodes[0] = Episode(ep.observations, ep.actions + 5, ep.rewards, ep.terminations, ep.truncations)
    elif case == "bad_id":
        dataset_id = "no version"
    with pytest.raises(DatasetError) as excinfo:
        write_dataset(dataset_id, episodes, obs_space, act_space)
    _one_line_error(excinfo, fragment)


# ------------------------------------------------------------------ bad datasets on disk


def _h5(dataset_id="test/bad-v0"):
    return dataset_path(dataset_id) / "data" / "main_data.hdf5"


def _meta(dataset_id="test/bad-v0"):
    return dataset_path(dataset_id) / "data" / "metadata.json"


@pytest.mark.parametrize("case, fragment", [
    ("truncated", "not readable HDF5"), ("corrupt_bytes", "test/bad-v0"), ("empty", "empty"),
    ("short_actions", "entries"), ("nan_obs", "NaN"), ("missing_key", "no rewards"),
    ("missing_episode", "holds 1 episodes"), ("wrong_obs_shape", "shape"), ("metadata_garbage", "corrupt"),
    ("metadata_no_spaces", "does not build the env"), ("steps_mismatch", "metadata says"),
    ("strings", "not numbers"), ("space_json", "cannot be read"),
])
def test_bad_datasets_are_one_line_errors(case, fragment):
    write_dataset("test/bad-v0", _episodes(), OBS, ACT, env_id="CartPole-v1")
    h5, meta = _h5(), _meta()
    if case == "truncated":
        h5.write_bytes(h5.read_bytes()[: h5.stat().st_size // 3])
    elif case == "corrupt_bytes":
        raw = bytearray(h5.read_bytes())
        raw[:2048] = b"\xff" * 2048  # the superblock and root group headers
        h5.write_bytes(bytes(raw))
    elif case == "empty":
        h5.write_bytes(b"")
    elif case in ("short_actions", "nan_obs", "missing_key", "missing_episode", "wrong_obs_shape", "strings"):
        with h5py.File(h5, "a") as f:
            group = f["episode_0"]
            if case == "short_actions":
                actions = group["actions"][()]
                del group["actions"]
                group.create_dataset("actions", data=actions[:-1])
            elif case == "nan_obs":
                group["observations"][2, 1] = np.nan
            elif case == "missing_key":
                del group["rewards"]
            elif case == "missing_episode":
                del f["episode_1"]
            elif case == "wrong_obs_shape":
                obs = group["observations"][()]
                del group["observations"]
                group.create_dataset("observations", data=obs[:, :2])
            elif case == "strings":
                del group["rewards"]
                group.create_dataset("rewards", data=np.array([b"a"] * 4))
    elif case == "metadata_garbage":
        meta.write_bytes(b"{not json")
    elif case in ("metadata_no_spaces", "steps_mismatch", "space_json"):
        data = json.loads(meta.read_text())
        if case == "metadata_no_spaces":
            del data["observation_space"]
        elif case == "steps_mismatch":
            data["total_steps"] = 99
        else:
            data["action_space"] = '{"type": "Pickle", "payload": "x"}'
        meta.write_text(json.dumps(data))
    with pytest.raises(DatasetError) as excinfo:
        load_dataset("test/bad-v0")
    _one_line_error(excinfo, fragment)
    # the CLI: one line, exit 2
    assert main(["dataset", "info", "test/bad-v0"]) == 2


def test_unknown_ids_and_paths(tmp_path):
    write_dataset("test/cartpole-random-v0", _episodes(), OBS, ACT)
    with pytest.raises(DatasetError) as excinfo:
        load_dataset("test/cartpole-randm-v0")
    _one_line_error(excinfo, "unknown dataset", "did you mean 'test/cartpole-random-v0'".replace("did", "Did"))
    (tmp_path / "not_a_dataset").mkdir()
    with pytest.raises(DatasetError) as excinfo:
        load_dataset(tmp_path / "not_a_dataset")
    _one_line_error(excinfo, "is not a Minari dataset")
    # a dataset directory copied elsewhere loads by path
    copy_dir = tmp_path / "copy"
    shutil.copytree(dataset_path("test/cartpole-random-v0"), copy_dir)
    assert load_dataset(copy_dir).total_steps == 10 and load_dataset(copy_dir / "data").total_steps == 10


def test_check_dataset_fits_names_both_spaces():
    write_dataset("test/fit-v0", _episodes(), OBS, ACT, env_id="CartPole-v1")
    data = load_dataset("test/fit-v0")
    check_dataset_fits(data, OBS, ACT)
    with pytest.raises(DatasetError) as excinfo:
        check_dataset_fits(data, gym.spaces.Box(-1, 1, (4,), np.float32), ACT)
    message = _one_line_error(excinfo, "observation space", "(3,)", "(4,)")
    with pytest.raises(DatasetError) as excinfo:
        check_dataset_fits(data, OBS, gym.spaces.Discrete(3), where="offline.dataset vs env.id")
    message = _one_line_error(excinfo, "action space", "Discrete(2)", "Discrete(3)", "offline.dataset vs env.id")
    assert message


# ------------------------------------------------------------------ rlkit collect / dataset list / info


class _DictGoalEnv(gym.Env):
    """A tiny goal-reaching env with a Dict observation (for collect with Dict spaces)."""

    observation_space = DICT_OBS
    action_space = BOX_ACT

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.pos = self.np_random.uniform(-0.5, 0.5, 2).astype(np.float32)
        self.goal = self.np_random.uniform(-0.5, 0.5, 2).astype(np.float32)
        self.t = 0
        return self._obs(), {}

    def _obs(self):
        return {"position": self.pos.copy(), "goal": self.goal.copy()}

    def step(self, action):
        self.pos = np.clip(self.pos + 0.1 * np.asarray(action, np.float32), -1, 1).astype(np.float32)
        self.t += 1
        dist = float(np.linalg.norm(self.pos - self.goal))
        return self._obs(), -dist, dist < 0.05, self.t >= 7, {}


gym.register("rlkit-test/DictGoal-v0", entry_point=_DictGoalEnv)


def test_cli_collect_random_list_info(capsys):
    assert main(["collect", "random", "--env", "CartPole-v1", "--episodes", "5", "--out", "test/cp-random-v0",
                 "--num-envs", "2", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert "test/cp-random-v0" in out and "5 episodes" in out
    data = load_dataset("test/cp-random-v0")
    assert len(data) == 5 and data.env_id == "CartPole-v1" and data.metadata["rlkit"]["source"] == "random"
    for ep in data.episodes:  # whole episodes: CartPole terminates, the final observation is out of bounds
        assert ep.terminations[-1] and not ep.terminations[:-1].any() and len(ep.observations) == len(ep) + 1
        assert abs(ep.observations[-1][2]) > 0.2095 or abs(ep.observations[-1][0]) > 2.4
    # the same seed gives the same data
    assert main(["collect", "random", "--env", "CartPole-v1", "--episodes", "5", "--out", "test/cp-random-v1",
                 "--num-envs", "2", "--seed", "1"]) == 0
    again = load_dataset("test/cp-random-v1")
    for a, b in zip(data.episodes, again.episodes):
        np.testing.assert_array_equal(a.observations, b.observations)

    capsys.readouterr()
    assert main(["dataset", "list"]) == 0
    out = capsys.readouterr().out
    assert "test/cp-random-v0" in out and "test/cp-random-v1" in out and "CartPole-v1" in out
    assert main(["dataset", "info", "test/cp-random-v0"]) == 0
    out = capsys.readouterr().out
    assert "Discrete(2)" in out and "return" in out and "5 (5 terminated" in out


def test_cli_collect_dict_env_with_noise():
    assert main(["collect", "random", "--env", "rlkit-test/DictGoal-v0", "--episodes", "3", "--out", "test/goal-v0",
                 "--noise", "0.5", "--num-envs", "2"]) == 0
    data = load_dataset("test/goal-v0")
    assert isinstance(data.observation_space, gym.spaces.Dict) and len(data) == 3
    for ep in data.episodes:
        assert ep.observations["goal"].shape == (len(ep) + 1, 2) and (np.abs(ep.actions) <= 1).all()
        assert ep.terminations[-1] or ep.truncations[-1]
        # consecutive observations are real transitions of one episode: the goal never changes within it
        assert (ep.observations["goal"] == ep.observations["goal"][0]).all()


def test_cli_errors_exit_2(tmp_path, capsys):
    assert main(["collect", "random", "--env", "CartPole-v1", "--episodes", "1", "--out", "test/one-v0"]) == 0
    capsys.readouterr()
    cases = [
        ["collect", "random", "--env", "CartPole-v1", "--episodes", "1", "--out", "test/one-v0"],  # exists
        ["collect", "random", "--env", "CartPole-v1", "--episodes", "0", "--out", "test/two-v0"],
        ["collect", "random", "--env", "CartPoel-v1", "--episodes", "1", "--out", "test/two-v0"],
        ["collect", "random", "--episodes", "1", "--out", "test/two-v0"],  # no --env
        ["collect", "random", "--env", "CartPole-v1", "--episodes", "1", "--out", "two"],  # not an id
        ["collect", "random", "--env", "CartPole-v1", "--episodes", "1", "--out", "test/two-v0", "--noise", "0.1"],
        ["collect", "random", "--env", "CartPole-v1", "--episodes", "1", "--out", "test/two-v0", "--epsilon", "2"],
        ["collect", str(tmp_path), "--episodes", "1", "--out", "test/two-v0"],  # not a run
        ["dataset", "info", "test/nope-v0"],
        ["dataset", "from-run", str(tmp_path), "--out", "test/two-v0"],
    ]
    for argv in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and err.startswith("rlkit: error: "), (argv, err)
    assert not dataset_path("test/two-v0").exists()


# ------------------------------------------------------------------ a trained run: collect and from-run


@pytest.fixture(scope="module")
def dqn_run(tmp_path_factory):
    from rlkit.training.loops import train_online

    data = {
        "seed": 3, "env": {"id": "CartPole-v1", "num_envs": 2},
        "agent": {"name": "dqn", "lr": 1e-3, "hidden": [32, 32], "target_update_every": 50, "eps_decay_steps": 200},
        "train": {"total_steps": 300, "learning_starts": 100, "train_every": 4, "gradient_steps": 1, "batch_size": 32,
                  "replay": {"capacity": 5000}, "eval_every": 300, "eval_episodes": 2, "checkpoint_every": 300},
        "log": {"progress": False, "tensorboard": False, "log_every": 100, "plot": False},
    }
    run_dir = tmp_path_factory.mktemp("runs") / "dqn"
    train_online(build_run_config(data, []), run_dir)
    return run_dir


def test_collect_from_a_trained_run(dqn_run, capsys):
    assert main(["collect", str(dqn_run), "--episodes", "3", "--out", "test/cp-dqn-v0", "--checkpoint", "latest",
                 "--epsilon", "0.1"]) == 0
    assert "3 episodes" in capsys.readouterr().out
    data = load_dataset("test/cp-dqn-v0")
    assert len(data) == 3 and data.env_id == "CartPole-v1"
    assert data.metadata["rlkit"]["agent"] == "dqn" and data.metadata["rlkit"]["checkpoint"] == "latest.pt"
    assert all(ep.actions.dtype == np.int64 and set(np.unique(ep.actions)) <= {0, 1} for ep in data.episodes)


def test_from_run_round_trip(dqn_run, capsys):
    assert main(["dataset", "from-run", str(dqn_run), "--out", "test/cp-replay-v0"]) == 0
    assert "test/cp-replay-v0" in capsys.readouterr().out
    buffer = load_checkpoint(dqn_run / LATEST)["buffer"]
    real = int(buffer["valid"].sum())
    data = load_dataset("test/cp-replay-v0")
    # nothing wrapped: every real transition in the buffer is in the dataset, the last episode kept as truncated
    assert real == 300 and data.total_steps == real
    assert data.metadata["rlkit"]["transitions"] == real and data.metadata["rlkit"]["dropped_leading"] == 0
    # the episodes are the buffer's streams: same observations and actions, row by row, per sub-env
    obs, actions, valid = buffer["obs"].numpy(), buffer["actions"].numpy(), buffer["valid"].numpy()
    column0 = data.episodes[: int((~valid[:, 0]).sum()) + int(valid[-1, 0])]
    rows = np.flatnonzero(valid[:, 0])
    np.testing.assert_array_equal(np.concatenate([ep.actions for ep in column0]), actions[rows, 0])
    np.testing.assert_array_equal(np.concatenate([ep.observations[:-1] for ep in column0]), obs[rows, 0])
    assert all(ep.terminations[-1] for ep in column0[:-1])
    assert column0[-1].truncations[-1] if valid[-1, 0] else column0[-1].terminations[-1]


def test_from_run_without_buffer(dqn_run, tmp_path, capsys):
    run = tmp_path / "nobuf"
    shutil.copytree(dqn_run, run)
    state = load_checkpoint(run / LATEST)
    state["buffer"] = None
    save_checkpoint(run / LATEST, {k: v for k, v in state.items() if k != "format"})
    assert main(["dataset", "from-run", str(run), "--out", "test/nobuf-v0"]) == 2
    err = capsys.readouterr().err
    assert "save_buffer" in err and len(err.strip().splitlines()) == 1


def test_episodes_from_a_wrapped_ring_buffer():
    """A small ring that wrapped: the episodes whose start was overwritten are dropped, every kept one
    equals the episode the env really produced (true final observations), the unfinished one is truncated."""
    n = 2
    envs = gym.make_vec("CartPole-v1", num_envs=n, vectorization_mode="sync")
    buffer = ReplayBuffer.from_spaces(envs.single_observation_space, envs.single_action_space, capacity=2 * 90,
                                      num_envs=n)
    rng = np.random.default_rng(0)
    obs, _ = envs.reset(seed=0)
    truth = [[{"obs": [obs[e]], "act": []}] for e in range(n)]  # per env, its episodes
    autoreset = np.zeros(n, bool)
    for _ in range(200):
        actions = rng.integers(0, 2, n)
        next_obs, rewards, terminated, truncated, _ = envs.step(actions)
        buffer.add(obs, actions, rewards, terminated, truncated, autoreset)
        for e in range(n):
            if autoreset[e]:
                truth[e].append({"obs": [next_obs[e]], "act": []})
            else:
                truth[e][-1]["obs"].append(next_obs[e])
                truth[e][-1]["act"].append(actions[e])
        autoreset = terminated | truncated
        obs = next_obs
    envs.close()
    state = buffer.state_dict()
    assert state["full"]
    episodes, counts = episodes_from_replay(state, envs.single_observation_space, last_obs=torch.as_tensor(obs))
    assert counts["dropped_leading"] > 0 and counts["dropped_trailing"] == 0
    assert counts["kept"] + counts["dropped_leading"] == counts["transitions"] == sum(len(ep) for ep in episodes) \
        + counts["dropped_leading"]
    known = {(e, tuple(np.asarray(t["obs"][0]).round(6))): t for e in range(n) for t in truth[e]}
    for ep in episodes:
        match = [t for (e, first), t in known.items() if first == tuple(ep.observations[0].round(6))]
        assert len(match) == 1
        np.testing.assert_array_equal(ep.observations, np.stack(match[0]["obs"]))
        np.testing.assert_array_equal(ep.actions, np.stack(match[0]["act"]))
    assert sum(bool(ep.truncations[-1]) for ep in episodes) >= 1  # the unfinished episodes at the end


def test_episodes_from_replay_rebuild_frame_stacks():
    """Frame stacks stored once per row come back as the stacks the env produced (repeat-padded at reset)."""
    S, T = 3, 5
    space = gym.spaces.Box(0, 255, (S, 2, 2), np.uint8)
    buffer = ReplayBuffer.from_spaces(space, gym.spaces.Discrete(2), capacity=32, num_envs=1, frame_stack=S)
    frames = [np.full((2, 2), 10 * (k + 1), np.uint8) for k in range(T + 1)]

    def stack_at(k):
        return np.stack([frames[max(j, 0)] for j in range(k - S + 1, k + 1)])

    for k in range(T):
        done = k == T - 1
        buffer.add(stack_at(k)[None], np.array([k % 2]), np.ones(1), np.array([done]), np.zeros(1, bool),
                   np.zeros(1, bool))
    buffer.add(stack_at(T)[None], np.array([0]), np.zeros(1), np.zeros(1, bool), np.zeros(1, bool), np.ones(1, bool))
    episodes, counts = episodes_from_replay(buffer.state_dict(), space)
    assert len(episodes) == 1 and counts["kept"] == T
    np.testing.assert_array_equal(episodes[0].observations, np.stack([stack_at(k) for k in range(T + 1)]))


def test_dataset_info_and_list_report(capsys):
    write_dataset("test/info-v0", _episodes((4, 6)), OBS, ACT, env_id="CartPole-v1")
    info = dataset_info("test/info-v0")
    assert info["episodes"] == 2 and info["steps"] == 10 and info["env_id"] == "CartPole-v1"
    assert set(info["return"]) == {"mean", "std", "min", "max"} and info["length"]["max"] == 6
    rows = list_datasets()
    assert rows[0]["id"] == "test/info-v0" and rows[0]["episodes"] == 2 and rows[0]["size_mb"] > 0
    # a broken dataset is listed (as unreadable), not fatal to the listing
    copy_meta = _meta("test/info-v0")
    copy_meta.write_text("{}")
    assert "error" in list_datasets()[0]
    assert main(["dataset", "list"]) == 0 and "unreadable" in capsys.readouterr().out

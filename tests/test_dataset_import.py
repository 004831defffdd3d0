"""`rlkit dataset import-hdf5`: D4RL-style flat HDF5 files as Minari datasets (rlkit.experience.d4rl_import)."""

import gymnasium as gym
import h5py
import numpy as np
import pytest

from rlkit.cli import main
from rlkit.errors import DatasetError
from rlkit.experience.d4rl_import import default_dataset_id, import_hdf5
from rlkit.experience.datasets import dataset_path, load_dataset

TIME_LIMIT = 40  # short episodes: a few hundred rows hold terminals and timeouts both


@pytest.fixture(autouse=True)
def root(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    return tmp_path / "minari"


def _rollout(env_id="Hopper-v5", rows=300, seed=0):
    """A D4RL-style dict of flat arrays from random play: terminals where the env terminates, timeouts at
    TIME_LIMIT steps (and on the last row, as D4RL's files end); next_observations and infos/* beside."""
    env = gym.make(env_id)
    env.action_space.seed(seed)
    obs, _ = env.reset(seed=seed)
    data = {k: [] for k in ("observations", "actions", "rewards", "terminals", "timeouts", "next_observations")}
    steps = 0
    while len(data["rewards"]) < rows:
        action = env.action_space.sample()
        next_obs, reward, terminated, truncated, _ = env.step(action)
        steps += 1
        timeout = (truncated or steps >= TIME_LIMIT or len(data["rewards"]) == rows - 1) and not terminated
        for key, value in (("observations", obs), ("actions", action), ("rewards", reward),
                           ("terminals", terminated), ("timeouts", timeout), ("next_observations", next_obs)):
            data[key].append(value)
        obs = next_obs
        if terminated or timeout:
            obs, _ = env.reset()
            steps = 0
    env.close()
    out = {k: np.asarray(v) for k, v in data.items()}
    for key in ("observations", "next_observations", "rewards"):
        if out[key].dtype == np.float64:
            out[key] = out[key].astype(np.float32)  # D4RL stores float32
    out["infos/step"] = np.arange(rows, dtype=np.int64)
    return out


def _write(path, data):
    with h5py.File(path, "w") as f:
        for key, value in data.items():
            f.create_dataset(key, data=value)
    return path


def _expected_episodes(data, with_next):
    """The documented reading, written out independently: (obs [T+1], actions, rewards, terminated, info steps)."""
    out, start = [], 0
    for end in np.flatnonzero(data["terminals"] | data["timeouts"]):
        first, start = start, end + 1
        if with_next:
            stop, final = end + 1, data["next_observations"][end]
        elif data["terminals"][end]:
            stop, final = end + 1, data["observations"][end]
        else:
            stop, final = end, data["observations"][end]
            if stop == first:
                continue
        obs = np.concatenate([data["observations"][first:stop], final[None]])
        out.append((obs, data["actions"][first:stop], data["rewards"][first:stop],
                    bool(data["terminals"][end]) and stop == end + 1, data["infos/step"][first:stop]))
    return out


@pytest.mark.parametrize("with_next", [False, True])
def test_round_trip_through_rlkit_and_minari(tmp_path, with_next):
    import minari

    data = _rollout()
    assert data["terminals"].any() and data["timeouts"].any()
    if not with_next:
        del data["next_observations"]
    _write(tmp_path / "hopper_random.hdf5", data)
    assert main(["dataset", "import-hdf5", str(tmp_path / "hopper_random.hdf5"), "--env", "Hopper-v5"]) == 0
    dataset_id = default_dataset_id(tmp_path / "hopper_random.hdf5")
    assert dataset_id == "imported/hopper_random-v0"

    expected = _expected_episodes(data, with_next)
    space = gym.make("Hopper-v5").observation_space
    mine = load_dataset(dataset_id)
    theirs = list(minari.load_dataset(dataset_id).iterate_episodes())
    assert len(mine.episodes) == len(theirs) == len(expected)
    assert mine.env_id == "Hopper-v5" and mine.observation_space == space
    dropped = 0 if with_next else int(data["timeouts"].sum())
    assert mine.total_steps == len(data["rewards"]) - dropped
    assert mine.metadata["rlkit"]["dropped_timeout_steps"] == dropped
    for (obs, actions, rewards, terminated, steps), a, b in zip(expected, mine.episodes, theirs):
        for ep in (a, b):
            np.testing.assert_array_equal(ep.observations, obs.astype(space.dtype))  # exact: float32 -> float64
            np.testing.assert_array_equal(ep.actions, actions)
            np.testing.assert_array_equal(ep.rewards, rewards)
            assert ep.terminations[-1] == terminated and ep.truncations[-1] == (not terminated)
            assert not ep.terminations[:-1].any() and not ep.truncations[:-1].any()
        np.testing.assert_array_equal(a.infos["step"], steps)
        np.testing.assert_array_equal(b.infos["step"][1:], steps)  # Minari's layout: the reset's entry first


def test_discrete_actions_named_output_and_dropping_trailing_rows(tmp_path, capsys):
    data = _rollout("CartPole-v1", rows=120)
    data["timeouts"][-1] = False  # the last episode is unfinished: 1 + the steps since the previous end
    ends = np.flatnonzero(data["terminals"] | data["timeouts"])
    trailing = len(data["rewards"]) - 1 - int(ends[-1])
    path = _write(tmp_path / "cartpole.h5", data)
    assert main(["dataset", "import-hdf5", str(path), "--env", "CartPole-v1", "--name", "mine/cp-v3"]) == 2
    assert f"the last {trailing} of 120 rows" in capsys.readouterr().err
    assert main(["dataset", "import-hdf5", str(path), "--env", "CartPole-v1", "--name", "mine/cp-v3",
                 "--drop-trailing"]) == 0
    assert "wrote dataset mine/cp-v3" in capsys.readouterr().out
    loaded = load_dataset("mine/cp-v3")
    assert loaded.action_space == gym.spaces.Discrete(2)
    assert loaded.metadata["rlkit"]["dropped_trailing"] == trailing
    assert loaded.total_steps == 120 - trailing  # next_observations present: every finished step kept
    np.testing.assert_array_equal(np.concatenate([ep.actions for ep in loaded.episodes]),
                                  data["actions"][:120 - trailing])
    # an existing id needs --overwrite
    assert main(["dataset", "import-hdf5", str(path), "--env", "CartPole-v1", "--out", "mine/cp-v3",
                 "--drop-trailing"]) == 2
    assert "already exists" in capsys.readouterr().err


def _missing_timeouts(data):
    del data["timeouts"]


def _short_actions(data):
    data["actions"] = data["actions"][:-1]


def _trailing(data):
    data["timeouts"][-7:] = False
    data["terminals"][-7:] = False
    data["timeouts"][-8] = not data["terminals"][-8]  # an episode ends 7 rows before the end


def _wrong_shape(data):
    data["observations"] = data["observations"][:, :10]


def _nan(data):
    data["observations"][5, 2] = np.nan


def _inf_reward(data):
    data["rewards"][17] = np.inf


def _not_boolean(data):
    data["terminals"] = data["terminals"].astype(np.int64)
    data["terminals"][3] = 2


def _far_action(data):
    data["actions"][9, 0] = 1e6


def _group_key(data):
    data["rewards/inner"] = data.pop("rewards")


def _infos_short(data):
    data["infos/step"] = data["infos/step"][:-2]


@pytest.mark.parametrize("edit, fragments", [
    (_missing_timeouts, ["no 'timeouts'", "terminals, timeouts"]),
    (_short_actions, ["mismatched lengths", "actions 299"]),
    (_trailing, ["the last 7 of 300 rows", "--drop-trailing"]),
    (_wrong_shape, ["observations has shape (10,)", "(11,)"]),
    (_nan, ["observations hold NaN or inf", "first row 5"]),
    (_inf_reward, ["rewards hold NaN or inf", "first row 17"]),
    (_not_boolean, ["terminals row 3 is 2", "not a boolean"]),
    (_far_action, ["bad.hdf5: actions at step 9 is 1e+06", "far outside"]),
    (_group_key, ["rewards is not an array"]),
    (_infos_short, ["infos/step has 298 rows"]),
    ("text", ["is not an HDF5 file"]),
    ("truncated", ["not readable HDF5"]),
    ("absent", ["no such file"]),
])
def test_bad_files_are_one_line_and_write_nothing(tmp_path, root, capsys, edit, fragments):
    path = tmp_path / "bad.hdf5"
    if edit == "text":
        path.write_text("observations,actions\n1,2\n")
    elif edit == "truncated":
        _write(path, _rollout(rows=300))
        path.write_bytes(path.read_bytes()[:4000])
    elif edit != "absent":
        data = _rollout(rows=300)
        edit(data)
        _write(path, data)
    code = main(["dataset", "import-hdf5", str(path), "--env", "Hopper-v5", "--out", "bad/import-v0"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("rlkit: error:"), err
    for fragment in fragments:
        assert fragment in err, err
    assert not dataset_path("bad/import-v0").exists()
    assert not (root / "bad").exists() or not any((root / "bad").iterdir())


def test_an_unknown_env_is_one_line(tmp_path, capsys):
    path = _write(tmp_path / "d.hdf5", _rollout(rows=50))
    assert main(["dataset", "import-hdf5", str(path), "--env", "Hoper-v5"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--env Hoper-v5" in err
    with pytest.raises(DatasetError):  # the Python API raises the same error
        import_hdf5(path, "Hoper-v5")

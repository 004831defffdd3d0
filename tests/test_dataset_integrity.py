"""Dataset integrity (issue 18): content fingerprints, the recording env, checksums, declared shapes,
symlink loops, full disks and stale temporaries, HDF5 links, absurd values — and old rlkit datasets
and foreign Minari datasets still load."""

import json
import os
import threading

import gymnasium as gym
import h5py
import numpy as np
import pytest
import torch

from rlkit.cli import main
from rlkit.config import build_run_config
from rlkit.errors import DatasetError
from rlkit.experience.datasets import (Episode, dataset_path, datasets_root, list_datasets, load_dataset,
                                       write_dataset)
from rlkit.experience.sources import dataset_source

PEND_OBS = gym.spaces.Box(np.array([-1, -1, -8], np.float32), np.array([1, 1, 8], np.float32), (3,), np.float32)
PEND_ACT = gym.spaces.Box(-2.0, 2.0, (1,), np.float32)
OBS = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
ACT = gym.spaces.Discrete(2)


@pytest.fixture(autouse=True)
def root(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    return tmp_path / "minari"


def _episodes(seed=0, lengths=(20, 30)):
    """Pendulum-shaped episodes whose rewards are the same for every seed (only the other arrays differ)."""
    rng = np.random.default_rng(seed)
    out = []
    for T in lengths:
        trunc = np.zeros(T, bool)
        trunc[-1] = True
        out.append(Episode(rng.uniform(-1, 1, (T + 1, 3)).astype(np.float32),
                           rng.uniform(-2, 2, (T, 1)).astype(np.float32), -np.ones(T, np.float32),
                           np.zeros(T, bool), trunc))
    return out


def _discrete_episodes():
    term = np.zeros(4, bool)
    term[-1] = True
    return [Episode(np.zeros((5, 3), np.float32), np.array([0, 1, 0, 1]), np.ones(4), term, np.zeros(4, bool))]


def _h5(dataset_id):
    return dataset_path(dataset_id) / "data" / "main_data.hdf5"


def _one_line(excinfo, *fragments):
    message = str(excinfo.value)
    assert message and "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, message
    return message


def _cfg(dataset_id, env_id="Pendulum-v1", allow_env_mismatch=False, **env):
    return build_run_config({"seed": 0, "device": "cpu", "env": {"id": env_id, **env},
                             "offline": {"dataset": dataset_id, "allow_env_mismatch": allow_env_mismatch},
                             "agent": {"name": "bc", "hidden": [8]},
                             "train": {"total_steps": 10, "batch_size": 4}}, [])


# ------------------------------------------------------------------ 1: the fingerprint covers all content


def test_fingerprint_differs_when_any_array_differs_and_a_resume_on_it_is_refused():
    write_dataset("tt/a-v0", _episodes(0), PEND_OBS, PEND_ACT, env_id="Pendulum-v1")
    write_dataset("tt/b-v0", _episodes(1), PEND_OBS, PEND_ACT, env_id="Pendulum-v1")  # the same rewards
    a, b = load_dataset("tt/a-v0"), load_dataset("tt/b-v0")
    assert a.metadata["fingerprint"] != b.metadata["fingerprint"]
    assert a.metadata["fingerprint"] == a.metadata["rlkit"]["fingerprint"]  # computed at write time, the same at load
    assert load_dataset("tt/a-v0").metadata["fingerprint"] == a.metadata["fingerprint"]
    # the same arrays under other spaces are another dataset too
    write_dataset("tt/c-v0", _episodes(0), gym.spaces.Box(-1, 1, (3,), np.float32), PEND_ACT, env_id="Pendulum-v1")
    assert load_dataset("tt/c-v0").metadata["fingerprint"] != a.metadata["fingerprint"]

    _, source = dataset_source(_cfg("tt/a-v0"), torch.device("cpu"))
    saved = source.state_dict()
    _, other = dataset_source(_cfg("tt/b-v0"), torch.device("cpu"))
    with pytest.raises(DatasetError) as excinfo:
        other.load_state_dict(saved)
    _one_line(excinfo, "another dataset", a.metadata["fingerprint"][:12], b.metadata["fingerprint"][:12])
    _, same = dataset_source(_cfg("tt/a-v0"), torch.device("cpu"))
    same.load_state_dict(saved)
    # a checkpoint written before the content fingerprint (counts and the rewards' CRC only) still resumes
    same.load_state_dict({k: v for k, v in saved.items() if k != "dataset_fingerprint"})


# ------------------------------------------------------------------ 2: the recording env is compared


def test_a_dataset_of_another_env_or_other_kwargs_is_refused_with_an_override(monkeypatch):
    write_dataset("tt/other-v0", _episodes(), PEND_OBS, PEND_ACT, env_id="rlkit/SomethingElse-v0")
    write_dataset("tt/kwargs-v0", _episodes(), PEND_OBS, PEND_ACT, env_id="Pendulum-v1", env_kwargs={"g": 2.0})
    write_dataset("tt/same-v0", _episodes(), PEND_OBS, PEND_ACT, env_id="Pendulum-v1", env_kwargs={"g": 2.0})
    write_dataset("tt/noenv-v0", _episodes(), PEND_OBS, PEND_ACT)
    with pytest.raises(DatasetError) as excinfo:
        dataset_source(_cfg("tt/other-v0"), torch.device("cpu"))
    _one_line(excinfo, "rlkit/SomethingElse-v0", "Pendulum-v1", "offline.allow_env_mismatch: true")
    with pytest.raises(DatasetError) as excinfo:
        dataset_source(_cfg("tt/kwargs-v0"), torch.device("cpu"))
    _one_line(excinfo, "{'g': 2.0}", "Pendulum-v1")
    dataset_source(_cfg("tt/same-v0", kwargs={"g": 2.0}), torch.device("cpu"))  # the same env and kwargs
    dataset_source(_cfg("tt/noenv-v0"), torch.device("cpu"))  # a dataset naming no env: nothing to compare
    dataset_source(_cfg("tt/other-v0", env_id=None), torch.device("cpu"))  # a run without an env
    dataset_source(_cfg("tt/other-v0", allow_env_mismatch=True), torch.device("cpu"))  # the user means it


# ------------------------------------------------------------------ 3: checksums name the array


def _flip_a_bit(dataset_id, path):
    with h5py.File(_h5(dataset_id), "r") as f:
        node = f[path]
        offset = node.id.get_offset() if node.chunks is None else node.id.get_chunk_info(0).byte_offset
    raw = bytearray(_h5(dataset_id).read_bytes())
    raw[offset + 5] ^= 0x10
    _h5(dataset_id).write_bytes(bytes(raw))


@pytest.mark.parametrize("path", ["episode_0/observations", "episode_1/actions", "episode_1/rewards"])
def test_a_bit_flip_inside_a_data_chunk_is_refused_naming_the_array(path):
    write_dataset("tt/flip-v0", _episodes(), PEND_OBS, PEND_ACT, env_id="Pendulum-v1")
    _flip_a_bit("tt/flip-v0", path)
    with pytest.raises(DatasetError) as excinfo:
        load_dataset("tt/flip-v0")
    _one_line(excinfo, path, "checksum")
    assert main(["dataset", "info", "tt/flip-v0"]) == 2


def test_an_edited_space_in_the_metadata_is_refused():
    write_dataset("tt/meta-v0", _episodes(), PEND_OBS, PEND_ACT, env_id="Pendulum-v1")
    meta = dataset_path("tt/meta-v0") / "data" / "metadata.json"
    data = json.loads(meta.read_text())
    data["action_space"] = data["action_space"].replace("2.0", "3.0")
    meta.write_text(json.dumps(data))
    with pytest.raises(DatasetError) as excinfo:
        load_dataset("tt/meta-v0")
    _one_line(excinfo, "fingerprint", "edited")


def test_old_rlkit_datasets_without_checksums_still_load():
    write_dataset("tt/old-v0", _episodes(), PEND_OBS, PEND_ACT, env_id="Pendulum-v1")
    meta = dataset_path("tt/old-v0") / "data" / "metadata.json"
    data = json.loads(meta.read_text())
    fingerprint = data["rlkit"].pop("fingerprint")
    del data["rlkit"]["checksums"]
    meta.write_text(json.dumps(data))
    loaded = load_dataset("tt/old-v0")
    assert loaded.total_steps == 50 and loaded.metadata["fingerprint"] == fingerprint  # the same content hash


def test_a_dataset_written_by_minaris_own_api_loads():
    """Minari's layout: T + 1 infos per episode (the reset's, then one per step), its env spec, no rlkit keys."""
    import minari
    from minari.data_collector import EpisodeBuffer

    env = gym.make("CartPole-v1")
    rng = np.random.default_rng(0)
    buffers = []
    for T in (7, 9):
        term = np.zeros(T, bool)
        term[-1] = True
        buffers.append(EpisodeBuffer(observations=rng.uniform(-0.1, 0.1, (T + 1, 4)).astype(np.float32),
                                     actions=rng.integers(0, 2, T), rewards=np.ones(T), terminations=term,
                                     truncations=np.zeros(T, bool), infos={"step": np.arange(T + 1)}))
    minari.create_dataset_from_buffers("foreign/cartpole-v0", buffers, env=env, algorithm_name="random")
    data = load_dataset("foreign/cartpole-v0")
    assert data.env_id == "CartPole-v1" and len(data) >= 2 and len(data.metadata["fingerprint"]) == 64
    # a foreign dataset is compared by its env id (from Minari's env spec)
    dataset_source(build_run_config({"seed": 0, "env": {"id": "CartPole-v1"}, "offline": {"dataset":
                   "foreign/cartpole-v0"}, "agent": {"name": "bc", "hidden": [8]}}, []), torch.device("cpu"))
    with pytest.raises(DatasetError):
        dataset_source(build_run_config({"seed": 0, "env": {"id": "Acrobot-v1"}, "offline": {"dataset":
                       "foreign/cartpole-v0"}, "agent": {"name": "bc", "hidden": [8]}}, []), torch.device("cpu"))


# ------------------------------------------------------------------ 4: declared shapes before reading


@pytest.mark.parametrize("case", ["huge_rows", "huge_metadata_steps", "unwritten_chunks"])
def test_a_tiny_file_declaring_a_huge_array_is_refused_before_allocating(case):
    write_dataset("tt/huge-v0", _discrete_episodes(), OBS, ACT)
    with h5py.File(_h5("tt/huge-v0"), "a") as f:
        group = f["episode_0"]
        if case == "huge_rows":
            del group["observations"]
            group.create_dataset("observations", shape=(300_000_000, 3), dtype=np.float32, chunks=(1024, 3))
        else:  # rewards, flags and actions consistent with a huge episode, no data behind them
            T = 100_000_000 if case == "huge_metadata_steps" else 4_000_000
            for key, shape, dtype in (("observations", (T + 1, 3), np.float32), ("actions", (T,), np.int64),
                                      ("rewards", (T,), np.float64), ("terminations", (T,), bool),
                                      ("truncations", (T,), bool)):
                del group[key]
                group.create_dataset(key, shape=shape, dtype=dtype, chunks=True)
    if case != "huge_rows":
        meta = dataset_path("tt/huge-v0") / "data" / "metadata.json"
        data = json.loads(meta.read_text())
        data["total_steps"] = 100_000_000 if case == "huge_metadata_steps" else 4_000_000
        meta.write_text(json.dumps(data))
    assert _h5("tt/huge-v0").stat().st_size < 200_000
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (4 * 2**30 + _rss(), hard))  # the old code allocated 3.4 GB and more
    try:
        with pytest.raises(DatasetError) as excinfo:
            load_dataset("tt/huge-v0")
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    _one_line(excinfo, "declares")


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


# ------------------------------------------------------------------ 7: symlink loops


def test_a_symlink_loop_under_the_root_does_not_hang_dataset_list(root, capsys):
    write_dataset("tt/real-v0", _discrete_episodes(), OBS, ACT)
    (root / "loops").mkdir()
    os.symlink(root / "loops", root / "loops" / "self")
    os.symlink(root, root / "loops" / "up")
    rows: list = []
    worker = threading.Thread(target=lambda: rows.extend(list_datasets()), daemon=True)
    worker.start()
    worker.join(timeout=20)
    assert not worker.is_alive(), "rlkit dataset list hangs on a symlink loop"
    assert "tt/real-v0" in [row["id"] for row in rows]
    assert main(["dataset", "list"]) == 0 and "tt/real-v0" in capsys.readouterr().out


# ------------------------------------------------------------------ 9: full disks, stale temporaries, links


def test_a_full_disk_is_one_line_before_anything_is_written(root, monkeypatch, capsys):
    import shutil

    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9 - 1000, 1000))
    code = main(["collect", "random", "--env", "CartPole-v1", "--episodes", "2", "--out", "tt/full-v0"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "free" in err and "tt/full-v0" in err
    assert not dataset_path("tt/full-v0").exists()
    assert not [p for p in (root / "tt").iterdir() if p.name.startswith(".tmp-")]


def test_the_free_space_check_counts_observations_compressed(root, monkeypatch):
    """Frames are stored gzip-compressed (~70x smaller for Atari): a disk with room for the compressed dataset but
    not for the raw frames takes it, one with room for neither refuses it."""
    import shutil

    T = 200
    frames = np.zeros((T + 1, 4, 84, 84), np.uint8)
    frames[:, :, 40:44, 10:12] = 200  # a paddle on a black screen
    trunc = np.zeros(T, bool)
    trunc[-1] = True
    episodes = [Episode(frames, np.zeros(T, np.int64), np.zeros(T, np.float32), np.zeros(T, bool), trunc)]
    obs_space, act_space = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8), gym.spaces.Discrete(6)
    free = frames.nbytes // 4  # 1.4 MB: a quarter of the raw frames
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9 - free, free))
    write_dataset("tt/frames-v0", episodes, obs_space, act_space)
    assert load_dataset("tt/frames-v0").total_steps == T
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9 - 1000, 1000))
    with pytest.raises(DatasetError) as excinfo:
        write_dataset("tt/frames-v1", episodes, obs_space, act_space)
    _one_line(excinfo, "free", "tt/frames-v1")


def test_a_write_failing_with_enospc_is_one_line_and_leaves_nothing(root, monkeypatch):
    import errno

    import rlkit.experience.datasets as datasets

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(datasets, "_write_episodes", full)
    with pytest.raises(DatasetError) as excinfo:
        write_dataset("tt/enospc-v0", _discrete_episodes(), OBS, ACT)
    _one_line(excinfo, "filled up", "tt/enospc-v0")
    assert not dataset_path("tt/enospc-v0").exists()
    assert not [p for p in (root / "tt").iterdir() if p.name.startswith(".tmp-")]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the HDF5 write runs in a child process on POSIX only")
def test_hdf5_crashing_mid_write_is_one_line_and_leaves_nothing(root, monkeypatch, capsys):
    """A disk filling up mid-write made h5py flood stderr and segfault (exit 139): the write runs in a child
    process, so the crash is one line here (ENOSPC itself: see the test above, and a tmpfs run in the report)."""
    import signal

    import rlkit.experience.datasets as datasets

    monkeypatch.setattr(datasets, "_write_episodes", lambda *a, **k: os.kill(os.getpid(), signal.SIGSEGV))
    code = main(["collect", "random", "--env", "CartPole-v1", "--episodes", "2", "--out", "tt/crash-v0"])
    captured = capsys.readouterr()
    assert code == 2 and captured.err.count("\n") == 1 and "SIGSEGV" in captured.err, captured.err
    assert not dataset_path("tt/crash-v0").exists()
    assert not [p for p in (root / "tt").iterdir() if p.name.startswith(".tmp-")]


def test_temporaries_of_a_killed_write_are_removed_by_the_next_one(root):
    from rlkit.experience.datasets import _host_tag

    write_dataset("tt/first-v0", _discrete_episodes(), OBS, ACT)
    host = _host_tag()
    dead = root / "tt" / f".tmp-killed-v0-{host}-999999999-0123abcd"  # no such pid on this host
    (dead / "data").mkdir(parents=True)
    old = root / "tt" / f".old-killed-v0-{host}-999999999-0123abcd"
    old.mkdir()
    alive = root / "tt" / f".tmp-running-v0-{host}-{os.getppid()}-0123abcd"  # a live writer's: kept
    alive.mkdir()
    elsewhere = root / "tt" / ".tmp-running-v0-0badf00d-999999999-0123abcd"  # another host's: not ours to judge
    elsewhere.mkdir()
    write_dataset("tt/second-v0", _discrete_episodes(), OBS, ACT)
    assert not dead.exists() and not old.exists() and alive.exists() and elsewhere.exists()


@pytest.mark.parametrize("case", ["external_link", "soft_link", "external_storage"])
def test_hdf5_links_and_external_storage_are_refused(root, tmp_path, case):
    write_dataset("tt/link-v0", _discrete_episodes(), OBS, ACT)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as g:
        g["x"] = np.ones(4)
    np.ones(4).tofile(tmp_path / "raw.bin")
    with h5py.File(_h5("tt/link-v0"), "a") as f:
        del f["episode_0/rewards"]
        if case == "external_link":
            f["episode_0/rewards"] = h5py.ExternalLink(str(other), "/x")
        elif case == "soft_link":
            f["spare"] = np.ones(4)
            f["episode_0/rewards"] = h5py.SoftLink("/spare")
        else:
            f["episode_0"].create_dataset("rewards", shape=(4,), dtype=np.float64,
                                          external=[(str(tmp_path / "raw.bin"), 0, 32)])
    with pytest.raises(DatasetError) as excinfo:
        load_dataset("tt/link-v0")
    _one_line(excinfo, "episode_0/rewards")


# ------------------------------------------------------------------ 18: non-finite and absurd values


@pytest.mark.parametrize("key, index, value, fragment", [
    ("rewards", 2, 1e308, "NaN or inf"), ("rewards", 1, 5e12, "rescale the rewards"),
    ("actions", 1, 1e30, "far outside"), ("observations", 3, 1e39, "NaN or inf"),
])
def test_absurd_rewards_actions_and_observations_are_refused_at_load(key, index, value, fragment):
    write_dataset("tt/absurd-v0", _episodes(), PEND_OBS, PEND_ACT, env_id="Pendulum-v1")
    with h5py.File(_h5("tt/absurd-v0"), "a") as f:
        group = f["episode_0"]
        array = group[key][()].astype(np.float64)
        array[index] = value
        del group[key]
        group.create_dataset(key, data=array)
        meta = dataset_path("tt/absurd-v0") / "data" / "metadata.json"
    data = json.loads(meta.read_text())
    data["rlkit"].pop("checksums", None), data["rlkit"].pop("fingerprint", None)  # as an older dataset would be
    meta.write_text(json.dumps(data))
    with pytest.raises(DatasetError) as excinfo:
        load_dataset("tt/absurd-v0")
    _one_line(excinfo, key, f"step {index}", fragment)
    with pytest.raises(DatasetError):  # and never written
        write_dataset("tt/absurd-v1", [Episode(**{**_episodes()[0].__dict__, key: array})], PEND_OBS, PEND_ACT)


def test_slightly_out_of_bounds_actions_still_load():
    episodes = _episodes()
    noisy = Episode(**{**episodes[0].__dict__, "actions": episodes[0].actions * 1.2})  # unclipped noise
    write_dataset("tt/noisy-v0", [noisy], PEND_OBS, PEND_ACT)
    assert load_dataset("tt/noisy-v0").total_steps == 20


# ------------------------------------------------------------------ 6: infos in Minari's layout (T + 1)


def test_infos_are_stored_in_minaris_layout_and_read_back_per_step():
    import minari

    episodes = _episodes()
    steps = {"distance": np.arange(20, dtype=np.float32), "index": np.arange(20)}
    write_dataset("tt/infos-v0", [Episode(**{**episodes[0].__dict__, "infos": steps})], PEND_OBS, PEND_ACT)
    with h5py.File(_h5("tt/infos-v0"), "r") as f:  # on disk: the reset's entry, then one per step
        assert f["episode_0/infos/distance"].shape == (21,) and np.isnan(f["episode_0/infos/distance"][0])
        assert f["episode_0/infos/index"][0] == 0
        np.testing.assert_array_equal(f["episode_0/infos/index"][1:], np.arange(20))
    episode = next(minari.load_dataset("tt/infos-v0").iterate_episodes())  # Minari reads what rlkit writes
    assert len(episode.infos["distance"]) == len(episode.observations) == 21
    loaded = load_dataset("tt/infos-v0").episodes[0]
    np.testing.assert_array_equal(loaded.infos["distance"], steps["distance"])  # per step again
    # with a reset info, and given in Minari's layout directly: the same file
    minari_layout = {"distance": np.arange(-1, 20, dtype=np.float32), "index": np.arange(-1, 20)}
    write_dataset("tt/infos-v1", [Episode(**{**episodes[0].__dict__, "infos": minari_layout})], PEND_OBS, PEND_ACT)
    loaded = load_dataset("tt/infos-v1").episodes[0]
    assert loaded.reset_infos["distance"] == -1 and loaded.reset_infos["index"] == -1
    np.testing.assert_array_equal(loaded.infos["index"], np.arange(20))
    with pytest.raises(DatasetError) as excinfo:
        write_dataset("tt/infos-v2", [Episode(**{**episodes[0].__dict__, "infos": {"x": np.zeros(5)}})],
                      PEND_OBS, PEND_ACT)
    _one_line(excinfo, "infos['x']", "21")


def test_old_rlkit_datasets_with_one_info_per_step_still_load():
    episodes = _episodes()
    write_dataset("tt/oldinfos-v0", [Episode(**{**episodes[0].__dict__, "infos": {"d": np.ones(20)}})],
                  PEND_OBS, PEND_ACT)
    with h5py.File(_h5("tt/oldinfos-v0"), "a") as f:  # what rlkit wrote before: T entries
        del f["episode_0/infos/d"]
        f["episode_0/infos"].create_dataset("d", data=np.ones(20))
    meta = dataset_path("tt/oldinfos-v0") / "data" / "metadata.json"
    data = json.loads(meta.read_text())
    data["rlkit"].pop("checksums", None), data["rlkit"].pop("fingerprint", None)
    meta.write_text(json.dumps(data))
    np.testing.assert_array_equal(load_dataset("tt/oldinfos-v0").episodes[0].infos["d"], np.ones(20))


# ------------------------------------------------------------------ 5: Minari's JPEG-encoded images


def _minari_image_dataset(dataset_id, noise):
    import minari
    from minari.data_collector import EpisodeBuffer

    obs = gym.spaces.Box(0, 255, (32, 40, 3), np.uint8)
    rng = np.random.default_rng(0)
    buffers = []
    for T in (5, 7):
        term = np.zeros(T, bool)
        term[-1] = True
        images = rng.integers(0, 256, (T + 1, 32, 40, 3), dtype=np.uint8) if noise else \
            np.zeros((T + 1, 32, 40, 3), np.uint8) + np.arange(T + 1, dtype=np.uint8)[:, None, None, None]
        buffers.append(EpisodeBuffer(observations=images, actions=rng.integers(0, 3, T), rewards=np.ones(T),
                                     terminations=term, truncations=np.zeros(T, bool)))
    minari.create_dataset_from_buffers(dataset_id, buffers, observation_space=obs,
                                       action_space=gym.spaces.Discrete(3), algorithm_name="random")  # JPEG: default
    return [ep.observations for ep in minari.load_dataset(dataset_id).iterate_episodes()]


@pytest.mark.parametrize("noise", [False, True])  # equal-length frames ([rows, L] uint8) and variable-length ones
def test_jpeg_images_written_by_minari_load_as_minari_decodes_them(noise):
    reference = _minari_image_dataset("foreign/images-v0", noise)
    data = load_dataset("foreign/images-v0")
    assert data.observation_space.shape == (32, 40, 3) and len(data) == 2
    for episode, expected in zip(data.episodes, reference):
        assert episode.observations.dtype == np.uint8
        np.testing.assert_array_equal(episode.observations, expected)


def test_a_corrupt_jpeg_frame_is_one_line():
    _minari_image_dataset("foreign/images-v1", noise=True)
    with h5py.File(_h5("foreign/images-v1"), "a") as f:
        frames = list(f["episode_0/observations"][()])
        frames[2] = np.frombuffer(b"not a jpeg at all", np.uint8)
        del f["episode_0/observations"]
        f["episode_0"].create_dataset("observations", data=frames, dtype=h5py.vlen_dtype(np.uint8))
    with pytest.raises(DatasetError) as excinfo:
        load_dataset("foreign/images-v1")
    _one_line(excinfo, "episode_0/observations step 2", "JPEG")
